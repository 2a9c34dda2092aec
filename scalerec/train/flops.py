"""FLOP counting with fvcore (DESIGN §3): measured once per distinct batch shape, cached, plus an analytic estimate."""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import torch

from ..config import RunConfig

SDPA_OP = "aten::scaled_dot_product_attention"


def train_flops(forward_macs: float) -> float:
    """The one conversion from counted forward MACs to training FLOPs: 2 FLOPs per MAC, backward ≈ 2 × forward."""
    return 6.0 * forward_macs


def sdpa_macs(inputs: list[Any], outputs: list[Any]) -> int:
    """fvcore handle: q (…, L, E), k (…, S, E), v (…, S, Ev) -> batch·L·S·(E + Ev) multiply-accumulates."""
    from fvcore.nn.jit_handles import get_shape

    q, k, v = (get_shape(value) for value in inputs[:3])
    return int(np.prod(q[:-1])) * k[-2] * (q[-1] + v[-1])


def count_forward_macs(module: torch.nn.Module, inputs: tuple[torch.Tensor, ...],
                       nominal: bool = True) -> tuple[float, list[str]]:
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


class FlopCounter:
    """Caches fvcore counts by batch shape: counting costs about one step, once per shape."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.module, self.cache, self.unsupported_ops = module, {}, set()

    def __call__(self, seq: torch.Tensor, negatives: torch.Tensor) -> float:
        key = (tuple(seq.shape), tuple(negatives.shape))
        if key not in self.cache:
            macs, unsupported = count_forward_macs(self.module, (seq, negatives))
            self.cache[key] = macs
            self.unsupported_ops.update(unsupported)
        return self.cache[key]


def analytic_forward_macs(cfg: RunConfig, batch: int, n_items: int) -> float:
    """Multiply-accumulates of one training-step forward by formula: the cross-check of fvcore's count."""
    m, t = cfg.model, cfg.train
    d, length = m.hidden, m.max_len
    positions = length if t.targets == "all" else 1
    encoded = batch * (length + 1) + (batch * cfg.sampled_per_sequence if t.negatives else n_items)
    encoder = encoded * 2 * m.token_width * d if m.item_encoder == "text" else 0
    tokens = batch * length
    transformer = m.n_layers * ((4 * d * d + 2 * d * m.ffn_size) * tokens + 2 * batch * length * length * d)
    scored = t.negatives or n_items
    return float(encoder + transformer + batch * positions * scored * d)
