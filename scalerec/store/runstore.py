"""A directory of runs: runs/<run_id>/{config.json, checkpoints.parquet, state.pt, DONE} (DESIGN §2).

Every file is written atomically (temporary file in the same directory, fsync, os.replace), so a kill -9 at any
instant leaves either the old or the new version. A per-run lock (flock) stops two processes training one run.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from .. import jsonio, parquet_io
from ..errors import ScalerecError
from .integrity import config_problem, rows_problem
from .provenance import config_semantics
from .schema import COLUMNS, METADATA_KEY, OPTIONAL_DEFAULTS, SCHEMA_VERSION, arrow_schema, trajectory_step

CONFIG, CHECKPOINTS, STATE, DONE, LOCK = "config.json", "checkpoints.parquet", "state.pt", "DONE", ".lock"
FAILED = "FAILED"  # why the run stopped (e.g. a NaN loss); rerunning resumes from the last good state
TOKENIZER = "tokenizer.model"  # the text encoder's SentencePiece model (fine-tuning reuses it)
# A finished run's record: what `scalerec runs`, fit-laws and the benchmarks read. DONE is copied last, so a copy cut
# short leaves a run that reads as unfinished, never a finished one missing rows. state.pt (the weights and optimizer
# for resuming) and the tokenizer are not part of it: a store of records is small enough to commit or share.
RECORD = (CONFIG, CHECKPOINTS, DONE)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class RunStore:
    """The runs under one root directory."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def run_dir(self, run_id: str) -> Path:
        return self.root / run_id

    def run_ids(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / CONFIG).is_file())

    def status(self, run_id: str) -> str:
        """'done', 'failed' (stopped on an error, see failure()), 'partial' (started, resumable) or 'new'."""
        run = self.run_dir(run_id)
        if (run / DONE).exists():
            return "done"
        if (run / FAILED).exists():
            return "failed"
        return "partial" if (run / CONFIG).exists() else "new"

    def mark_failed(self, run_id: str, message: str) -> None:
        atomic_write_bytes(self.run_dir(run_id) / FAILED, message.encode())

    def failure(self, run_id: str) -> str | None:
        path = self.run_dir(run_id) / FAILED
        return path.read_text() if path.exists() else None

    def clear_failure(self, run_id: str) -> None:
        (self.run_dir(run_id) / FAILED).unlink(missing_ok=True)

    def write_config(self, run_id: str, config: dict[str, Any]) -> None:
        atomic_write_bytes(self.run_dir(run_id) / CONFIG, jsonio.dumps(config, indent=2, sort_keys=True).encode())

    def read_config(self, run_id: str) -> dict[str, Any]:
        path = self.run_dir(run_id) / CONFIG
        try:
            config = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ScalerecError(
                f"{path}: not a readable run config ({exc}); move the run folder away or delete it"
            ) from None
        if not isinstance(config, dict) or not isinstance(config.get("dataset"), dict):
            raise ScalerecError(f"{path}: not a scalerec run config (no dataset section)")
        return config

    def integrity_problem(self, run_id: str) -> str | None:
        """Why the run's config.json is not the record of `run_id` (store/integrity.py); None when it is."""
        try:
            config = json.loads((self.run_dir(run_id) / CONFIG).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            return f"config.json is not readable ({exc})"
        return config_problem(run_id, config) if isinstance(config, dict) else "config.json is not a JSON object"

    def require_intact(self, run_id: str) -> None:
        """Refuse to skip, resume or build on a run whose record does not match its id."""
        if (self.run_dir(run_id) / CONFIG).exists() and (problem := self.integrity_problem(run_id)):
            raise ScalerecError(
                f"run {run_id} in {self.root} is altered: {problem}; restore its config.json, or move the folder "
                "away to train it anew (`scalerec runs --verify` checks the whole store)"
            )

    def semantics(self, run_id: str) -> int | None:
        """The training semantics the run was started under (0: before they were recorded); None for a new run."""
        if not (self.run_dir(run_id) / CONFIG).exists():
            return None
        return config_semantics(self.read_config(run_id))

    def move_aside(self, run_id: str) -> Path:
        """Move a run's folder to <root>/.stale/<run_id>-<n> (nothing is deleted); returns where it went."""
        stale = self.root / ".stale"
        stale.mkdir(parents=True, exist_ok=True)
        n = 1
        while (stale / f"{run_id}-{n}").exists():
            n += 1
        target = stale / f"{run_id}-{n}"
        os.replace(self.run_dir(run_id), target)
        return target

    def read_rows(self, run_id: str) -> pd.DataFrame:
        path = self.run_dir(run_id) / CHECKPOINTS
        return read_checkpoints_file(path) if path.exists() else pd.DataFrame()

    def write_rows(self, run_id: str, rows: pd.DataFrame, extra_columns: bool = False) -> None:
        """Replace the run's checkpoints file (atomically); `extra_columns`: an import's own numeric columns."""
        table = parquet_io.from_frame(rows.reset_index(drop=True), arrow_schema(list(rows.columns), extra_columns))
        atomic_write_bytes(self.run_dir(run_id) / CHECKPOINTS, parquet_io.to_bytes(table))

    def append_row(self, run_id: str, row: dict[str, Any]) -> None:
        rows = self.read_rows(run_id)
        new = pd.DataFrame([row])
        for column, default in OPTIONAL_DEFAULTS.items():  # rows written before the column existed
            if column in new and not rows.empty and column not in rows:
                rows[column] = default
        self.write_rows(run_id, new if rows.empty else pd.concat([rows, new], ignore_index=True))

    def drop_rows_after(self, run_id: str, step: int) -> int:
        """Drop rows beyond `step` of the run's own trajectory (work a resumed run redoes: a cooldown branch's row
        counts where the branch left); returns how many were dropped."""
        rows = self.read_rows(run_id)
        if rows.empty:
            return 0
        keep = rows[trajectory_step(rows) <= step]
        if len(keep) < len(rows):
            self.write_rows(run_id, keep)
        return len(rows) - len(keep)

    def state_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / STATE

    def mark_done(self, run_id: str) -> None:
        atomic_write_bytes(self.run_dir(run_id) / DONE, b"")

    def archive_finished(self, dest: RunStore, run_ids: list[str] | None = None) -> list[str]:
        """Copy the record (RECORD) of each finished run of this store (or of `run_ids`) that `dest` does not hold
        finished into `dest`; returns the run ids copied. Unfinished runs are never copied: their record alone
        could not resume them; nor is an altered run (its record does not match its id)."""
        if dest.root.resolve() == self.root.resolve():
            raise ScalerecError(f"{dest.root}: archiving a store into itself")
        copied = []
        for run_id in self.run_ids() if run_ids is None else run_ids:
            if self.status(run_id) != "done" or dest.status(run_id) == "done" or self.integrity_problem(run_id):
                continue
            for name in RECORD:
                atomic_write_bytes(dest.run_dir(run_id) / name, (self.run_dir(run_id) / name).read_bytes())
            copied.append(run_id)
        return copied

    @contextlib.contextmanager
    def claim(self, run_id: str) -> Iterator[None]:
        """Hold the run's lock while training it, and leave no debris when that fails: a folder this call created
        for a run that never started (no config.json yet: a bad device, a config the data rejects) is removed
        again; a started run that fails is marked FAILED with the reason, which `scalerec runs` shows."""
        existed = self.run_dir(run_id).exists()
        with self.lock(run_id):  # outside the try: another process's lock is not our failure
            try:
                yield
            except Exception as exc:
                if (self.run_dir(run_id) / CONFIG).exists() and self.failure(run_id) is None:
                    reason = str(exc) if isinstance(exc, ScalerecError) else f"{type(exc).__name__}: {exc}"
                    self.mark_failed(run_id, reason)
                raise
            finally:
                if not existed and not (self.run_dir(run_id) / CONFIG).exists():
                    shutil.rmtree(self.run_dir(run_id), ignore_errors=True)

    @contextlib.contextmanager
    def lock(self, run_id: str) -> Iterator[None]:
        """Hold the run's lock; raise ScalerecError at once if another process holds it."""
        path = self.run_dir(run_id) / LOCK
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ScalerecError(f"run {run_id} is being trained by another process") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def read_checkpoints(*paths: str | Path, strict: bool = False) -> pd.DataFrame:
    """All checkpoint rows under the given run stores, run directories or checkpoints.parquet files.

    In a run store, a run is a folder with a config.json (RunStore.run_ids), as `scalerec runs` lists them: a
    folder without one (debris, `.stale/`) is not read. A run whose record does not match its id (store/integrity.py)
    is left out with a warning, and listed in the frame's attrs["altered"] ({run id: why}); with `strict` it is an
    error instead."""
    files: list[tuple[Path, str | None]] = []  # (checkpoints file, the run id its folder names, if in a run folder)
    for path in map(Path, paths or ("runs",)):
        if path.is_file():
            files.append((path, path.parent.name if (path.parent / CONFIG).is_file() else None))
        elif (path / CONFIG).is_file():
            files.extend([(path / CHECKPOINTS, path.name)] if (path / CHECKPOINTS).is_file() else [])
        elif path.is_dir():
            store = RunStore(path)
            files.extend(
                (f, run_id) for run_id in store.run_ids() if (f := store.run_dir(run_id) / CHECKPOINTS).is_file()
            )
        else:
            raise ScalerecError(f"{path}: no such run store, run directory or file")
    if not files:
        raise ScalerecError(f"no runs (no */{CHECKPOINTS}) under {', '.join(map(str, paths or ('runs',)))}")
    frames, altered = [], {}
    for file, run_id in files:
        frame = read_checkpoints_file(file)
        problem = None
        if run_id is not None:
            problem = RunStore(file.parent.parent).integrity_problem(run_id) or rows_problem(run_id, frame.run_id)
        if problem is None:
            frames.append(frame)
        elif strict:
            raise ScalerecError(f"run {run_id} is altered: {problem} (`scalerec runs --verify` checks the store)")
        else:
            altered[run_id] = problem
    if altered:
        warnings.warn(
            f"left out {len(altered)} altered run(s): "
            + "; ".join(f"{run_id}: {why}" for run_id, why in altered.items()),
            AlteredRunWarning,
            stacklevel=2,
        )
    if not frames:
        raise ScalerecError(f"no runs left: every run is altered ({', '.join(altered)})")
    rows = pd.concat(frames, ignore_index=True)
    rows.attrs["altered"] = altered
    return rows


class AlteredRunWarning(UserWarning):
    """A run read from a store was left out because its record does not match its id."""


def read_checkpoints_file(path: Path) -> pd.DataFrame:
    """One checkpoints.parquet, checked against the schema version and columns (a one-line error otherwise)."""
    try:
        table = parquet_io.read_arrow(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ScalerecError(f"{path}: not a readable Parquet file ({exc})") from None
    version = (table.schema.metadata or {}).get(METADATA_KEY)
    if version is None:
        raise ScalerecError(f"{path}: not a scalerec checkpoints file (no schema version)")
    if int(version) != SCHEMA_VERSION:
        raise ScalerecError(f"{path}: schema version {int(version)}, this scalerec reads version {SCHEMA_VERSION}")
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise ScalerecError(
            f"{path}: checkpoints file without the schema v{SCHEMA_VERSION} column(s) "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
        )
    return parquet_io.to_frame(table)
