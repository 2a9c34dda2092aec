"""Is a run's record the run its id names? Every reader asks before it trusts a run.

A run id is a hash of what determines the run, so a record can be checked against its own id:
- a trained run: its stored config, rebuilt as it was trained (RunConfig.from_stored), hashes to the id;
- a fine-tuning run: its stored fine-tuning settings hash to the id (FinetuneConfig.run_id's rule);
- an MLflow import: the id is the hash of the MLflow run id it records;
- a table import: the id is the hash of the tables' key and the run's key, recorded under `imported_from.identity`
  (imports made before it was recorded are checked for folder and rows only: the documented rule for old stores).
Everywhere the folder name and config.json's `run_id` must agree, and every checkpoint row must carry the id.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ..config import RunConfig, canonical_json
from ..errors import ScalerecError


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def expected_run_id(config: dict[str, Any]) -> str | None:
    """The id config.json's content hashes to, or None where it records no identity (an old table import); a
    ScalerecError when its config cannot be built (a field this scalerec does not know, a value it refuses)."""
    if "finetune" in config:  # (its `config` is the training it continued, on the new data: not what the id hashes)
        return _hash(canonical_json({"finetune": config["finetune"]}))
    if "config" in config:
        return RunConfig.from_stored(config["config"]).run_id
    origin = config.get("imported_from") or {}
    if origin.get("mlflow_run_id"):
        return _hash(f"mlflow:{origin['mlflow_run_id']}")
    identity = origin.get("identity")
    if isinstance(identity, dict) and {"tables", "run"} <= set(identity):
        return _hash(f"table:{identity['tables']}:{identity['run']}")
    return None


def config_problem(run_id: str, config: dict[str, Any]) -> str | None:
    """Why config.json is not the record of `run_id` (None: it is)."""
    recorded = config.get("run_id")
    if recorded is not None and recorded != run_id:
        return f"config.json names run {recorded}, its folder {run_id}"
    try:
        expected = expected_run_id(config)
    except ScalerecError as exc:  # e.g. a run written by a newer scalerec, with a field this one does not know
        why = str(exc).split(" (known:")[0]
        return f"this scalerec cannot rebuild its config ({why}): written by a newer scalerec, or edited by hand"
    if expected is not None and expected != run_id:
        return f"config.json hashes to {expected}, not to its run id (edited after the run was made?)"
    return None


def rows_problem(run_id: str, row_ids: Any) -> str | None:
    """Why checkpoint rows whose run_id column is `row_ids` are not `run_id`'s (None: they are)."""
    others = sorted({str(v) for v in row_ids} - {run_id})
    return f"checkpoint rows carry run id {others[0]}" if others else None
