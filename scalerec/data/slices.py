"""The hard slices of leave-one-out evaluation (the LSRM paper's): which users each holds, and what each feeds in.

Subsets of the evaluated users, ranked in the plain pass:
- `cold_le3`, `cold_le5`: users with at most 3 / 5 training interactions (cold-start users);
- `history_6_10`, `history_11_20`, `history_21_plus`: the other users by training-history length (with `cold_le5`
  a partition of all users);
- `tail_items`, `head_items`: users whose positive is among the least popular 80% / the most popular 20% of items
  by training count (ties broken by item id).
Perturbed inputs, one more forward pass each, with the same positives and candidates as the plain pass:
- `noise_10pct`, `noise_30pct`: every input item replaced, with that probability, by an item drawn uniformly from
  the catalog (seeded by eval_seed: the same noisy histories in every run of a grid); every user is in the slice,
  and the drop from the plain metric measures robustness;
- `ahead_1`, `ahead_3`: the last 1 / 3 input items removed, so the positive lies 2 / 4 steps ahead (long-range
  preference); users whose input is not longer than that are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COLD_START = (3, 5)
HISTORY_BUCKETS = ((6, 10), (11, 20), (21, None))
TAIL_SHARE = 0.8
NOISE_RATES = (0.1, 0.3)
AHEAD = (1, 3)


@dataclass(frozen=True)
class Slice:
    """A named set of evaluated users (row indexes) and, for a perturbed slice, the input history of each."""

    name: str
    users: np.ndarray
    inputs: list[np.ndarray] | None = None  # None: the plain pass's inputs


def slice_names() -> list[str]:
    """Every slice's name, in the order `evaluation_slices` returns them."""
    buckets = [f"history_{lo}_{hi if hi else 'plus'}" for lo, hi in HISTORY_BUCKETS]
    return (
        [f"cold_le{k}" for k in COLD_START]
        + buckets
        + ["tail_items", "head_items"]
        + [f"noise_{round(100 * rate)}pct" for rate in NOISE_RATES]
        + [f"ahead_{m}" for m in AHEAD]
    )


def evaluation_slices(
    train: list[np.ndarray], inputs: list[np.ndarray], positives: np.ndarray, n_items: int, seed: int
) -> list[Slice]:
    """The slices of one evaluation (validation or test): `train` the users' training sequences (which define
    history length and item popularity), `inputs` what the model reads for each user, `positives` the items
    ranked (1-based ids). `seed` draws the noise; a different `inputs` should come with a different seed."""
    lengths = np.array([len(s) for s in train])
    users = np.arange(len(train))
    slices = [Slice(f"cold_le{k}", users[lengths <= k]) for k in COLD_START]
    for lo, hi in HISTORY_BUCKETS:
        inside = (lengths >= lo) & (lengths <= hi if hi else True)
        slices.append(Slice(f"history_{lo}_{hi if hi else 'plus'}", users[inside]))
    is_tail = tail_items(train, n_items)
    slices += [Slice("tail_items", users[is_tail[positives - 1]]), Slice("head_items", users[~is_tail[positives - 1]])]
    for rate in NOISE_RATES:
        rng = np.random.default_rng([seed, round(1000 * rate)])
        noisy = []
        for history in inputs:
            replace = rng.random(len(history)) < rate
            noisy.append(np.where(replace, rng.integers(1, n_items + 1, len(history)), history))
        slices.append(Slice(f"noise_{round(100 * rate)}pct", users, noisy))
    for m in AHEAD:
        kept = users[np.array([len(h) > m for h in inputs], dtype=bool)]
        slices.append(Slice(f"ahead_{m}", kept, [inputs[u][:-m] for u in kept]))
    return slices


def tail_items(train: list[np.ndarray], n_items: int) -> np.ndarray:
    """(n_items,) boolean, item id - 1: True for the least popular TAIL_SHARE of the catalog by training count
    (among equal counts, the larger id is the less popular)."""
    counts = np.bincount(np.concatenate(train), minlength=n_items + 1)[1:] if train else np.zeros(n_items, int)
    order = np.lexsort((np.arange(n_items), -counts))  # most popular first, then by id
    head = order[: n_items - round(TAIL_SHARE * n_items)]
    tail = np.ones(n_items, dtype=bool)
    tail[head] = False
    return tail
