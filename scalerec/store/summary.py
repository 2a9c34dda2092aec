"""One line per run of a store (what `scalerec runs` shows): status, shape, data size, last checkpoint, semantics.
Knows the layout of config.json, so that the CLI does not."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from .integrity import config_problem, rows_problem
from .provenance import config_semantics
from .runstore import RunStore
from .schema import is_cooldown_row


def run_summary(store: RunStore, run_id: str) -> dict[str, Any]:
    """status, shape, encoder, D, checkpoints, semantics; with checkpoints: N, epoch, T, train_flops, wall hours
    (and CPU hours where recorded) and the last validation NDCG; a failed run: the reason it recorded."""
    config, rows = store.read_config(run_id), store.read_rows(run_id)
    ckpt = rows[~is_cooldown_row(rows)]  # the run's own trajectory (a WSD run's cooldown rows are branches)
    # trained runs have their config; imported ones (import-mlflow) only their rows
    model = config.get("config", {}).get("model") or (ckpt.iloc[-1] if len(ckpt) else {})
    table = (config.get("imported_from") or {}).get("kind") == "table"
    shape = [model[k] for k in ("n_layers", "n_heads", "hidden")] if len(model) else []
    row = {
        "run_id": run_id,
        "status": "imported" if table else store.status(run_id),
        "shape": "x".join(str(v) for v in shape) if shape and not any(pd.isna(v) for v in shape) else "?",
        "encoder": "-" if table else model.get("item_encoder", "?"),
        "block": "-" if table or not len(model) else model.get("block") or "sasrec",
        "D": config["dataset"].get("dataset_interactions"),
        "checkpoints": len(rows),
        "semantics": config_semantics(config),
    }
    if len(ckpt):
        last = ckpt.iloc[-1]
        metric = (
            config["imported_from"]["metric_column"]
            if table
            else next((c for c in ("valid_ndcg_at_5", *ckpt.columns) if c.startswith("valid_ndcg_at_")), None)
        )
        row |= {
            "N": int(last.non_embedding_params),
            "epoch": float(last.epoch),
            "T": int(last.seen_interactions),
            "train_flops": float(last.train_flops),
            "hours": _hours(last.wall_time_s),
        }
        cpu = run_seconds(last)["cpu_time_s"]
        if cpu is not None:
            row["cpu_hours"] = _hours(cpu)
        if metric in ckpt:
            row[metric] = round(float(last[metric]), 4)
    if row["status"] == "failed":
        row["reason"] = " ".join((store.failure(run_id) or "").split())
    altered = config_problem(run_id, config) or (rows_problem(run_id, rows.run_id) if len(rows) else None)
    if altered:  # not the run its id names: no reader trusts it (store/integrity.py)
        row["status"], row["reason"] = "altered", altered
    return row


def run_seconds(row) -> dict[str, float | None]:
    """A checkpoint row's cumulative wall and CPU seconds; CPU None where the row has none (a run started, or resumed
    from a state written, before rows recorded CPU time)."""
    cpu = float(row.get("cpu_time_s", math.nan))
    return {"wall_time_s": float(row["wall_time_s"]), "cpu_time_s": None if math.isnan(cpu) else cpu}


def _hours(seconds: float) -> float:
    return float(f"{float(seconds) / 3600:.3g}")  # 3 significant digits: a one-minute demo run is not 0.0
