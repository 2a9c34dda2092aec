"""Reading MLflow runs directly from a SQLite backend (read-only) or an mlruns/ file store, not through the mlflow
package: MLflow refuses a database whose schema is older than its own until `mlflow db upgrade` rewrites it, and the
user's file must not change. The tables and files read here (runs, params, metrics, experiments) have kept their
meaning since MLflow 1.0; columns added later (metrics.step, metrics.is_nan) are used when present."""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import yaml

from ..errors import ScalerecError

# The file store writes run status as the RunStatus enum's number.
FILE_STORE_STATUS = {"1": "RUNNING", "2": "SCHEDULED", "3": "FINISHED", "4": "FAILED", "5": "KILLED"}


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
        raise ScalerecError(
            f"{source}: only SQLite databases (sqlite:///path or a .db file) and mlruns/ directories "
            "are read; export runs from a tracking server to one of them first"
        )
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
            raise ScalerecError(
                f"{path}: a SQLite database, but not an MLflow tracking store (no runs/params/metrics tables)"
            )
        metric_columns = {row[1] for row in connection.execute("PRAGMA table_info(metrics)")}
        run_columns = {row[1] for row in connection.execute("PRAGMA table_info(runs)")}
        deleted = (
            "WHERE r.lifecycle_stage IS NULL OR r.lifecycle_stage != 'deleted'"
            if "lifecycle_stage" in run_columns
            else ""
        )
        runs = {
            row[0]: TrackedRun(row[0], row[1], row[2] or "UNKNOWN", float(row[3] or 0), {}, {})
            for row in connection.execute(
                "SELECT r.run_uuid, e.name, r.status, r.start_time FROM runs r "
                f"JOIN experiments e ON r.experiment_id = e.experiment_id {deleted} ORDER BY r.start_time"
            )
        }
        for key, value, run_uuid in connection.execute("SELECT key, value, run_uuid FROM params"):
            if run_uuid in runs:
                runs[run_uuid].params[key] = value
        step = "step" if "step" in metric_columns else "NULL"
        is_nan = "is_nan" if "is_nan" in metric_columns else "0"
        for key, value, timestamp, run_uuid, at, nan in connection.execute(
            f"SELECT key, value, timestamp, run_uuid, {step}, {is_nan} FROM metrics ORDER BY timestamp"
        ):
            if run_uuid in runs:
                runs[run_uuid].metrics.setdefault(key, []).append(
                    (at, math.nan if nan else float(value), int(timestamp))
                )
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
            runs.append(
                TrackedRun(
                    str(meta.get("run_id") or meta.get("run_uuid") or run_dir.name),
                    str(experiment.get("name", experiment_dir.name)),
                    FILE_STORE_STATUS.get(status, status or "UNKNOWN"),
                    float(meta.get("start_time") or 0),
                    params,
                    metrics,
                )
            )
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
