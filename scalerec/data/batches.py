"""Training windows over the users' training sequences, their batches, and the popularity negative sampler.

A window is a slice of one user's training sequence (at most max_len + 1 items) and the positions in it that are
targets: three flat offsets (start, first target, end) into one array of all training items, so a dataset of
millions of interactions costs three integers per window and a batch is cut out with one vectorised gather.
- targets="all": the sequence cut from its end into windows overlapping by one item, every position a target.
- targets="last", prefix_batches="padded": one window per prefix, its last item the only target (RecBole's
  augmentation, the paper's: every prefix is a sample).
- targets="last", prefix_batches="one-pass": the same prefix samples, computed in one causal pass per sequence:
  under a causal mask with positions counted from the window's start, the state at position t of a window equals
  the state of the prefix ending there run alone. One window holds the first max_len + 1 items with every position
  a target; a prefix longer than that keeps a window of its own (its last max_len items, one target).
All give the same targets per epoch (every training item but each user's first), so T is comparable.

Batches are trimmed to their longest window (right padding under a causal mask changes no real position, so the
loss is that of the padded batch). `batch_targets=True` cuts the shuffled windows into batches of exactly
`batch_size` targets, splitting a window across two batches where needed: the reference's number of optimizer
updates per epoch for its prefix samples. `length_pool` > 0 sorts pools of that many batches' windows by length
before cutting (bucketing), so little of a batch is padding; the batches are then shuffled.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from .split import Split


@dataclass(frozen=True)
class Batch:
    """seq (B, W) right-padded items; targets (B, W - 1): the id each position must predict, 0 where it is no
    target; n_targets = (targets != 0).sum(); times (B, W): the items' timestamps (0 on padding) where the split
    has them."""

    seq: torch.Tensor
    targets: torch.Tensor
    n_targets: int
    times: torch.Tensor | None = None

    def step_inputs(self, negatives: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The training step's arguments (TrainingStep.forward): seq, targets, negatives, and times where kept."""
        inputs = (self.seq, self.targets, negatives)
        return inputs if self.times is None else (*inputs, self.times)


