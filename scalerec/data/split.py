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
    # with_times only: the timestamps of `train`, `valid` and `test`, in the same layout
    train_times: list[np.ndarray] | None = None
    valid_times: np.ndarray | None = None
    test_times: np.ndarray | None = None

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


def leave_one_out(tables: Tables, with_times: bool = False) -> Split:
    """Split the canonical tables; items are indexed in the items table's order. `with_times`: keep the
    timestamps too (an error if they are only each user's order 0, 1, 2, …: no time to learn from)."""
    item_ids = tables.items.item_id.to_numpy()
    index = {item: i + 1 for i, item in enumerate(item_ids)}
    inter = tables.interactions  # sorted by user, then time (make_tables)
    codes = inter.item_id.map(index).to_numpy(dtype=np.int64)
    bounds = np.flatnonzero(np.r_[True, inter.user_id.to_numpy()[1:] != inter.user_id.to_numpy()[:-1], True])
    keep = [(start, end) for start, end in zip(bounds[:-1], bounds[1:]) if end - start >= 3]
    if not keep:
        raise ScalerecError(f"{tables.name}: no user has the 3 interactions leave-one-out needs")

    def split_up(values: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
        return (
            [values[start : end - 2] for start, end in keep],
            np.array([values[end - 2] for _, end in keep]),
            np.array([values[end - 1] for _, end in keep]),
        )

    times = None
    if with_times:
        stamps = inter.timestamp.to_numpy(dtype=np.int64)
        if np.array_equal(stamps, inter.groupby("user_id", sort=False).cumcount().to_numpy()):
            raise ScalerecError(
                f"{tables.name}: its timestamps are only each user's order (0, 1, 2, …), no times: "
                "model.hstu_time_bias needs data with real timestamps"
            )
        times = split_up(stamps)
    dropped = len(bounds) - 1 - len(keep)
    return Split(item_ids, *split_up(codes), dropped, *(times or (None, None, None)))
