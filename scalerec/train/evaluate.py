"""Leave-one-out evaluation (DESIGN §5): each positive ranked among the candidates of a named protocol.

- `full`: the whole catalog, history items included (the SRT reference code's from-scratch evaluation).
- `full-masked`: the whole catalog less the items of the user's input history (ICLRec's, whose numbers the paper's
  Table 1 quotes for SASRec and BERT4Rec); the positive itself is never masked.
- `sampled-K`: K negatives uniform without replacement, the positive excluded: the K items with the smallest keys
  hash(eval_seed, u, item), the same in every run of a grid, independent of batching; never written to disk, kept
  in memory (packed bits) between a run's evaluations.
Ties are counted pessimistically: a candidate scored equal to the positive ranks above it (a model that scores
everything alike gets no credit). The scores are computed once per user; every protocol ranks from them.
"""

from __future__ import annotations

import numpy as np
import torch

from ..config import TrainConfig, parse_protocol, protocol_suffix
from ..data.slices import evaluation_slices
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
    threshold = np.partition(keys, n_negatives - 1, axis=1)[:, n_negatives - 1 : n_negatives]
    return keys <= threshold


class Evaluator:
    """Ranks the validation or test positive of every user under the run's protocol (train.protocol, the plain
    metric columns and valid_loss) and its extra protocols (columns suffixed __<protocol>); histories are built once
    per run. The test input is the training sequence plus the validation item. Where the split keeps timestamps
    (a time bias), each input row comes with its items' times and the positive's (CausalTransformer.forward)."""

    def __init__(self, split: Split, max_len: int, train: TrainConfig, batch_size: int = 256) -> None:
        self.split, self.train, self.batch_size = split, train, batch_size
        self.protocols = {"": train.protocol} | {
            protocol_suffix(p): p for p in train.extra_eval_protocols if p != train.protocol
        }
        self.max_len = max_len
        histories = {"valid": list(split.train), "test": [np.r_[s, v] for s, v in zip(split.train, split.valid)]}
        self.histories = histories  # whole histories: full-masked masks every item seen, not only the last max_len
        self.targets = {"valid": split.valid, "test": split.test}
        self._times = {}  # which -> (whole histories' times, the positives' times), where the split keeps times
        if split.train_times is not None:
            self._times = {
                "valid": (list(split.train_times), split.valid_times),
                "test": ([np.r_[s, v] for s, v in zip(split.train_times, split.valid_times)], split.test_times),
            }
        every = np.arange(split.n_users)
        self.inputs = {which: self._input_rows(which, every, seqs) for which, seqs in histories.items()}
        self._sampled: dict[tuple[str, str], np.ndarray] = {}  # (protocol, which) -> packed candidate masks
        self.slices = {which: [] for which in histories}
        if train.eval_slices:
            for tag, (which, seqs) in enumerate(histories.items()):  # the noise differs between valid and test
                self.slices[which] = [
                    (s, None if s.inputs is None else self._input_rows(which, s.users, s.inputs))
                    for s in evaluation_slices(
                        list(split.train), seqs, self.targets[which], split.n_items, train.eval_seed * 2 + tag
                    )
                ]

    @torch.no_grad()
    def evaluate(
        self, model: torch.nn.Module, which: str, device: torch.device, slice_passes: bool = True, main: bool = True
    ) -> dict[str, float]:
        """Metrics `{which}_ndcg_at_k`, `_hit_at_k`, `_mrr_at_k` for every k and protocol, `{which}_loss` (the
        cross-entropy of the positive among the run's protocol's candidates), and for every slice (data/slices.py)
        `{which}_ndcg_at_k__<slice>`, `_hit_at_k__<slice>` under the run's protocol with `{which}_users__<slice>`;
        without `slice_passes`, not the slices that need a forward pass of their own (noise, ahead). One forward
        pass scores every user: every protocol ranks from its scores. Without `main`, only the slices that need
        passes of their own (what `slice_passes` leaves out, for a checkpoint whose main ranking is done)."""
        was_training = model.training
        model.eval()
        # every item encoded once (row i = item i, row 0 padding): histories look their vectors up in it
        table = model.item_encoder(torch.arange(self.split.n_items + 1, device=device))
        metrics, ranks = {}, {}
        if main:
            users = np.arange(len(self.targets[which]))
            ranks, losses = self._ranks(model, table, which, users, self.inputs[which], self.protocols)
            metrics[f"{which}_loss"] = float(losses.mean())
            for suffix, found in ranks.items():
                metrics |= {
                    name + suffix: value for name, value in ranking_metrics(found, self.train.eval_ks, which).items()
                }
        for piece, inputs in self.slices[which]:
            if (inputs is not None and not slice_passes) or (inputs is None and not main):
                continue
            found = (
                ranks[""][piece.users]
                if inputs is None
                else self._ranks(model, table, which, piece.users, inputs, {"": self.train.protocol}, with_loss=False)[
                    0
                ][""]
            )
            metrics[f"{which}_users__{piece.name}"] = len(piece.users)
            metrics |= {
                f"{name}__{piece.name}": value
                for name, value in ranking_metrics(found, self.train.eval_ks, which).items()
                if "_mrr_" not in name
            }
        model.train(was_training)
        return metrics

    def _ranks(
        self,
        model: torch.nn.Module,
        table: torch.Tensor,
        which: str,
        users: np.ndarray,
        padded: tuple[np.ndarray, np.ndarray | None],
        protocols: dict[str, str],
        with_loss: bool = True,
    ) -> tuple[dict[str, np.ndarray], torch.Tensor]:
        """0-based ranks of the positives of `users` (`padded`: their padded input rows, in the same order, and
        their times or None: _input_rows) under each protocol, and (`with_loss`) the loss under the first
        (suffix "")."""
        ranks = {suffix: [] for suffix in protocols}
        losses = []
        targets = self.targets[which]
        inputs, times = padded
        # Users in order of history length, each batch cut to its longest history: right padding is never attended
        # to (causal), so the states are those of the full width, without the ~88% of work spent on padding.
        lengths = (inputs != 0).sum(1)
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(users), self.batch_size):
            pick = order[start : start + self.batch_size]
            rows, width = users[pick], max(1, int(lengths[pick].max()))
            batch_times = None if times is None else torch.from_numpy(times[pick, : width + 1]).to(table.device)
            states = model.last_states(torch.from_numpy(inputs[pick, :width]).to(table.device), table, batch_times)
            scores = (states @ table[1:].t()).float().cpu()
            pos = scores[torch.arange(len(rows)), torch.from_numpy(targets[rows] - 1)].unsqueeze(1)
            for suffix, protocol in protocols.items():
                loss = not suffix and with_loss
                if protocol == "full":  # every item but the positive, which counts itself: no mask to build
                    ranks[suffix].append(((scores >= pos).sum(1) - 1).clamp(min=0))
                    if loss:
                        losses.append(
                            torch.logsumexp(scores / self.train.temperature, 1) - pos[:, 0] / self.train.temperature
                        )
                    continue
                mask = torch.from_numpy(self.candidates(protocol, which, rows))
                ranks[suffix].append(((scores >= pos) & mask).sum(1))  # ties count against the positive
                if loss:
                    logits = torch.cat([pos, scores.masked_fill(~mask, float("-inf"))], 1) / self.train.temperature
                    losses.append(torch.logsumexp(logits, 1) - logits[:, 0])
        empty = torch.zeros(0, dtype=torch.long)
        restore = np.argsort(order, kind="stable")  # back to the order of `users`
        losses = torch.cat(losses)[torch.from_numpy(restore)] if losses else empty.float()
        return {suffix: torch.cat(found or [empty]).numpy()[restore] for suffix, found in ranks.items()}, losses

    def _input_rows(
        self, which: str, users: np.ndarray, histories: list[np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """The padded input rows of `users` reading `histories` (their last max_len items), and where the split
        keeps times their (len(users), max_len + 1) times: item k of a history at the time of item k of the user's
        own history (noise replaces items, not times; ahead drops the last ones), then the positive's time."""
        inputs = _right_padded([h[-self.max_len :] for h in histories], self.max_len)
        if not self._times:
            return inputs, None
        whole, positives = self._times[which]
        rows = [np.r_[whole[u][: len(h)][-self.max_len :], positives[u]] for u, h in zip(users, histories, strict=True)]
        return inputs, _right_padded(rows, self.max_len + 1)

    def candidates(self, protocol: str, which: str, rows: np.ndarray) -> np.ndarray:
        """(len(rows), n_items) mask of the items each user's positive is ranked against (never the positive)."""
        kind, k = parse_protocol(protocol)
        n_items, positives = self.split.n_items, self.targets[which][rows]
        if kind == "sampled":
            if len(self.targets[which]) * n_items > _CACHED_MASK_BITS:  # too large to keep: hashed again each time
                return self._hashed(k, which, rows)
            if (protocol, which) not in self._sampled:  # the same every evaluation: hashed once, kept as bits
                users = np.arange(len(self.targets[which]))
                self._sampled[protocol, which] = np.concatenate(
                    [
                        np.packbits(self._hashed(k, which, part), axis=1)
                        for part in np.array_split(users, max(1, len(users) // self.batch_size))
                    ]
                )
            return np.unpackbits(self._sampled[protocol, which][rows], axis=1, count=n_items).view(bool)
        mask = np.ones((len(rows), n_items), dtype=bool)
        if kind == "full-masked":
            history = [self.histories[which][r] for r in rows]
            mask[np.repeat(np.arange(len(rows)), [len(h) for h in history]), np.concatenate(history) - 1] = False
        mask[np.arange(len(rows)), positives - 1] = False
        return mask

    def _hashed(self, k: int, which: str, rows: np.ndarray) -> np.ndarray:
        """The sampled-k candidate masks of `rows` (negative_mask)."""
        n_items = self.split.n_items
        return negative_mask(rows, self.targets[which][rows], n_items, min(k, n_items - 1), self.train.eval_seed)


_CACHED_MASK_BITS = 2**31  # a sampled protocol's masks for every user are kept while they fit in 256 MB


def ranking_metrics(ranks: np.ndarray, ks: tuple[int, ...], prefix: str) -> dict[str, float]:
    """NDCG@k, HIT@k and MRR@k from 0-based ranks of the positive (one relevant item per user)."""
    out = {}
    if len(ranks) == 0:  # an empty slice: no number rather than a mean of nothing
        return {f"{prefix}_{name}_at_{k}": float("nan") for k in ks for name in ("ndcg", "hit", "mrr")}
    for k in ks:
        hit = ranks < k
        out[f"{prefix}_ndcg_at_{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
        out[f"{prefix}_hit_at_{k}"] = float(hit.mean())
        out[f"{prefix}_mrr_at_{k}"] = float(np.where(hit, 1.0 / (ranks + 1.0), 0.0).mean())
    return out


def _right_padded(sequences: list[np.ndarray], width: int) -> np.ndarray:
    out = np.zeros((len(sequences), width), dtype=np.int64)
    for row, seq in enumerate(sequences):
        out[row, : len(seq)] = seq
    return out