class TrainingWindows:
    def __init__(self, split: Split, max_len: int, targets: str, prefix_batches: str = "padded") -> None:
        self.max_len, self.targets = max_len, targets
        lengths = np.array([len(s) for s in split.train])
        self.flat = torch.from_numpy(np.concatenate(split.train))
        self.flat_times = None if split.train_times is None else torch.from_numpy(np.concatenate(split.train_times))
        user_start = np.r_[0, np.cumsum(lengths)[:-1]]
        starts, firsts, ends = [], [], []
        for first, n in zip(user_start, lengths):
            if n < 2:
                continue
            if targets == "all":
                end = np.arange(first + n - 1, first, -max_len)[::-1]
                start = np.maximum(first, end - max_len)
                target_from = start + 1
            elif prefix_batches == "padded":
                end = np.arange(first + 1, first + n)
                start = np.maximum(first, end - max_len)
                target_from = end
            else:  # one-pass: the head window with every target, then one window per longer prefix
                head_end = min(first + n - 1, first + max_len)
                end = np.r_[head_end, np.arange(head_end + 1, first + n)]
                start = np.maximum(first, end - max_len)
                target_from = np.r_[first + 1, end[1:]]
            starts.append(start), firsts.append(target_from), ends.append(end)
        self.starts = torch.from_numpy(np.concatenate(starts).astype(np.int64))
        self.target_from = torch.from_numpy(np.concatenate(firsts).astype(np.int64))
        self.ends = torch.from_numpy(np.concatenate(ends).astype(np.int64))
        self.n_targets = self.ends - self.target_from + 1  # targets each window contributes to T
        self.targets_per_epoch = int(self.n_targets.sum())

    def __len__(self) -> int:
        return len(self.starts)

    def batches_per_epoch(self, batch_size: int, batch_targets: bool = False) -> int:
        return -(-(self.targets_per_epoch if batch_targets else len(self)) // batch_size)

    def epoch(
        self, batch_size: int, generator: torch.Generator, batch_targets: bool = False, length_pool: int = 0
    ) -> Iterator[Batch]:
        """One epoch of shuffled batches (see the module docstring)."""
        order = torch.randperm(len(self), generator=generator)
        if length_pool:
            order = self._sorted_in_pools(order, batch_size, batch_targets, length_pool)
        if batch_targets:
            pieces = self._pieces_by_targets(order, batch_size)
        else:
            pieces = [(self.starts[c], self.target_from[c], self.ends[c]) for c in order.split(batch_size)]
        if length_pool:  # sorted pools make batches of similar windows: shuffle their order back
            pieces = [pieces[i] for i in torch.randperm(len(pieces), generator=generator)]
        for start, target_from, end in pieces:
            yield self._gather(start, target_from, end)

    def _sorted_in_pools(self, order: torch.Tensor, batch_size: int, batch_targets: bool, pool: int) -> torch.Tensor:
        per_batch = batch_size if not batch_targets else max(1, round(batch_size * len(self) / self.targets_per_epoch))
        length = (self.ends - self.starts)[order]
        pools = []
        for chunk, chunk_len in zip(order.split(pool * per_batch), length.split(pool * per_batch)):
            pools.append(chunk[torch.argsort(chunk_len, stable=True)])
        return torch.cat(pools)

    def _pieces_by_targets(self, order: torch.Tensor, batch_size: int) -> list[tuple[torch.Tensor, ...]]:
        """Cut the windows in `order` into batches of exactly `batch_size` targets (the last may have fewer); a
        window that straddles a boundary is split: its first targets end one batch, the rest begin the next."""
        start, first, end = self.starts[order], self.target_from[order], self.ends[order]
        cum = torch.cumsum(end - first + 1, 0)
        cum_before = cum - (end - first + 1)
        pieces = []
        for b in range(-(-int(cum[-1]) // batch_size)):
            low, high = b * batch_size, (b + 1) * batch_size  # targets [low, high) of the epoch
            rows = torch.nonzero((cum > low) & (cum_before < high)).squeeze(1)
            skip = (low - cum_before[rows]).clamp(min=0)  # targets of the window in earlier batches
            keep_until = (high - cum_before[rows]).clamp(max=cum[rows] - cum_before[rows])
            piece_first = first[rows] + skip
            piece_end = first[rows] + keep_until - 1
            pieces.append((start[rows], piece_first, piece_end))
        return pieces

    def _gather(self, start: torch.Tensor, target_from: torch.Tensor, end: torch.Tensor) -> Batch:
        width = int((end - start).max()) + 1
        index = start[:, None] + torch.arange(width)
        inside = index <= end[:, None]
        at = torch.minimum(index, end[:, None])
        seq = torch.where(inside, self.flat[at], 0)
        is_target = (index[:, 1:] >= target_from[:, None]) & inside[:, 1:]
        targets = torch.where(is_target, seq[:, 1:], 0)
        times = None if self.flat_times is None else torch.where(inside, self.flat_times[at], 0)
        return Batch(seq, targets, int(is_target.sum()), times)


class PopularitySampler:
    """Negatives drawn with replacement from q(i) ∝ training count of i + smoothing; log q feeds the logQ
    correction. The reference code samples from count + 1 (every item can be drawn)."""

    def __init__(self, train_counts: np.ndarray, smoothing: float = 0.0) -> None:
        counts = torch.as_tensor(train_counts, dtype=torch.float64) + smoothing
        counts[0] = 0.0  # never sample padding
        self.q = (counts / counts.sum()).float()
        # log q of an item never seen in training is -inf without smoothing; it is never sampled, but a positive
        # may be one.
        self.log_q = torch.log(self.q.clamp(min=1e-12))
        self.accept, self.alias = _alias_tables((counts / counts.sum()).numpy())

    def for_batch(self, batch: Batch, n: int, per_target: bool, generator: torch.Generator) -> torch.Tensor:
        """A batch's negatives: (M, n), one set per target, or (B, n), one per window (train.negatives_per_target)."""
        return self.sample(batch.n_targets if per_target else len(batch.seq), n, generator)

    def sample(self, rows: int, n: int, generator: torch.Generator) -> torch.Tensor:
        """(rows, n) item ids; n = 0 (full cross-entropy) gives an empty tensor."""
        if n == 0:
            return torch.zeros(rows, 0, dtype=torch.long)
        # Walker's alias method: a uniform slot, kept with its acceptance probability or replaced by its alias;
        # exactly q, in O(1) per draw (torch.multinomial took 16% of an SRT-1K step for 128,000 draws)
        slot = torch.randint(len(self.alias), (rows * n,), generator=generator)
        keep = torch.rand(rows * n, generator=generator, dtype=torch.float64) < self.accept[slot]
        return torch.where(keep, slot, self.alias[slot]).view(rows, n)


def _alias_tables(q: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Vose's alias tables of the distribution q: slot i is kept with probability accept[i], else alias[i] is drawn,
    so that item j is drawn with probability (accept[j] + Σ_{i: alias[i] = j} (1 − accept[i])) / len(q) = q[j]."""
    n = len(q)
    scaled = q.astype(np.float64) * n
    accept, alias = np.ones(n), np.arange(n)
    small, large = [i for i in range(n) if scaled[i] < 1.0], [i for i in range(n) if scaled[i] >= 1.0]
    while small and large:
        s, big = small.pop(), large.pop()
        accept[s], alias[s] = scaled[s], big
        scaled[big] -= 1.0 - scaled[s]
        (small if scaled[big] < 1.0 else large).append(big)
    # what is left is 1 up to rounding; an item of probability 0 (padding) must never be kept even then
    never = (q == 0) & (alias == np.arange(n))
    accept[never], alias[never] = 0.0, int(np.argmax(q))
    return torch.from_numpy(accept), torch.from_numpy(alias)
