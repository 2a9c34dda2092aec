"""Nested user-sampled subsets to target interaction counts (the SRT paper's 80K → 8.2M ladder).

Users are put in one random order (fixed seed); the subset for a target is the shortest prefix of that order with at
least that many interactions. Every smaller subset is therefore inside every larger one, and whole user sequences are
kept, so sequence lengths and popularity keep their distribution.
"""

from __future__ import annotations

from pathlib import Path

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


ALL = "all"  # a target that is the whole dataset, written as OUT/all/: the top rung of a ladder


def parse_targets(text: str) -> list[int | str]:
    """`80K,400K,800K` -> [80000, 400000, 800000]: whole interaction counts >= 1, each once; `all` (the whole
    dataset) may be one of them."""
    from ..numbers import parse_number

    parts = [t.strip() for t in str(text).split(",") if t.strip()]
    whole = [ALL] if ALL in parts else []
    values = [parse_number(t, name="--interactions") for t in parts if t != ALL]
    if not values and not whole:
        raise ScalerecError("--interactions needs at least one target")
    if parts.count(ALL) > 1:
        raise ScalerecError("--interactions lists all more than once")
    bad = [v for v in values if v < 1 or v != int(v)]
    if bad:
        raise ScalerecError(f"--interactions: {bad[0]:g} is not a whole number of interactions >= 1")
    targets = [int(v) for v in values]
    repeated = sorted({t for t in targets if targets.count(t) > 1})
    if repeated:
        raise ScalerecError(f"--interactions lists {repeated[0]} more than once")
    return targets + whole


def write_ladder(
    directory: str | Path, targets: list[int | str], out: str | Path, seed: int = 0, force: bool = False
) -> list[Path]:
    """Write OUT/<target>/ for each target: the nested subsets of the prepared dataset `directory` (OUT/all/:
    the whole of it, so that a ladder's directory holds every rung a grid trains on).

    Every check comes first (the dataset reads, every target fits in it, no output exists unless `force`), so a
    bad target leaves nothing half-written; each subset is then written atomically."""
    from .prepare import read_dataset, write_dataset

    tables = read_dataset(directory)
    total = len(tables.interactions)
    names = {total if target == ALL else target: str(target) for target in targets}  # interactions -> folder
    if len(names) < len(targets):
        raise ScalerecError(f"--interactions lists the whole dataset ({total} interactions) twice: once as all")
    paths = {count: Path(out) / name for count, name in names.items()}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not force:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise ScalerecError(f"{existing[0]}: already exists{more} (use --force to replace)")
    subsets = nested_subsets(tables, list(names), seed)  # raises on a target above the dataset's size
    for count, interactions, items in subsets:
        write_dataset(
            paths[count],
            f"{tables.name}@{names[count]}",
            interactions,
            items,
            {"parent": str(directory), "parent_fingerprint": tables.fingerprint, "target": count, "seed": seed},
            force,
        )
    return [paths[count] for count, _, _ in subsets]
