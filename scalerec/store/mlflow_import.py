"""`scalerec import-mlflow`: runs tracked in MLflow (a SQLite backend or an mlruns/ file store) -> run-store folders.

The stores are read directly (sqlite3 read-only, or the file store's plain files), not through the mlflow package:
MLflow refuses a database whose schema is older than its own until `mlflow db upgrade` rewrites it, and the user's
file must not change. The tables and files read here (runs, params, metrics, experiments) have kept their meaning
since MLflow 1.0; columns added later (metrics.step, metrics.is_nan) are used when present.

A mapping (TOML, see mappings/srt.toml) says which params and metrics give which run-store columns and how the
runs counted FLOPs. Each MLflow run becomes one run-store run whose id is a hash of the MLflow run id, so importing
again replaces the run's rows instead of adding a copy.
"""

from __future__ import annotations

import hashlib
import math
import sqlite3
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pandas as pd
import yaml

from ..config import load_toml
from ..errors import ScalerecError
from .runstore import RunStore
from .schema import METRIC_PATTERN, SCHEMA_VERSION, train_flops

PARAM_FIELDS = {  # run-store field -> required?
    "n_layers": True, "n_heads": True, "hidden": True, "dataset_interactions": True, "non_embedding_params": True,
    "batch_size": False, "batch_forward_macs": False, "inner_size": False, "n_negatives": False,
    "total_params": False, "embedding_params": False, "n_users": False, "n_items": False, "epochs": False,
    "dataset": False, "item_encoder": False, "loss": False}
METRIC_FIELDS = {"valid_loss", "train_loss", "lr", "forward_macs", "seen_interactions"}  # + metric columns
CONVENTIONS = ("per_batch", "metric")
# The file store writes run status as the RunStatus enum's number.
FILE_STORE_STATUS = {"1": "RUNNING", "2": "SCHEDULED", "3": "FINISHED", "4": "FAILED", "5": "KILLED"}


@dataclass(frozen=True)
class Mapping:
    """Which MLflow params/metrics give which run-store columns (see mappings/srt.toml for the format)."""

    params: dict[str, str]
    metrics: dict[str, str]
    epoch_offset: int = 1
    convention: str = "per_batch"
    defaults: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        where = self.source or "mapping"
        for name in self.params:
            if name not in PARAM_FIELDS:
                raise ScalerecError(f"{where}: [params] {name!r} is not a field import-mlflow fills "
                                    f"(known: {', '.join(PARAM_FIELDS)})")
        missing = [name for name, required in PARAM_FIELDS.items() if required and name not in self.params]
        if missing:
            raise ScalerecError(f"{where}: [params] must name the MLflow param for {', '.join(missing)}")
        for name in self.metrics:
            if name not in METRIC_FIELDS and not METRIC_PATTERN.match(name):
                raise ScalerecError(f"{where}: [metrics] {name!r} is not a run-store column (valid_ndcg_at_5, "
                                    f"test_hit_at_10, ..., or one of {', '.join(sorted(METRIC_FIELDS))})")
        if not any(METRIC_PATTERN.match(name) for name in self.metrics):
            raise ScalerecError(f"{where}: [metrics] must map at least one ranking metric (e.g. valid_ndcg_at_5)")
        if self.convention not in CONVENTIONS:
            raise ScalerecError(f"{where}: flops.convention must be one of {', '.join(CONVENTIONS)}")
        if self.convention == "per_batch" and not {"batch_size", "batch_forward_macs"} <= set(self.params):
            raise ScalerecError(f"{where}: flops.convention = 'per_batch' needs [params] batch_size and "
                                "batch_forward_macs")
        if self.convention == "metric" and "forward_macs" not in self.metrics:
            raise ScalerecError(f"{where}: flops.convention = 'metric' needs [metrics] forward_macs")
        unknown = set(self.defaults) - {"item_encoder", "loss", "dataset"}
        if unknown:
            raise ScalerecError(f"{where}: [defaults] takes item_encoder, loss, dataset (not {sorted(unknown)})")


def builtin_mappings() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("scalerec.store.mappings").iterdir() if p.name.endswith(".toml"))


