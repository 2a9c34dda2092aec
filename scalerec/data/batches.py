"""Training windows over the users' training sequences, and the popularity negative sampler.

A window is a slice [start, end] of one user's training sequence (at most max_len + 1 items), stored as two
offsets into one flat array, so a dataset of millions of interactions costs two integers per window, and a batch
is cut out with one vectorised gather.
- targets="last": one window per prefix, predicting only its last item (RecBole's augmentation, the paper's).
- targets="all": the sequence cut from its end into windows overlapping by one item, every position a target.
Both give the same number of targets per epoch (every training item but each user's first), so T is comparable.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from .split import Split


class TrainingWindows:
    def __init__(self, split: Split, max_len: int, targets: str) -> None:
        self.max_len, self.targets = max_len, targets
        lengths = np.array([len(s) for s in split.train])
        self.flat = torch.from_numpy(np.concatenate(split.train))
        user_start = np.r_[0, np.cumsum(lengths)[:-1]]
        starts, ends = [], []
        for first, n in zip(user_start, lengths):
            if targets == "last":
                end = np.arange(first + 1, first + n)
                starts.append(np.maximum(first, end - max_len))
                ends.append(end)
            else:
                end = np.arange(first + n - 1, first, -max_len)[::-1]
                starts.append(np.maximum(first, end - max_len))
                ends.append(end)
        self.starts = torch.from_numpy(np.concatenate(starts).astype(np.int64))
        self.ends = torch.from_numpy(np.concatenate(ends).astype(np.int64))
        per_window = torch.ones_like(self.ends) if targets == "last" else self.ends - self.starts
        self.n_targets = per_window  # targets each window contributes to T
        self.targets_per_epoch = int(per_window.sum())

    def __len__(self) -> int:
        return len(self.starts)

    def batches_per_epoch(self, batch_size: int) -> int:
        return -(-len(self) // batch_size)

    def epoch(self, batch_size: int, generator: torch.Generator) -> Iterator[tuple[torch.Tensor, int]]:
        """Shuffled batches of right-padded windows (B, max_len + 1) and the number of targets in each."""
        order = torch.randperm(len(self), generator=generator)
        offsets = torch.arange(self.max_len + 1)
        for chunk in order.split(batch_size):
            start, end = self.starts[chunk], self.ends[chunk]
            index = start[:, None] + offsets
            inside = index <= end[:, None]
            seq = torch.where(inside, self.flat[torch.minimum(index, end[:, None])], 0)
            yield seq, int(self.n_targets[chunk].sum())


class PopularitySampler:
    """Negatives drawn with replacement from q(i) ∝ training count of i; log q feeds the logQ correction."""

    def __init__(self, train_counts: np.ndarray) -> None:
        counts = torch.as_tensor(train_counts, dtype=torch.float64)
        counts[0] = 0.0  # never sample padding
        self.q = (counts / counts.sum()).float()
        # log q of an item never seen in training is -inf; it is never sampled, but a positive may be one.
        self.log_q = torch.log(self.q.clamp(min=1e-12))

    def sample(self, batch: int, n: int, generator: torch.Generator) -> torch.Tensor:
        """(batch, n) item ids; n = 0 (full cross-entropy) gives an empty tensor."""
        if n == 0:
            return torch.zeros(batch, 0, dtype=torch.long)
        return torch.multinomial(self.q, batch * n, replacement=True, generator=generator).view(batch, n)
