"""Nested user-sampled subsets to target interaction counts (the SRT paper's 80K → 8.2M ladder).

Users are put in one random order (fixed seed); the subset for a target is the shortest prefix of that order with at
least that many interactions. Every smaller subset is therefore inside every larger one, and whole user sequences are
kept, so sequence lengths and popularity keep their distribution.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import ScalerecError
from .tables import Tables


def user_order(tables: Tables, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(users in a seeded random order, cumulative interactions along that order)."""
    sizes = tables.interactions.groupby("user_id", sort=True).size()
    order = np.random.default_rng(seed).permutation(len(sizes))
    return sizes.index.to_numpy()[order], np.cumsum(sizes.to_numpy()[order])


def nested_subsets(tables: Tables, targets: list[int], seed: int = 0) -> list[tuple[int, pd.DataFrame, pd.DataFrame]]:
    """For each target: (target, interactions, items) of the nested subset reaching it."""
    users, cumulative = user_order(tables, seed)
    total = int(cumulative[-1])
    out = []
    for target in sorted(targets):
        if target > total:
            raise ScalerecError(f"target {target} interactions exceeds the dataset's {total}")
        keep = users[: int(np.searchsorted(cumulative, target)) + 1]
        interactions = tables.interactions[tables.interactions.user_id.isin(keep)]
        items = tables.items[tables.items.item_id.isin(interactions.item_id.unique())]
        out.append((target, interactions, items))
    return out
