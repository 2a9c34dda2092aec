"""Prepared datasets: cleaning with a report, k-core, and the on-disk form every run can name.

DIR/interactions.parquet, DIR/items.parquet (canonical tables, DESIGN §9) and DIR/dataset.json (name, fingerprint,
source, cleaning report, statistics). The directory is assembled under a temporary name and renamed into place, and
dataset.json is written last, so an interrupted `prepare` never leaves something that looks like a dataset.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import jsonio, parquet_io
from ..errors import ScalerecError
from .tables import Tables, make_tables

DATASET_JSON = "dataset.json"


def _counts(interactions: pd.DataFrame) -> dict[str, int]:
    return {
        "users": int(interactions.user_id.nunique()),
        "items": int(interactions.item_id.nunique()),
        "interactions": len(interactions),
    }


def kcore(interactions: pd.DataFrame, k: int) -> pd.DataFrame:
    """Drop users and items with fewer than k interactions, repeatedly, until none is left to drop."""
    while True:
        user_n = interactions.user_id.map(interactions.user_id.value_counts())
        item_n = interactions.item_id.map(interactions.item_id.value_counts())
        keep = (user_n >= k) & (item_n >= k)
        if keep.all():
            return interactions
        interactions = interactions[keep.to_numpy()]


def clean(
    interactions: pd.DataFrame, items: pd.DataFrame, k: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame, list[dict[str, Any]]]:
    """Exact duplicate events dropped, optional k-core; returns the tables and a report of each step."""
    report = [{"step": "read", **_counts(interactions)}]
    before = len(interactions)
    interactions = interactions.drop_duplicates(["user_id", "item_id", "timestamp"])
    report.append(
        {"step": "drop exact duplicate events", **_counts(interactions), "dropped": before - len(interactions)}
    )
    if k > 1:
        before = len(interactions)
        interactions = kcore(interactions, k)
        report.append(
            {
                "step": f"{k}-core (iterated to a fixed point)",
                **_counts(interactions),
                "dropped": before - len(interactions),
            }
        )
    used = pd.Index(interactions.item_id.astype(str).unique())
    items = items.assign(item_id=items.item_id.astype(str)).drop_duplicates("item_id")
    without_text = int((~used.isin(items.item_id)).sum())
    items = items[items.item_id.isin(used)]
    report.append({"step": "item text", "items_with_text": len(items), "items_without_text_kept_empty": without_text})
    return interactions, items, report


def gini(counts: np.ndarray) -> float:
    """Gini coefficient of item popularity (0: all items equally popular, → 1: a few items take everything)."""
    values = np.sort(np.asarray(counts, dtype=float))
    n = len(values)
    if n == 0 or values.sum() == 0:
        return 0.0
    return float(2 * np.sum(np.arange(1, n + 1) * values) / (n * values.sum()) - (n + 1) / n)


def dataset_stats(tables: Tables) -> dict[str, Any]:
    """Users, items, interactions, sequence-length quantiles, density and item-popularity Gini."""
    inter = tables.interactions
    lengths = inter.groupby("user_id", sort=False).size().to_numpy()
    users, items = len(lengths), int(inter.item_id.nunique())
    quantiles = np.quantile(lengths, [0.0, 0.25, 0.5, 0.75, 0.9, 1.0])
    return {
        "users": users,
        "items": items,
        "interactions": len(inter),
        "density": len(inter) / (users * items) if users and items else 0.0,
        "seq_len_mean": float(lengths.mean()),
        "seq_len_quantiles": dict(zip(["min", "p25", "p50", "p75", "p90", "max"], map(float, quantiles))),
        "item_popularity_gini": gini(inter.item_id.value_counts().to_numpy()),
        "items_with_title": int((tables.items.title != "").sum()),
        "items_with_brand": int((tables.items.brand != "").sum()),
    }


def write_dataset(
    out: str | Path,
    name: str,
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    info: dict[str, Any],
    force: bool = False,
) -> Tables:
    """Canonicalise and write a dataset directory atomically; returns its tables."""
    out = Path(out)
    if out.exists() and not force:
        raise ScalerecError(f"{out}: already exists (use --force to replace it)")
    tables = make_tables(name, interactions, items)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        parquet_io.write_parquet(tables.interactions, tmp / "interactions.parquet")
        parquet_io.write_parquet(tables.items, tmp / "items.parquet")
        meta = {"name": name, "fingerprint": tables.fingerprint, **info, "stats": dataset_stats(tables)}
        (tmp / DATASET_JSON).write_text(jsonio.dumps(meta, indent=2, default=str))
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return tables


def dataset_info(directory: str | Path) -> dict[str, Any]:
    """dataset.json of a prepared directory (cheap: no table is read)."""
    path = Path(directory) / DATASET_JSON
    if not path.is_file():
        raise ScalerecError(f"{directory}: not a prepared dataset (no {DATASET_JSON}; run `scalerec data prepare`)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ScalerecError(f"{path}: corrupt ({exc})") from None


def read_dataset(directory: str | Path) -> Tables:
    """The tables of a prepared directory, checked against the fingerprint recorded when it was written."""
    info = dataset_info(directory)
    directory = Path(directory)
    try:
        interactions = parquet_io.read_parquet(directory / "interactions.parquet")
        items = parquet_io.read_parquet(directory / "items.parquet")
    except (OSError, ValueError) as exc:
        raise ScalerecError(f"{directory}: unreadable dataset tables ({exc})") from None
    tables = make_tables(info["name"], interactions, items)
    if tables.fingerprint != info["fingerprint"]:
        raise ScalerecError(
            f"{directory}: tables changed since they were prepared (fingerprint "
            f"{tables.fingerprint} != {info['fingerprint']}); prepare it again"
        )
    return tables
