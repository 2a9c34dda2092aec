"""Leave-one-out evaluation (DESIGN §5): each positive ranked against sampled negatives or the whole catalog.

The negatives of user u are the K items with the smallest keys hash(eval_seed, u, item), the positive excluded:
uniform without replacement, the same in every run of a grid, independent of batching, and never stored.
"""

from __future__ import annotations


import numpy as np
import torch

from ..config import TrainConfig
from ..data.split import Split

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return x ^ (x >> np.uint64(31))


def negative_mask(users: np.ndarray, positives: np.ndarray, n_items: int, n_negatives: int, seed: int) -> np.ndarray:
    """(B, n_items) boolean mask over items 1..n_items of each user's evaluation negatives."""
    mask = np.ones((len(users), n_items), dtype=bool)
    rows = np.arange(len(users))
    mask[rows, positives - 1] = False
    if n_negatives >= n_items - 1:
        return mask
    with np.errstate(over="ignore"):
        base = _splitmix64(np.uint64(seed) * np.uint64(0x100000001B3) + users.astype(np.uint64))
        keys = _splitmix64(base[:, None] ^ np.arange(1, n_items + 1, dtype=np.uint64)[None, :])
    keys[rows, positives - 1] = np.iinfo(np.uint64).max
    threshold = np.partition(keys, n_negatives - 1, axis=1)[:, n_negatives - 1:n_negatives]
    return keys <= threshold


class Evaluator:
    """Ranks the validation or test positive of every user; histories are built once per run."""

    def __init__(self, split: Split, max_len: int, train: TrainConfig, batch_size: int = 256) -> None:
        self.split, self.train, self.batch_size = split, train, batch_size
        self.n_negatives = split.n_items - 1 if train.eval_full_catalog else min(train.eval_negatives,
                                                                                 split.n_items - 1)
        self.inputs = {
            "valid": _right_padded([s[-max_len:] for s in split.train], max_len),
            "test": _right_padded([np.r_[s, v][-max_len:] for s, v in zip(split.train, split.valid)], max_len),
        }
        self.targets = {"valid": split.valid, "test": split.test}

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, which: str, device: torch.device) -> dict[str, float]:
        """Metrics `{which}_ndcg_at_k`, `_hit_at_k`, `_mrr_at_k` for every k, and `{which}_loss`."""
        was_training = model.training
        model.eval()
        catalog = model.item_encoder(torch.arange(1, self.split.n_items + 1, device=device))
        ranks, losses = [], []
        inputs, targets = self.inputs[which], self.targets[which]
        for start in range(0, len(targets), self.batch_size):
            rows = np.arange(start, min(start + self.batch_size, len(targets)))
            states = model.last_states(torch.from_numpy(inputs[rows]).to(device))
            scores = (states @ catalog.t()).float().cpu()
            pos = scores[torch.arange(len(rows)), torch.from_numpy(targets[rows] - 1)].unsqueeze(1)
            mask = torch.from_numpy(negative_mask(rows, targets[rows], self.split.n_items, self.n_negatives,
                                                  self.train.eval_seed))
            ranks.append(((scores >= pos) & mask).sum(1))  # ties count against the positive
            logits = torch.cat([pos, scores.masked_fill(~mask, float("-inf"))], 1) / self.train.temperature
            losses.append(torch.logsumexp(logits, 1) - logits[:, 0])
        model.train(was_training)
        return ranking_metrics(torch.cat(ranks).numpy(), self.train.eval_ks, which) | {
            f"{which}_loss": float(torch.cat(losses).mean())}


def ranking_metrics(ranks: np.ndarray, ks: tuple[int, ...], prefix: str) -> dict[str, float]:
    """NDCG@k, HIT@k and MRR@k from 0-based ranks of the positive (one relevant item per user)."""
    out = {}
    for k in ks:
        hit = ranks < k
        out[f"{prefix}_ndcg_at_{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
        out[f"{prefix}_hit_at_{k}"] = float(hit.mean())
        out[f"{prefix}_mrr_at_{k}"] = float(np.where(hit, 1.0 / (ranks + 1.0), 0.0).mean())
    return out


def _right_padded(sequences: list[np.ndarray], width: int) -> np.ndarray:
    out = np.zeros((len(sequences), width), dtype=np.int64)
    for row, seq in enumerate(sequences):
        out[row, :len(seq)] = seq
    return out