def load_mapping(name_or_path: str) -> Mapping:
    """A built-in mapping by name (`srt`) or a mapping TOML file."""
    if name_or_path in builtin_mappings():
        with resources.as_file(resources.files("scalerec.store.mappings") / f"{name_or_path}.toml") as path:
            spec = load_toml(path)
    else:
        if not Path(name_or_path).exists():
            raise ScalerecError(f"{name_or_path}: no such mapping file (built-in: {', '.join(builtin_mappings())})")
        spec = load_toml(name_or_path)
    unknown = set(spec) - {"params", "metrics", "steps", "flops", "defaults"}
    if unknown:
        raise ScalerecError(f"{name_or_path}: unknown section {sorted(unknown)[0]!r} "
                            "(known: params, metrics, steps, flops, defaults)")
    tables = {key: spec.get(key, {}) for key in ("params", "metrics", "steps", "flops", "defaults")}
    for key, table in tables.items():
        if not isinstance(table, dict):
            raise ScalerecError(f"{name_or_path}: [{key}] must be a table")
    return Mapping(params={k: str(v) for k, v in tables["params"].items()},
                   metrics={k: str(v) for k, v in tables["metrics"].items()},
                   epoch_offset=int(tables["steps"].get("epoch_offset", 1)),
                   convention=str(tables["flops"].get("convention", "per_batch")),
                   defaults=dict(tables["defaults"]), source=str(name_or_path))


# -- reading MLflow ------------------------------------------------------------------------------------------------

@dataclass
class TrackedRun:
    """One MLflow run as read from the store: params, and every metric's (step, value, timestamp) history."""

    run_id: str
    experiment: str
    status: str
    start_time_ms: float
    params: dict[str, str]
    metrics: dict[str, list[tuple[int, float, int]]]


def read_tracking(source: str) -> tuple[str, list[TrackedRun]]:
    """(kind, runs) from an MLflow SQLite database or an mlruns/ directory; deleted runs are left out."""
    parsed = urlparse(source)
    if parsed.scheme == "sqlite":
        path = Path(unquote(source.split("sqlite:///", 1)[-1]) if source.startswith("sqlite:///") else parsed.path)
        return "sqlite", _read_sqlite(path)
    if parsed.scheme == "file":
        return "file", _read_file_store(Path(unquote(parsed.path)))
    if parsed.scheme and len(parsed.scheme) > 1:
        raise ScalerecError(f"{source}: only SQLite databases (sqlite:///path or a .db file) and mlruns/ directories "
                            "are read; export runs from a tracking server to one of them first")
    path = Path(source)
    if path.is_dir():
        return "file", _read_file_store(path)
    if path.is_file():
        return "sqlite", _read_sqlite(path)
    raise ScalerecError(f"{source}: no such MLflow database or mlruns/ directory")


def _read_sqlite(path: Path) -> list[TrackedRun]:
    if not path.is_file():
        raise ScalerecError(f"{path}: no such MLflow database")
    with path.open("rb") as handle:
        if handle.read(16) != b"SQLite format 3\x00":
            raise ScalerecError(f"{path}: not a SQLite database (nor an mlruns/ directory)")
    # mode=ro: the user's database is never written, whatever its schema version.
    connection = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
    try:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"runs", "params", "metrics", "experiments"} <= tables:
            raise ScalerecError(f"{path}: a SQLite database, but not an MLflow tracking store (no runs/params/metrics "
                                "tables)")
        metric_columns = {row[1] for row in connection.execute("PRAGMA table_info(metrics)")}
        run_columns = {row[1] for row in connection.execute("PRAGMA table_info(runs)")}
        deleted = "WHERE r.lifecycle_stage IS NULL OR r.lifecycle_stage != 'deleted'" \
            if "lifecycle_stage" in run_columns else ""
        runs = {row[0]: TrackedRun(row[0], row[1], row[2] or "UNKNOWN", float(row[3] or 0), {}, {})
                for row in connection.execute(
                    "SELECT r.run_uuid, e.name, r.status, r.start_time FROM runs r "
                    f"JOIN experiments e ON r.experiment_id = e.experiment_id {deleted} ORDER BY r.start_time")}
        for key, value, run_uuid in connection.execute("SELECT key, value, run_uuid FROM params"):
            if run_uuid in runs:
                runs[run_uuid].params[key] = value
        step = "step" if "step" in metric_columns else "NULL"
        is_nan = "is_nan" if "is_nan" in metric_columns else "0"
        for key, value, timestamp, run_uuid, at, nan in connection.execute(
                f"SELECT key, value, timestamp, run_uuid, {step}, {is_nan} FROM metrics ORDER BY timestamp"):
            if run_uuid in runs:
                runs[run_uuid].metrics.setdefault(key, []).append(
                    (at, math.nan if nan else float(value), int(timestamp)))
    except sqlite3.DatabaseError as exc:
        raise ScalerecError(f"{path}: cannot read the MLflow database ({exc})") from None
    finally:
        connection.close()
    for run in runs.values():
        run.metrics = {key: _number_steps(history) for key, history in run.metrics.items()}
    return list(runs.values())


