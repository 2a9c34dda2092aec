"""Plain CSV / Parquet tables with a column mapping, and the shared Amazon Beauty 5-core (an order column in place
of timestamps)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .. import parquet_io
from ..errors import ScalerecError


@dataclass(frozen=True)
class ColumnMapping:
    user: str = "user_id"
    item: str = "item_id"
    time: str = "timestamp"  # any orderable number: a Unix time or a position in the user's sequence
    text: tuple[str, ...] = ("title", "brand")  # the title column, then the brand column


def read_frame(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if path.is_dir():
        raise ScalerecError(f"{path}: is a directory, expected a CSV, TSV or Parquet file")
    if not path.is_file():
        raise ScalerecError(f"{path}: no such file")
    try:
        if path.suffix == ".parquet":
            return parquet_io.read_parquet(path)
        sep = "\t" if path.suffix in (".tsv", ".tab") else ","
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8")
    except pd.errors.EmptyDataError:
        raise ScalerecError(f"{path}: empty") from None
    except UnicodeDecodeError as exc:
        raise ScalerecError(f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except (pd.errors.ParserError, ValueError, OSError) as exc:
        raise ScalerecError(f"{path}: cannot read table ({exc})") from None


def _need(frame: pd.DataFrame, columns: list[str], path: str | Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ScalerecError(f"{path}: no column {missing[0]!r} (columns: {', '.join(map(str, frame.columns))})")


def read_table(
    path: str | Path, mapping: ColumnMapping, items_path: str | Path | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(interactions, items) from a table; item text comes from `items_path` if given, else from the table itself."""
    frame = read_frame(path)
    _need(frame, [mapping.user, mapping.item, mapping.time], path)
    stamps = pd.to_numeric(frame[mapping.time], errors="coerce")
    if stamps.isna().any():
        row = int(stamps.isna().to_numpy().argmax())
        where = f"{Path(path).name}:{row + 2}" if Path(path).suffix != ".parquet" else f"{Path(path).name} row {row}"
        raise ScalerecError(f"{where}: non-numeric {mapping.time} {frame[mapping.time].iloc[row]!r}")
    interactions = pd.DataFrame(
        {
            "user_id": frame[mapping.user].astype(str),
            "item_id": frame[mapping.item].astype(str),
            "timestamp": stamps.round().astype("int64"),
        }
    )
    text_frame, text_path = (read_frame(items_path), items_path) if items_path else (frame, path)
    _need(text_frame, [mapping.item, *mapping.text], text_path)
    title = text_frame[mapping.text[0]] if mapping.text else ""
    brand = text_frame[mapping.text[1]] if len(mapping.text) > 1 else ""
    items = pd.DataFrame({"item_id": text_frame[mapping.item].astype(str), "title": title, "brand": brand})
    items[["title", "brand"]] = items[["title", "brand"]].fillna("").astype(str)
    return interactions, items.drop_duplicates("item_id")


BEAUTY_DIR_NAME = "amazon-beauty-5core"


def find_shared_beauty() -> Path | None:
    """The 5-core Beauty directory named by $SCALEREC_BEAUTY (the package looks nowhere outside itself)."""
    import os

    return Path(os.environ["SCALEREC_BEAUTY"]) if os.environ.get("SCALEREC_BEAUTY") else None


def read_shared_beauty(directory: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The shared Beauty files: interactions.parquet (user_id, item_id, order_idx) and items.parquet (title, brand).

    There are no timestamps, only each user's order: `order_idx` is the time (DESIGN §9 accepts any order key).
    """
    directory = Path(directory)
    return read_table(
        directory / "interactions.parquet", ColumnMapping(time="order_idx"), items_path=directory / "items.parquet"
    )
