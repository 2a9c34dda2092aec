"""Laws per evaluation slice (the hard cases of data/slices.py): how fast each improves with N and with C.

A slice's metric column is `<metric>__<slice>` (e.g. `valid_ndcg_at_5__cold_le3`) and its user count
`<split>_users__<slice>`. A metric over a few hundred users is noise, so checkpoints whose slice holds fewer than
`min_users` users are left out of its fits, and said so with the counts.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..errors import ScalerecError

if TYPE_CHECKING:  # the CLI reads MIN_SLICE_USERS for its --help: no pandas import for that
    import pandas as pd

MIN_SLICE_USERS = 500
_SLICE_METRIC = re.compile(r"^(valid|test)_(?:ndcg|hit|mrr)_at_\d+__(.+)$")


def users_column(metric: str) -> str | None:
    """The user-count column of a slice metric (`valid_users__cold_le3`); None for any other metric."""
    match = _SLICE_METRIC.match(metric)
    if not match or match.group(2) in ("full", "full_masked") or match.group(2).startswith("sampled_"):
        return None
    return f"{match.group(1)}_users__{match.group(2)}"


def slice_metrics(checkpoints: pd.DataFrame, metric: str) -> list[str]:
    """The slice twins of `metric` present in the store (with their user counts), in column order."""
    return [c for c in checkpoints.columns if c.startswith(metric + "__") and users_column(c) in checkpoints.columns]


def keep_large_slices(checkpoints: pd.DataFrame, metric: str, min_users: int) -> tuple[pd.DataFrame, dict | None]:
    """For a slice metric: the checkpoints whose slice holds at least `min_users` users, and what was left out
    (None for a metric that is not a slice's). Raises when no run is left to fit."""
    column = users_column(metric)
    if column is None:
        return checkpoints, None
    if column not in checkpoints.columns:
        raise ScalerecError(f"the run store has {metric!r} but not its user count {column!r}")
    users = checkpoints[column]
    # no count: a checkpoint that did not rank this split (test_* before the final one), whose metric is NaN too
    large = ((users >= min_users) | users.isna()).to_numpy()
    info = {
        "users_column": column,
        "min_users": int(min_users),
        "users_range": [int(users.min()), int(users.max())] if users.notna().any() else [0, 0],
        "left_out_checkpoints": int((~large).sum()),
        "left_out_runs": int(checkpoints.run_id[~large].nunique()),
    }
    if checkpoints.run_id[(users >= min_users).to_numpy()].nunique() < 2:
        raise ScalerecError(
            f"{metric}: its slice holds {info['users_range'][0]}–{info['users_range'][1]} users; "
            f"fewer than 2 runs have at least {min_users} (lower --min-slice-users to fit it anyway)"
        )
    return checkpoints[large].reset_index(drop=True), info
