"""RecBole atomic files: `<name>.inter` and `<name>.item`, tab-separated with typed headers (`user_id:token`)."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

from ..errors import ScalerecError


def _read_atomic(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE, encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise ScalerecError(f"{path}: empty") from None
    except UnicodeDecodeError as exc:
        raise ScalerecError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except pd.errors.ParserError as exc:
        raise ScalerecError(f"{path}: not a tab-separated atomic file ({exc})") from None
    # Headers are `name:type`; the type (token, float, token_seq, ...) is not needed for canonical tables.
    frame.columns = [c.split(":", 1)[0] for c in frame.columns]
    return frame


def find_atomic(source: Path) -> tuple[Path, Path | None]:
    """The .inter file (and the .item beside it, if any) named by a file or by a dataset directory."""
    inter = source if source.suffix == ".inter" else source / f"{source.name}.inter"
    if source.is_dir() and not inter.exists():
        candidates = sorted(source.glob("*.inter"))
        if len(candidates) != 1:
            raise ScalerecError(f"{source}: expected one .inter file, found {len(candidates)}")
        inter = candidates[0]
    if not inter.is_file():
        raise ScalerecError(f"{inter}: no such file")
    item = inter.with_suffix(".item")
    return inter, item if item.is_file() else None


def read_recbole(source: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(interactions, items) from RecBole atomic files; without a timestamp the file order is the time."""
    inter_path, item_path = find_atomic(Path(source))
    inter = _read_atomic(inter_path)
    for column in ("user_id", "item_id"):
        if column not in inter.columns:
            raise ScalerecError(f"{inter_path}: no {column} column (header: {', '.join(inter.columns)})")
    if "timestamp" in inter.columns:
        stamps = pd.to_numeric(inter.timestamp, errors="coerce")
        if stamps.isna().any():
            line = int(stamps.isna().to_numpy().argmax()) + 2  # + header, 1-based
            raise ScalerecError(f"{inter_path.name}:{line}: non-numeric timestamp {inter.timestamp.iloc[line - 2]!r}")
        inter["timestamp"] = stamps.round().astype("int64")
    else:
        inter["timestamp"] = range(len(inter))
    items = pd.DataFrame({"item_id": pd.unique(inter.item_id), "title": "", "brand": ""})
    if item_path is not None:
        raw = _read_atomic(item_path)
        if "item_id" not in raw.columns:
            raise ScalerecError(f"{item_path}: no item_id column")
        title = next((c for c in ("title", "item_title", "name") if c in raw.columns), None)
        items = pd.DataFrame(
            {
                "item_id": raw.item_id,
                "title": raw[title] if title else "",
                "brand": raw["brand"] if "brand" in raw.columns else "",
            }
        )
    return inter[["user_id", "item_id", "timestamp"]], items
