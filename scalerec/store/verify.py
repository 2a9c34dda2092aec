"""`scalerec runs --verify`: every run of a store checked, nothing changed.

A run is `whole` (its record is complete and matches its id), `unfinished` (started or failed, and resumable),
`altered` (its config or rows do not match its id: store/integrity.py) or `damaged` (a file a reader needs is
unreadable, or the record contradicts itself)."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ScalerecError
from .integrity import config_problem, rows_problem
from .runstore import CHECKPOINTS, CONFIG, DONE, STATE, RunStore, read_checkpoints_file
from .schema import is_cooldown_row

WHOLE, UNFINISHED, ALTERED, DAMAGED = "whole", "unfinished", "altered", "damaged"


def verify_store(root: str | Path) -> list[dict[str, Any]]:
    """One verdict per run folder of the store at `root`: run_id, kind, verdict, why."""
    root = Path(root)
    if not root.is_dir():
        raise ScalerecError(f"{root}: not a run store (no such directory)")
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    looks_like_runs = [p for p in folders if any((p / name).exists() for name in (CONFIG, CHECKPOINTS, STATE, DONE))]
    if not looks_like_runs:
        raise ScalerecError(f"{root}: not a run store (no run folders in it)")
    return [verify_run(RunStore(root), p.name) for p in looks_like_runs]


def verify_run(store: RunStore, run_id: str) -> dict[str, Any]:
    run = store.run_dir(run_id)
    verdict = {"run_id": run_id, "kind": "?", "verdict": WHOLE, "why": ""}

    def set_verdict(kind: str, why: str) -> dict[str, Any]:
        verdict.update(verdict=kind, why=why)
        return verdict

    if not (run / CONFIG).is_file():
        return set_verdict(DAMAGED, "no config.json")
    try:
        config = store.read_config(run_id)
    except ScalerecError as exc:
        return set_verdict(DAMAGED, str(exc).split(": ", 1)[-1])
    origin = config.get("imported_from") or {}
    done = (run / DONE).exists()
    verdict["kind"] = (
        f"imported ({origin.get('kind', 'mlflow')})"
        if origin
        else "fine-tuning"
        if "finetune" in config
        else "archived"
        if done and not (run / STATE).exists()
        else "trained"
    )
    if problem := config_problem(run_id, config):
        return set_verdict(ALTERED, problem)
    rows = None
    if (run / CHECKPOINTS).exists():
        try:
            rows = read_checkpoints_file(run / CHECKPOINTS)
        except ScalerecError as exc:
            return set_verdict(DAMAGED, str(exc).split(": ", 1)[-1])
        if problem := rows_problem(run_id, rows.run_id):
            return set_verdict(ALTERED, problem)
        branches = is_cooldown_row(rows)
        if problem := _cooldowns_problem(rows[branches]):
            return set_verdict(DAMAGED, problem)
        rows = rows[~branches]  # the run's own trajectory
        steps = rows.step.to_numpy()
        if len(steps) and (np.diff(steps) <= 0).any():
            repeated = len(steps) - len(np.unique(steps))
            return set_verdict(
                DAMAGED, f"{repeated} duplicated step(s)" if repeated else "checkpoint rows out of step order"
            )
    if done:
        if rows is None or rows.empty:
            return set_verdict(DAMAGED, "DONE without checkpoint rows")
        if not bool(rows.is_final.iloc[-1]):
            return set_verdict(DAMAGED, "DONE, but the last row is not a final checkpoint")
        return verdict
    if (run / STATE).exists():
        if problem := _state_problem(run / STATE):
            return set_verdict(DAMAGED, f"state.pt {problem}: the run cannot resume")
    elif rows is not None and len(rows):  # stopped between its first row and its first state.pt (the write order)
        why = f"{len(rows)} checkpoint row(s) but no state.pt: a rerun trains it from the start"
        return set_verdict(UNFINISHED, why)
    failure = store.failure(run_id)
    why = f"failed: {' '.join(failure.split())}" if failure else f"{0 if rows is None else len(rows)} checkpoint(s)"
    return set_verdict(UNFINISHED, why)


def _cooldowns_problem(branches) -> str | None:
    """A WSD run's cooldown rows: one per branch, each ending after it left the run."""
    if branches.empty:
        return None
    repeated = int(branches.cooldown.duplicated().sum())
    if repeated:
        return f"{repeated} cooldown branch(es) recorded twice"
    if (branches.step <= branches.branch_step).any():
        return "a cooldown row that ends before it left the run"
    return None


def _state_problem(path: Path) -> str | None:
    """torch.save writes a zip archive: one whose members fail their CRC is torn (checked without torch)."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError) as exc:
        return f"is not readable ({exc})"
    return f"is torn (member {bad} fails its check)" if bad else None
