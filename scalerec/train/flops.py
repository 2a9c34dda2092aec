"""FLOP counting with fvcore (DESIGN §3): measured once per distinct batch shape, cached, plus an analytic estimate."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import torch

from ..config import RunConfig
from ..data.batches import Batch
from ..store.schema import train_flops  # noqa: F401  (the one conversion lives in the torch-free schema)

SDPA_OP = "aten::scaled_dot_product_attention"


def sdpa_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """fvcore handle: q (…, L, E), k (…, S, E), v (…, S, Ev) -> batch·L·S·(E + Ev) multiply-accumulates."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(value) for value in inputs[:3])
    return int(np.prod(q[:-1])) * k[-2] * (q[-1] + v[-1])


def count_forward_macs(
    module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], nominal: bool = True
) -> tuple[float, list[str]]:
    """fvcore's count of one forward of `module` on `inputs`, and the names of the ops it could not count.

    `nominal` counts the forward as if every window item and negative were encoded (the run store's convention);
    False counts what the trainer runs (its shortcuts: each distinct item of the batch encoded once, full-CE
    logits at real targets only).

    Runs under no_grad with the RNG state restored, so counting does not change the training that follows.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fvcore's import and tracer raise deprecation and tracer warnings
        from fvcore.nn import FlopCountAnalysis

        logging.getLogger("fvcore").setLevel(logging.ERROR)
        analysis = FlopCountAnalysis(module, inputs).set_op_handle(SDPA_OP, sdpa_macs)
        analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
        shortcuts = getattr(module, "shortcuts", False)
        try:
            module.shortcuts = shortcuts and not nominal
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                total = float(analysis.total())
        finally:
            module.shortcuts = shortcuts
        return total, sorted(analysis.unsupported_ops())


def nominal_shape(cfg: RunConfig, batch: Batch) -> tuple[int, int, float]:
    """(windows, targets, scale) of the nominal batch whose count stands for `batch` (DESIGN §3, the paper's
    convention): every window padded to max_len + 1; with `all` targets every position a target (padding included);
    with `last` targets one target per window. Prefix samples computed in one pass (batches of batch_size targets)
    count as the reference's padded batch of batch_size samples, scaled by the batch's share of targets, so the
    count of a prefix sample does not depend on how it was batched."""
    windows = cfg.train.batch_size if cfg.train.batch_targets else len(batch.seq)
    targets = windows * cfg.model.max_len if cfg.train.targets == "all" else windows
    scale = batch.n_targets / windows if cfg.train.batch_targets else 1.0
    return windows, targets, scale


class FlopCounter:
    """Counts the nominal forward of each batch with fvcore, cached by nominal shape: counting costs about one
    step, once per shape."""

    def __init__(self, module: torch.nn.Module, cfg: RunConfig) -> None:
        self.module, self.cfg, self.cache, self.unsupported_ops = module, cfg, {}, set()

    def __call__(self, batch: Batch) -> float:
        windows, targets, scale = nominal_shape(self.cfg, batch)
        if windows not in self.cache:
            length = self.cfg.model.max_len
            device = self.module.catalog_ids.device
            seq = torch.ones(windows, length + 1, dtype=torch.long, device=device)
            target_ids = torch.ones(windows, length, dtype=torch.long, device=device)
            if self.cfg.train.targets == "last":
                target_ids[:, :-1] = 0
            rows = targets if self.cfg.train.negatives_per_target else windows
            negatives = torch.full((rows, self.cfg.train.negatives), 2, dtype=torch.long, device=device)
            inputs = (seq, target_ids, negatives)
            if self.cfg.model.hstu_time_bias:  # a lookup and an add per attention score: no MACs of its own
                inputs += (torch.zeros(windows, length + 1, dtype=torch.long, device=device),)
            macs, unsupported = count_forward_macs(self.module, inputs)
            self.cache[windows] = macs
            self.unsupported_ops.update(unsupported)
        return self.cache[windows] * scale


def _encoder_and_transformer_macs(model, encoded: int, windows: int, length: int) -> float:
    """The two terms every forward count shares: `encoded` items through the text adapter (an ID table is a
    lookup), and `windows` x `length` positions through the transformer blocks (projections, FFN, attention)."""
    d = model.hidden
    encoder = encoded * 2 * model.token_width * d if model.item_encoder == "text" else 0
    if model.block == "hstu":  # U, V, Q, K in one projection, W_o; Q K^T and A V over every pair of positions
        heads, dqk, dv = model.n_heads, model.attention_dim, model.linear_dim
        per_token = d * heads * (2 * dv + 2 * dqk) + heads * dv * d
        attention = windows * length * length * heads * (dqk + dv)
    else:  # Q, K, V and the output projection, the feed-forward; Q K^T and A V
        per_token = 4 * d * d + 2 * d * model.ffn_size
        attention = 2 * windows * length * length * d
    return float(encoder + model.n_layers * (per_token * windows * length + attention))


def analytic_forward_macs(cfg: RunConfig, batch: Batch, n_items: int) -> float:
    """Multiply-accumulates of one training step's nominal forward by formula: the cross-check of fvcore's count."""
    m, t = cfg.model, cfg.train
    windows, targets, scale = nominal_shape(cfg, batch)
    d, length = m.hidden, m.max_len
    rows = targets if t.negatives_per_target else windows
    encoded = windows * (length + 1) + (rows * t.negatives if t.negatives else n_items)
    scored = targets * (t.negatives or n_items) * d
    if t.negatives and not t.negatives_per_target:  # a window's shared negatives are scored at each of its positions
        scored = windows * length * t.negatives * d
    return (_encoder_and_transformer_macs(m, encoded, windows, length) + scored) * scale


def executed_forward_macs(cfg: RunConfig, batch: Batch, work: tuple[int, int]) -> float:
    """Multiply-accumulates of the forward the trainer actually ran on `batch`, by formula: its own window width
    (no padding to max_len), its real targets, `work` = (items encoded, target-candidate dot products) as the
    training step reports them (each distinct item encoded once, the scoring branch taken). Beside the nominal
    count (DESIGN §3), this is the real cost, so a user sees what length-aware batches and shortcuts save."""
    encoded, scored = work
    return (
        _encoder_and_transformer_macs(cfg.model, encoded, len(batch.seq), batch.seq.shape[1] - 1)
        + scored * cfg.model.hidden
    )
