"""Leave-one-out split (DESIGN §5): per user, last item = test, second to last = validation, the rest = training."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ScalerecError
from .tables import Tables


@dataclass(frozen=True)
class Split:
    """Item indexes are 1..n_items (0 is padding); one entry per user kept (>= 3 interactions)."""

    item_ids: np.ndarray  # original item id of index i at position i - 1
    train: list[np.ndarray]  # training sequence per user, in time order
    valid: np.ndarray  # validation target per user
    test: np.ndarray  # test target per user
    dropped_users: int  # users with fewer than 3 interactions

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_users(self) -> int:
        return len(self.train)

    @property
    def n_train_interactions(self) -> int:
        """D: the training interactions of this dataset."""
        return int(sum(len(s) for s in self.train))

    def train_counts(self) -> np.ndarray:
        """Occurrences of each item index in the training sequences (index 0 stays 0)."""
        return np.bincount(np.concatenate(self.train), minlength=self.n_items + 1)


def leave_one_out(tables: Tables) -> Split:
    """Split the canonical tables; items are indexed in the items table's order."""
    item_ids = tables.items.item_id.to_numpy()
    index = {item: i + 1 for i, item in enumerate(item_ids)}
    inter = tables.interactions  # sorted by user, then time (make_tables)
    codes = inter.item_id.map(index).to_numpy(dtype=np.int64)
    bounds = np.flatnonzero(np.r_[True, inter.user_id.to_numpy()[1:] != inter.user_id.to_numpy()[:-1], True])
    train, valid, test, dropped = [], [], [], 0
    for start, end in zip(bounds[:-1], bounds[1:]):
        if end - start < 3:
            dropped += 1
            continue
        train.append(codes[start : end - 2])
        valid.append(codes[end - 2])
        test.append(codes[end - 1])
    if not train:
        raise ScalerecError(f"{tables.name}: no user has the 3 interactions leave-one-out needs")
    return Split(item_ids, train, np.array(valid), np.array(test), dropped)
