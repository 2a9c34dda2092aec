"""Canonical tables every reader produces (DESIGN §9).

interactions: user_id (str), item_id (str), timestamp (int64; any order key works, e.g. a position in the sequence)
items:        item_id (str), title (str), brand (str; empty when unknown)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pandas as pd

from ..errors import ScalerecError

INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp")
ITEM_COLUMNS = ("item_id", "title", "brand")


@dataclass(frozen=True)
class Tables:
    """A dataset in canonical form plus its fingerprint (a hash of both tables)."""

    name: str
    interactions: pd.DataFrame
    items: pd.DataFrame
    fingerprint: str


def make_tables(name: str, interactions: pd.DataFrame, items: pd.DataFrame) -> Tables:
    """Check and normalise the two tables (types, order, text of unknown items) and fingerprint them."""
    for frame, columns, what in ((interactions, INTERACTION_COLUMNS, "interactions"), (items, ITEM_COLUMNS, "items")):
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise ScalerecError(f"{name}: {what} table lacks column(s) {', '.join(missing)}")
    if interactions.empty:
        raise ScalerecError(f"{name}: no interactions")
    interactions = interactions.loc[:, list(INTERACTION_COLUMNS)].astype(
        {"user_id": str, "item_id": str, "timestamp": "int64"}
    )
    # Stable sort keeps the file order of same-timestamp events.
    interactions = interactions.sort_values(["user_id", "timestamp"], kind="stable").reset_index(drop=True)
    items = items.loc[:, list(ITEM_COLUMNS)].astype(str).drop_duplicates("item_id").reset_index(drop=True)
    unknown = pd.Index(interactions.item_id.unique()).difference(items.item_id)
    if len(unknown):  # items without text keep an empty text rather than vanishing
        items = pd.concat([items, pd.DataFrame({"item_id": unknown, "title": "", "brand": ""})], ignore_index=True)
    digest = hashlib.sha256()
    for frame in (interactions, items):
        digest.update(pd.util.hash_pandas_object(frame, index=False).values.tobytes())
    return Tables(name, interactions, items, digest.hexdigest()[:16])
