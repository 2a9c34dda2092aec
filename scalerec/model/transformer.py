"""A causal transformer over item vectors (SASRec), attention through fused SDPA.

Two block layouts: pre-LN (x + f(LN(x)), a final LN; GPT-2, our 0.1 default) and post-LN (LN(x + f(x)), BERT and
RecBole's SASRec: the SRT reference code), which also normalises the input (item + position) and has no final LN.
Sequences are right-padded: with a causal mask no real position ever attends to padding, so no key mask is needed
and SDPA keeps its fast is_causal path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Dropout(nn.Dropout):
    """nn.Dropout whose CPU mask comes from rand_like: 4x faster than the bernoulli_ kernel nn.Dropout uses on CPU
    (12.5 ms against 2.9 ms for a 128 x 50 x 64 tensor on 2 cores, measured), where dropout was a third of a small
    model's step. Same distribution and scaling; CUDA keeps the fused kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.is_cuda:
            return super().forward(x)
        keep = (torch.rand_like(x) >= self.p).to(x.dtype)
        return x * keep * (1.0 / (1.0 - self.p))


class CausalSelfAttention(nn.Module):
    def __init__(self, hidden: int, n_heads: int, dropout: float) -> None:
        super().__init__()
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.out_dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.n_heads, hidden // self.n_heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        return self.out_dropout(self.out(y.transpose(1, 2).reshape(batch, length, hidden)))


class Block(nn.Module):
    def __init__(
        self, hidden: int, n_heads: int, inner: int, dropout: float, post_norm: bool = False, eps: float = 1e-5
    ) -> None:
        super().__init__()
        self.post_norm = post_norm
        self.norm1, self.norm2 = nn.LayerNorm(hidden, eps=eps), nn.LayerNorm(hidden, eps=eps)
        self.attention = CausalSelfAttention(hidden, n_heads, dropout)
        self.ffn = nn.Sequential(nn.Linear(hidden, inner), nn.GELU(), nn.Linear(inner, hidden), Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.post_norm:
            x = self.norm1(x + self.attention(x))
            return self.norm2(x + self.ffn(x))
        x = x + self.attention(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class CausalTransformer(nn.Module):
    def __init__(
        self,
        n_layers: int,
        n_heads: int,
        hidden: int,
        inner: int,
        max_len: int,
        dropout: float,
        layer_dropout: tuple[float, ...] = (),
        post_norm: bool = False,
        eps: float = 1e-5,
    ) -> None:
        """`layer_dropout`: one rate per block (LSRM's layer-wise adaptive dropout); empty = `dropout` everywhere.
        `post_norm`: post-LN blocks, the input normalised, no final LN (see the module docstring)."""
        super().__init__()
        self.positions = nn.Embedding(max_len, hidden)
        self.dropout = Dropout(dropout)
        rates = layer_dropout or (dropout,) * n_layers
        self.blocks = nn.ModuleList(Block(hidden, n_heads, inner, rate, post_norm, eps) for rate in rates)
        # pre-LN normalises at the end, post-LN at the input; `norm` is the one that exists either way
        self.post_norm = post_norm
        self.norm = nn.LayerNorm(hidden, eps=eps)
        nn.init.normal_(self.positions.weight, std=0.02)

    def forward(self, item_vectors: torch.Tensor) -> torch.Tensor:
        """(B, L, d) item vectors -> (B, L, d) states; state t has seen items 0..t."""
        x = item_vectors + self.positions.weight[: item_vectors.shape[1]]
        x = self.dropout(self.norm(x) if self.post_norm else x)
        for block in self.blocks:
            x = block(x)
        return x if self.post_norm else self.norm(x)
