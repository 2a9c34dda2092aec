"""Raw Amazon review data into canonical tables (DESIGN §9).

2014 (McAuley et al.): reviews_<Category>[_5].json[.gz] — one JSON object per line;
                       meta_<Category>.json[.gz] — one Python dict literal per line (parsed with ast.literal_eval,
                       never eval).
2018 (Ni et al.):      <Category>[_5].json[.gz] and meta_<Category>.json[.gz] — strict JSON lines; titles may carry
                       HTML and entities, and an item's meta line may repeat (the first one is kept).
"""

from __future__ import annotations

import ast
import html
import json
import re
from array import array
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .lines import BadLine, LineErrors, parsed_lines

_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


def clean_text(value: Any) -> str:
    """Text of a title or brand: HTML tags dropped, entities decoded, white space folded; non-strings give ''."""
    if not isinstance(value, str):
        return ""
    return _SPACE.sub(" ", html.unescape(_TAG.sub(" ", value))).strip()


def _review_parser(line: str) -> tuple[str, str, int]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadLine(f"not JSON: {exc.msg}") from None
    if not isinstance(record, dict):
        raise BadLine("not JSON: not an object")
    for key in ("reviewerID", "asin", "unixReviewTime"):
        if key not in record:
            raise BadLine(f"missing field: {key!r}")
    stamp = record["unixReviewTime"]
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float, str)):
        raise BadLine(f"non-numeric timestamp: {stamp!r}")
    try:
        stamp = int(float(stamp))
    except ValueError:
        raise BadLine(f"non-numeric timestamp: {stamp!r}") from None
    return str(record["reviewerID"]), str(record["asin"]), stamp


def read_reviews(path: str | Path, errors: LineErrors, progress: bool = True) -> pd.DataFrame:
    """Reviews (either year) into user_id, item_id, timestamp with bounded memory.

    Ids are interned to integer codes as they stream in (a few bytes per line instead of Python strings), so a
    10-million-line file needs well under a gigabyte.
    """
    users: dict[str, int] = {}
    items: dict[str, int] = {}
    user_codes, item_codes, stamps = array("i"), array("i"), array("q")
    for user, item, stamp in parsed_lines(path, _review_parser, errors, progress):
        user_codes.append(users.setdefault(user, len(users)))
        item_codes.append(items.setdefault(item, len(items)))
        stamps.append(stamp)
    user_names = np.array(list(users), dtype=object)
    item_names = np.array(list(items), dtype=object)
    return pd.DataFrame(
        {
            "user_id": pd.Categorical.from_codes(np.frombuffer(user_codes, dtype=np.int32), categories=user_names),
            "item_id": pd.Categorical.from_codes(np.frombuffer(item_codes, dtype=np.int32), categories=item_names),
            "timestamp": np.frombuffer(stamps, dtype=np.int64),
        }
    )


def _meta_parser(strict_json: bool):
    def parse(line: str) -> tuple[str, str, str]:
        try:
            record = json.loads(line) if strict_json else ast.literal_eval(line)
        except (json.JSONDecodeError, ValueError, SyntaxError, MemoryError, RecursionError) as exc:
            raise BadLine(f"not {'JSON' if strict_json else 'a Python literal'}: {type(exc).__name__}") from None
        if not isinstance(record, dict):
            raise BadLine("not a record: expected an object")
        if "asin" not in record:
            raise BadLine("missing field: 'asin'")
        return str(record["asin"]), clean_text(record.get("title")), clean_text(record.get("brand"))

    return parse


def read_meta(
    path: str | Path, year: int, errors: LineErrors, wanted: set[str] | None = None, progress: bool = True
) -> pd.DataFrame:
    """Item text (item_id, title, brand) of the items in `wanted` (all when None); the first line of an item wins."""
    seen: dict[str, tuple[str, str]] = {}
    for asin, title, brand in parsed_lines(path, _meta_parser(year == 2018), errors, progress):
        if (wanted is None or asin in wanted) and asin not in seen:
            seen[asin] = (title, brand)
    return pd.DataFrame(
        {"item_id": list(seen), "title": [v[0] for v in seen.values()], "brand": [v[1] for v in seen.values()]}
    )
