"""`scalerec import-table`: runs from any table (CSV, TSV, Parquet, JSON lines) -> run-store folders.

One checkpoint per row; rows grouped into runs by a key column (default: one run per row). A column mapping says
which columns hold N, T and the metric (and optionally run, step, D, compute, layers); every other numeric column
comes along under its own name, so `fit-laws --metric` can name it later. An imported run has no training
provenance: its config.json says where it came from, how its compute was obtained (C = 6·N·T when no compute
column is given) and which way its metric improves. The run id is a hash of the tables' names and the run key, so
importing the same tables again replaces their runs instead of adding copies."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import parquet_io
from ..errors import ScalerecError
from ..metric_direction import resolve_direction
from .runstore import CONFIG, RunStore
from .schema import COLUMNS, OPTIONAL_COLUMNS, SCHEMA_VERSION, train_flops

READERS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}


@dataclass(frozen=True)
class TableMapping:
    """Which columns of the table give what (the --N/--T/... flags, or a TOML file's [columns] table)."""

    N: str
    T: str
    metric: str
    run: str | None = None
    step: str | None = None
    D: str | None = None
    flops: str | None = None
    layers: str | None = None
    direction: str | None = None  # "lower" / "higher"; None: from the metric's name

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> TableMapping:
        """A mapping file: `[columns]` N = "...", T = "...", metric = "...", (run, step, D, flops, layers), and
        optionally `direction = "lower"`; flags given beside it override it."""
        from ..config import load_toml

        if not Path(path).is_file():
            raise ScalerecError(f"{path}: no such mapping file")
        spec = load_toml(path)
        unknown = set(spec) - {"columns", "direction"}
        if unknown or not isinstance(spec.get("columns", {}), dict):
            raise ScalerecError(
                f"{path}: a mapping has a [columns] table and an optional direction "
                f"(not {sorted(unknown) or 'columns as a value'})"
            )
        known = {f.name for f in fields(cls)} - {"direction"}
        bad = set(spec.get("columns", {})) - known
        if bad:
            raise ScalerecError(f"{path}: [columns] {sorted(bad)[0]!r} is not one of {', '.join(sorted(known))}")
        values = {k: str(v) for k, v in spec.get("columns", {}).items()} | {"direction": spec.get("direction")}
        values |= {k: v for k, v in overrides.items() if v is not None}
        missing = [k for k in ("N", "T", "metric") if not values.get(k)]
        if missing:
            raise ScalerecError(f"{path}: [columns] must name {', '.join(missing)}")
        return cls(**values)


def read_table(path: Path) -> pd.DataFrame:
    """A table by its extension (.gz allowed): CSV, TSV, Parquet or JSON lines."""
    suffixes = [s.lower() for s in path.suffixes]
    ext = suffixes[-2] if suffixes and suffixes[-1] == ".gz" and len(suffixes) > 1 else (suffixes or [""])[-1]
    kind = READERS.get(ext)
    if kind is None:
        raise ScalerecError(
            f"{path}: unknown table format {ext or '(no extension)'!r} (known: "
            f"{', '.join(sorted(READERS))}, each optionally .gz)"
        )
    if not path.is_file():
        raise ScalerecError(f"{path}: no such file")
    try:
        if kind == "parquet":
            frame = parquet_io.read_parquet(path)
        elif kind == "jsonl":
            frame = pd.read_json(path, lines=True)
        else:
            frame = pd.read_csv(path, sep="," if kind == "csv" else "\t")
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame()
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise ScalerecError(f"{path}: not a readable {kind} table ({' '.join(str(exc).split())[:200]})") from None
    if frame.empty:
        raise ScalerecError(f"{path}: the table has no rows")
    # where a row sits in its file, for errors: the line of a CSV/TSV (after the header), else the row number
    frame.attrs["first_row"] = 2 if kind in ("csv", "tsv") else 1
    return frame


def _numbers(frame: pd.DataFrame, column: str, role: str, path: Path, positive: bool) -> np.ndarray:
    """A mapped column as floats; a one-line error naming the first bad row otherwise."""
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(float)
    row0 = frame.attrs.get("first_row", 1)
    if role == "metric":  # NaN metrics are counted (or refused under --strict) by the caller; text is an error
        bad = np.flatnonzero(np.isnan(values) & frame[column].notna().to_numpy())
        if len(bad):
            i = bad[0]
            raise ScalerecError(
                f"{path}:{i + row0}: column {column!r} (--metric) holds {str(frame[column].iloc[i])!r}, not a number"
            )
        return values
    bad = np.flatnonzero(~np.isfinite(values) | ((values <= 0) if positive else False))
    if len(bad):
        i = bad[0]
        raw = frame[column].iloc[i]
        raw = raw.item() if hasattr(raw, "item") else raw  # numpy scalars print as themselves
        what = "is missing" if pd.isna(raw) else f"holds {raw!r}, not a {'positive ' if positive else ''}number"
        raise ScalerecError(f"{path}:{i + row0}: column {column!r} (--{role}) {what}")
    return values


def table_rows(
    path: Path, frame: pd.DataFrame, mapping: TableMapping, strict: bool, tables_key: str
) -> tuple[pd.DataFrame, int]:
    """The checkpoint rows of one table, and how many rows were left out for a NaN metric."""
    mapped = {
        role: getattr(mapping, role)
        for role in ("N", "T", "metric", "run", "step", "D", "flops", "layers")
        if getattr(mapping, role)
    }
    for role, column in mapped.items():
        if column not in frame.columns:
            raise ScalerecError(
                f"{path}: no column {column!r} (given as --{role}); its columns: {', '.join(map(str, frame.columns))}"
            )
    row0 = frame.attrs.get("first_row", 1)
    n = _numbers(frame, mapping.N, "N", path, True)
    t = _numbers(frame, mapping.T, "T", path, True)
    metric = _numbers(frame, mapping.metric, "metric", path, False)
    flops = _numbers(frame, mapping.flops, "flops", path, True) if mapping.flops else train_flops(n * t)  # C = 6NT
    layers = _numbers(frame, mapping.layers, "layers", path, True) if mapping.layers else None
    step = _numbers(frame, mapping.step, "step", path, False) if mapping.step else None
    keys = (
        frame[mapping.run].astype(str).to_numpy()
        if mapping.run
        else np.array([f"row {i + row0}" for i in range(len(frame))])
    )
    missing = np.isnan(metric)
    if missing.any() and strict:
        i = int(np.flatnonzero(missing)[0])
        raise ScalerecError(
            f"{path}:{i + row0}: column {mapping.metric!r} (--metric) is empty (NaN); without "
            "--strict such rows are left out and counted"
        )
    order_key = step if step is not None else t
    rows = pd.DataFrame({"key": keys, "order": order_key, "line": np.arange(len(frame)) + row0})
    duplicated = rows.duplicated(["key", "order"], keep=False).to_numpy()
    if duplicated.any():
        lines = rows.line[duplicated].tolist()[:2]
        what = f"--step {mapping.step!r}" if mapping.step else f"T ({mapping.T!r})"
        raise ScalerecError(
            f"{path}:{lines[0]}: rows {lines[0]} and {lines[1]} repeat run "
            f"{rows.key[duplicated].iloc[0]!r} at the same {what}"
        )
    d = (
        _numbers(frame, mapping.D, "D", path, True)
        if mapping.D
        # no data size: each run's largest T is its data, seen once (so no repetition is ever claimed)
        else pd.Series(t).groupby(keys).transform("max").to_numpy(float)
    )
    extra = [
        c
        for c in frame.columns
        if c not in mapped.values()
        and pd.api.types.is_numeric_dtype(frame[c])
        and not pd.api.types.is_bool_dtype(frame[c])
    ]
    out = pd.DataFrame(
        {
            "run_id": [imported_run_id(tables_key, k) for k in keys],
            "step": np.round(step).astype(np.int64) if step is not None else np.zeros(len(frame), np.int64),
            "order": order_key,
            "key": keys,
            "seen_interactions": np.round(t).astype(np.int64),
            "dataset_interactions": np.round(d).astype(np.int64),
            "train_flops": flops,
            "forward_macs": flops / train_flops(1.0),
            "analytic_flops": math.nan,
            "non_embedding_params": np.round(n).astype(np.int64),
            "n_layers": pd.array(
                np.round(layers).astype(int) if layers is not None else [None] * len(frame), dtype="Int32"
            ),
            "dataset": path.stem,
            store_name(mapping.metric): metric,
        }
    )
    for column in extra:
        out[store_name(column)] = pd.to_numeric(frame[column], errors="coerce").astype(float).to_numpy()
    out = out[~missing].sort_values(["run_id", "order"], kind="stable")
    if step is None:  # steps number a run's rows in order of T
        out["step"] = out.groupby("run_id").cumcount().astype(np.int64)
    return out, int(missing.sum())


def store_name(column: str) -> str:
    """The store column of a table's column: its own name, unless the store already means something by it."""
    name = str(column)
    return f"imported_{name}" if name in COLUMNS or name in OPTIONAL_COLUMNS or name in ("order", "key") else name


def imported_run_id(tables_key: str, run_key: str) -> str:
    return hashlib.sha256(f"table:{tables_key}:{run_key}".encode()).hexdigest()[:12]


def _complete(rows: pd.DataFrame) -> pd.DataFrame:
    """Fill the schema's columns that a table does not give (nulls, or what follows from the rows)."""
    last = rows.groupby("run_id").order.transform("max")
    largest_t = rows.groupby("run_id").seen_interactions.transform("max")
    rows = rows.assign(
        epoch=rows.seen_interactions / rows.dataset_interactions,
        schedule_fraction=rows.seen_interactions / largest_t,  # no schedule is known: where along its T the row is
        is_final=rows.order == last,
    )
    for name, (dtype, _) in COLUMNS.items():
        if name not in rows:
            rows[name] = (
                pd.array([None] * len(rows), dtype="string")
                if str(dtype) == "string"
                else pd.array([None] * len(rows), dtype="Int64" if str(dtype) == "int64" else "Int32")
                if str(dtype).startswith("int")
                else math.nan
            )
    return rows.drop(columns=["order", "key"])


def import_table(paths: list[str], mapping: TableMapping, out: str | Path, strict: bool = False) -> dict[str, Any]:
    """Write every run of the tables into the run store `out`; returns a summary. Every table is read and checked
    before anything is written, so a bad row leaves the store as it was."""
    if not paths:
        raise ScalerecError("import-table: give at least one table")
    direction = resolve_direction(mapping.metric, mapping.direction)
    tables_key = ",".join(sorted(Path(p).name for p in paths))
    parts, left_out = [], 0
    for path in map(Path, paths):
        rows, dropped = table_rows(path, read_table(path), mapping, strict, tables_key)
        parts.append(rows)
        left_out += dropped
    rows = pd.concat(parts, ignore_index=True)
    if rows.empty:
        raise ScalerecError(f"{', '.join(paths)}: every row's {mapping.metric!r} is empty: nothing to import")
    clash = rows.duplicated(["run_id", "order"], keep=False)
    if clash.any():
        raise ScalerecError(f"run {rows.key[clash].iloc[0]!r} has two rows at the same step in different tables")
    run_keys = dict(zip(rows.run_id, rows.key.astype(str)))  # what each run id hashes, recorded beside it
    rows = _complete(rows)
    store, runs = RunStore(out), []
    convention = (
        f"train_flops from column {mapping.flops!r}"
        if mapping.flops
        else "C = 6 x N x T (no compute column was given): train_flops = 6 x N x T, forward_macs = N x T"
    )
    for run_id, run in rows.groupby("run_id", sort=False):
        run = run.sort_values("step", kind="stable").reset_index(drop=True)
        with store.lock(run_id):
            store.write_rows(run_id, run, extra_columns=True)
            store.write_config(
                run_id,
                {
                    "schema_version": SCHEMA_VERSION,
                    "run_id": run_id,
                    "imported_from": {
                        "kind": "table",
                        "tables": [str(p) for p in paths],
                        "identity": {"tables": tables_key, "run": run_keys[run_id]},  # what the id hashes
                        "metric": mapping.metric,
                        "metric_column": store_name(mapping.metric),
                        "direction": direction,
                        "mapping": {k: v for k, v in vars(mapping).items() if v is not None},
                        "training_provenance": None,
                    },
                    "flops_convention": convention,
                    "data_size": (
                        f"D from column {mapping.D!r}"
                        if mapping.D
                        else "no D column: D = the run's largest T (each interaction seen once)"
                    ),
                    "dataset": {
                        "name": str(run.dataset.iloc[0]),
                        "dataset_interactions": int(run.dataset_interactions.iloc[-1]),
                    },
                },
            )
            store.mark_done(run_id)
        runs.append(run_id)
    return {
        "runs": len(runs),
        "checkpoints": len(rows),
        "left_out_nan_metric": left_out,
        "store": str(out),
        "metric": store_name(mapping.metric),
        "direction": direction,
        "flops_convention": convention,
    }


def recorded_metric(stores: tuple[str, ...] | list[str]) -> tuple[str, str] | None:
    """(metric column, direction) that the import-table runs of these stores were imported with (the first found;
    None when the stores hold no imported table)."""
    for root in map(Path, stores):
        candidates = [root / CONFIG] if (root / CONFIG).is_file() else sorted(root.glob(f"*/{CONFIG}"))
        for path in candidates:
            try:
                origin = json.loads(path.read_text()).get("imported_from") or {}
            except (OSError, ValueError, AttributeError):
                continue
            if origin.get("kind") == "table":
                return origin["metric_column"], origin["direction"]
    return None