def _number_steps(history: list[tuple[Any, float, int]]) -> list[tuple[int, float, int]]:
    """Stores from before MLflow had metric steps: the i-th value of a metric (by time) is step i."""
    return [(i if at is None else int(at), value, timestamp) for i, (at, value, timestamp) in enumerate(history)]


def _read_file_store(root: Path) -> list[TrackedRun]:
    if not root.is_dir():
        raise ScalerecError(f"{root}: no such mlruns/ directory")
    runs = []
    experiments = [d for d in sorted(root.iterdir()) if (d / "meta.yaml").is_file()]
    if not experiments:
        raise ScalerecError(f"{root}: not an MLflow file store (no <experiment>/meta.yaml)")
    for experiment_dir in experiments:
        experiment = _yaml(experiment_dir / "meta.yaml")
        if experiment.get("lifecycle_stage") == "deleted":
            continue
        for run_dir in sorted(experiment_dir.iterdir()):
            if not (run_dir / "meta.yaml").is_file():
                continue
            meta = _yaml(run_dir / "meta.yaml")
            if meta.get("lifecycle_stage") == "deleted":
                continue
            params = {_key(p, run_dir / "params"): p.read_text() for p in _files(run_dir / "params")}
            metrics = {_key(m, run_dir / "metrics"): _metric_lines(m) for m in _files(run_dir / "metrics")}
            status = str(meta.get("status", ""))
            runs.append(TrackedRun(str(meta.get("run_id") or meta.get("run_uuid") or run_dir.name),
                                   str(experiment.get("name", experiment_dir.name)),
                                   FILE_STORE_STATUS.get(status, status or "UNKNOWN"),
                                   float(meta.get("start_time") or 0), params, metrics))
    return sorted(runs, key=lambda r: r.start_time_ms)


def _yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ScalerecError(f"{path}: unreadable MLflow meta.yaml ({exc})") from None
    return data if isinstance(data, dict) else {}


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file()) if directory.is_dir() else []


def _key(path: Path, base: Path) -> str:
    return path.relative_to(base).as_posix()  # keys with '/' are nested directories


def _metric_lines(path: Path) -> list[tuple[int, float, int]]:
    """A file-store metric: lines `timestamp value [step]` (old stores have no step)."""
    history = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        try:
            history.append((int(parts[2]) if len(parts) > 2 else None, float(parts[1]), int(parts[0])))
        except ValueError:
            raise ScalerecError(f"{path}: unreadable metric line {line!r}") from None
    return _number_steps(history)


# -- to run-store rows ---------------------------------------------------------------------------------------------

def imported_run_id(mlflow_run_id: str) -> str:
    return hashlib.sha256(f"mlflow:{mlflow_run_id}".encode()).hexdigest()[:12]


