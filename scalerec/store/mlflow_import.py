"""`scalerec import-mlflow`: runs tracked in MLflow (mlflow_tracking.py reads them) -> run-store folders, as a
mapping (mlflow_mapping.py) says. Each MLflow run becomes one run-store run whose id is a hash of the MLflow run id,
so importing again replaces the run's rows instead of adding a copy."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import ScalerecError
from .mlflow_mapping import Mapping
from .mlflow_tracking import TrackedRun, read_tracking
from .runstore import RunStore
from .schema import SCHEMA_VERSION, train_flops

# -- to run-store rows ---------------------------------------------------------------------------------------------


def imported_run_id(mlflow_run_id: str) -> str:
    return hashlib.sha256(f"mlflow:{mlflow_run_id}".encode()).hexdigest()[:12]


def run_rows(run: TrackedRun, mapping: Mapping) -> pd.DataFrame:
    """The checkpoint rows of one MLflow run: one per step at which a mapped metric was logged."""
    values = _param_values(run, mapping)
    steps = sorted({at for key in mapping.metrics.values() for at, _, _ in run.metrics.get(key, [])})
    if not steps:
        raise ScalerecError(
            f"MLflow run {run.run_id}: none of the mapped metrics ({', '.join(mapping.metrics.values())}) was logged"
        )
    by_step = {
        column: {at: (value, ts) for at, value, ts in run.metrics.get(key, [])}
        for column, key in mapping.metrics.items()
    }
    d = values["dataset_interactions"]
    last_epoch = max(steps) + mapping.epoch_offset
    planned_epochs = values.get("epochs") or last_epoch
    batches_per_epoch = math.ceil(d / values["batch_size"]) if values.get("batch_size") else None
    finished = run.status == "FINISHED"
    rows = []
    for at in steps:
        epoch = at + mapping.epoch_offset
        metric = {column: history.get(at, (math.nan, 0))[0] for column, history in by_step.items()}
        logged = max(history[at][1] for history in by_step.values() if at in history)
        if mapping.convention == "per_batch":
            macs = epoch * values["batch_forward_macs"] * d / values["batch_size"]
        else:
            macs = metric.pop("forward_macs")
        seen = metric.pop("seen_interactions", epoch * d)
        total, non_embedding = values.get("total_params"), values["non_embedding_params"]
        rows.append(
            {
                "run_id": imported_run_id(run.run_id),
                "step": int(epoch * batches_per_epoch) if batches_per_epoch else at,
                "epoch": float(epoch),
                "schedule_fraction": epoch / planned_epochs,
                "is_final": finished and at == steps[-1],
                "seen_interactions": int(seen),
                "dataset_interactions": int(d),
                "train_flops": train_flops(macs),
                "forward_macs": float(macs),
                "analytic_flops": math.nan,
                "non_embedding_params": int(non_embedding),
                "embedding_params": values.get("embedding_params", total - non_embedding if total else None),
                "position_embedding_params": None,
                "total_params": total,
                "n_layers": values["n_layers"],
                "n_heads": values["n_heads"],
                "hidden": values["hidden"],
                "inner_size": values.get("inner_size", values["hidden"]),
                "item_encoder": values.get("item_encoder", mapping.defaults.get("item_encoder", "text")),
                "loss": values.get("loss", mapping.defaults.get("loss", "sampled_softmax")),
                "n_negatives": values.get("n_negatives", 0),
                "dataset": values.get("dataset", mapping.defaults.get("dataset", run.experiment)),
                "n_users": values.get("n_users"),
                "n_items": values.get("n_items"),
                "valid_loss": metric.pop("valid_loss", math.nan),
                "train_loss": metric.pop("train_loss", math.nan),
                "lr": metric.pop("lr", math.nan),
                "wall_time_s": max(0.0, (logged - run.start_time_ms) / 1000) if run.start_time_ms else math.nan,
                **metric,
            }
        )
    frame = pd.DataFrame(rows)
    for column in ("embedding_params", "position_embedding_params", "total_params", "n_users", "n_items"):
        frame[column] = frame[column].astype("Int64")
    return frame


def _param_values(run: TrackedRun, mapping: Mapping) -> dict[str, Any]:
    """The mapped params of one run, as numbers (or text for the text fields); every one must be present."""
    absent = [f"{name} (param {key!r})" for name, key in mapping.params.items() if key not in run.params]
    if absent:
        raise ScalerecError(
            f"MLflow run {run.run_id} ({run.experiment}): the mapping names params it does not "
            f"have: {', '.join(absent)} (it has: {', '.join(sorted(run.params)) or 'none'})"
        )
    values: dict[str, Any] = {}
    for name, key in mapping.params.items():
        raw = run.params[key]
        if name in ("dataset", "item_encoder", "loss"):
            values[name] = raw
            continue
        try:
            number = float(raw)
        except ValueError:
            raise ScalerecError(
                f"MLflow run {run.run_id}: param {key!r} = {raw!r} is not a number (mapped to {name})"
            ) from None
        values[name] = number if name == "batch_forward_macs" else int(number)
    if values["dataset_interactions"] <= 0 or values.get("batch_size", 1) <= 0:
        raise ScalerecError(
            f"MLflow run {run.run_id}: {mapping.params['dataset_interactions']} and the batch size must be positive"
        )
    return values


def import_mlflow(
    source: str, mapping: Mapping, out: str | Path, experiments: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """Write every (selected) MLflow run into the run store `out`; returns one summary per run."""
    kind, runs = read_tracking(source)
    if experiments:
        known = {run.experiment for run in runs}
        missing = [name for name in experiments if name not in known]
        if missing:
            raise ScalerecError(f"{source}: no experiment {missing[0]!r} (experiments: {', '.join(sorted(known))})")
        runs = [run for run in runs if run.experiment in experiments]
    if not runs:
        raise ScalerecError(f"{source}: no MLflow runs to import")
    converted = [(run, run_rows(run, mapping)) for run in runs]  # every run checked before anything is written
    store, summaries = RunStore(out), []
    for run, rows in converted:
        run_id = imported_run_id(run.run_id)
        with store.lock(run_id):
            store.write_rows(run_id, rows)
            store.write_config(
                run_id,
                {
                    "schema_version": SCHEMA_VERSION,
                    "run_id": run_id,
                    "imported_from": {
                        "source": source,
                        "kind": kind,
                        "mlflow_run_id": run.run_id,
                        "experiment": run.experiment,
                        "status": run.status,
                        "mapping": mapping.source,
                    },
                    "params": run.params,
                    "flops_convention": _convention_text(mapping),
                    "dataset": {
                        "name": str(rows.dataset.iloc[0]),
                        "dataset_interactions": int(rows.dataset_interactions.iloc[0]),
                    },
                },
            )
            if run.status == "FINISHED":
                store.mark_done(run_id)
        summaries.append(
            {
                "run_id": run_id,
                "mlflow_run_id": run.run_id,
                "experiment": run.experiment,
                "status": run.status,
                "checkpoints": len(rows),
                "shape": f"{rows.n_layers.iloc[0]}x{rows.n_heads.iloc[0]}x{rows.hidden.iloc[0]}",
                "N": int(rows.non_embedding_params.iloc[0]),
                "D": int(rows.dataset_interactions.iloc[0]),
            }
        )
    return summaries


def _convention_text(mapping: Mapping) -> str:
    if mapping.convention == "per_batch":
        return (
            f"imported from MLflow: forward_macs = epoch x param {mapping.params['batch_forward_macs']!r} "
            f"(forward MACs of one batch) x {mapping.params['dataset_interactions']!r} / "
            f"{mapping.params['batch_size']!r}; train_flops = 6 x forward_macs; T = epoch x D"
        )
    return (
        f"imported from MLflow: forward_macs = metric {mapping.metrics['forward_macs']!r}; "
        "train_flops = 6 x forward_macs"
    )