def run_rows(run: TrackedRun, mapping: Mapping) -> pd.DataFrame:
    """The checkpoint rows of one MLflow run: one per step at which a mapped metric was logged."""
    values = _param_values(run, mapping)
    steps = sorted({at for key in mapping.metrics.values() for at, _, _ in run.metrics.get(key, [])})
    if not steps:
        raise ScalerecError(f"MLflow run {run.run_id}: none of the mapped metrics "
                            f"({', '.join(mapping.metrics.values())}) was logged")
    by_step = {column: {at: (value, ts) for at, value, ts in run.metrics.get(key, [])}
               for column, key in mapping.metrics.items()}
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
        rows.append({
            "run_id": imported_run_id(run.run_id),
            "step": int(epoch * batches_per_epoch) if batches_per_epoch else at,
            "epoch": float(epoch), "schedule_fraction": epoch / planned_epochs,
            "is_final": finished and at == steps[-1],
            "seen_interactions": int(seen), "dataset_interactions": int(d),
            "train_flops": train_flops(macs), "forward_macs": float(macs), "analytic_flops": math.nan,
            "non_embedding_params": int(non_embedding),
            "embedding_params": values.get("embedding_params", total - non_embedding if total else None),
            "position_embedding_params": None, "total_params": total,
            "n_layers": values["n_layers"], "n_heads": values["n_heads"], "hidden": values["hidden"],
            "inner_size": values.get("inner_size", values["hidden"]),
            "item_encoder": values.get("item_encoder", mapping.defaults.get("item_encoder", "text")),
            "loss": values.get("loss", mapping.defaults.get("loss", "sampled_softmax")),
            "n_negatives": values.get("n_negatives", 0),
            "dataset": values.get("dataset", mapping.defaults.get("dataset", run.experiment)),
            "n_users": values.get("n_users"), "n_items": values.get("n_items"),
            "valid_loss": metric.pop("valid_loss", math.nan), "train_loss": metric.pop("train_loss", math.nan),
            "lr": metric.pop("lr", math.nan),
            "wall_time_s": max(0.0, (logged - run.start_time_ms) / 1000) if run.start_time_ms else math.nan,
            **metric})
    frame = pd.DataFrame(rows)
    for column in ("embedding_params", "position_embedding_params", "total_params", "n_users", "n_items"):
        frame[column] = frame[column].astype("Int64")
    return frame


def _param_values(run: TrackedRun, mapping: Mapping) -> dict[str, Any]:
    """The mapped params of one run, as numbers (or text for the text fields); every one must be present."""
    absent = [f"{name} (param {key!r})" for name, key in mapping.params.items() if key not in run.params]
    if absent:
        raise ScalerecError(f"MLflow run {run.run_id} ({run.experiment}): the mapping names params it does not "
                            f"have: {', '.join(absent)} (it has: {', '.join(sorted(run.params)) or 'none'})")
    values: dict[str, Any] = {}
    for name, key in mapping.params.items():
        raw = run.params[key]
        if name in ("dataset", "item_encoder", "loss"):
            values[name] = raw
            continue
        try:
            number = float(raw)
        except ValueError:
            raise ScalerecError(f"MLflow run {run.run_id}: param {key!r} = {raw!r} is not a number "
                                f"(mapped to {name})") from None
        values[name] = number if name == "batch_forward_macs" else int(number)
    if values["dataset_interactions"] <= 0 or values.get("batch_size", 1) <= 0:
        raise ScalerecError(f"MLflow run {run.run_id}: {mapping.params['dataset_interactions']} and the batch size "
                            "must be positive")
    return values


def import_mlflow(source: str, mapping: Mapping, out: str | Path,
                  experiments: tuple[str, ...] = ()) -> list[dict[str, Any]]:
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
            store.write_config(run_id, {
                "schema_version": SCHEMA_VERSION, "run_id": run_id,
                "imported_from": {"source": source, "kind": kind, "mlflow_run_id": run.run_id,
                                  "experiment": run.experiment, "status": run.status, "mapping": mapping.source},
                "params": run.params, "flops_convention": _convention_text(mapping),
                "dataset": {"name": str(rows.dataset.iloc[0]),
                            "dataset_interactions": int(rows.dataset_interactions.iloc[0])}})
            if run.status == "FINISHED":
                store.mark_done(run_id)
        summaries.append({"run_id": run_id, "mlflow_run_id": run.run_id, "experiment": run.experiment,
                          "status": run.status, "checkpoints": len(rows),
                          "shape": f"{rows.n_layers.iloc[0]}x{rows.n_heads.iloc[0]}x{rows.hidden.iloc[0]}",
                          "N": int(rows.non_embedding_params.iloc[0]), "D": int(rows.dataset_interactions.iloc[0])})
    return summaries


def _convention_text(mapping: Mapping) -> str:
    if mapping.convention == "per_batch":
        return (f"imported from MLflow: forward_macs = epoch x param {mapping.params['batch_forward_macs']!r} "
                f"(forward MACs of one batch) x {mapping.params['dataset_interactions']!r} / "
                f"{mapping.params['batch_size']!r}; train_flops = 6 x forward_macs; T = epoch x D")
    return (f"imported from MLflow: forward_macs = metric {mapping.metrics['forward_macs']!r}; "
            "train_flops = 6 x forward_macs")

