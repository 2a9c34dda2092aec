"""Item encoders: item index -> vector of the model's hidden size.

TextItemEncoder (SRT): SentencePiece tokens of title and brand, token embeddings pooled per field (mean, or sum as
the reference code), fields concatenated, a linear adapter to the hidden size. One token table shared by the fields,
or one per field (the reference's). Its size does not grow with the catalog: the per-item token ids
are buffers, not parameters, so a new catalog needs no new weights. `catalog()` gives every item's vector at once as
fixed sparse pooling matrices times the token tables: the training step uses it when a batch's negatives cover most of
the catalog.
IdItemEncoder (classic SASRec): one learned vector per item.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn


class TextItemEncoder(nn.Module):
    def __init__(self, title_tokens: np.ndarray, brand_tokens: np.ndarray, vocab_size: int, token_dim: int,
                 hidden: int, pooling: str = "mean", per_field_tables: bool = False) -> None:
        super().__init__()
        self.register_buffer("title_tokens", torch.as_tensor(title_tokens), persistent=False)
        self.register_buffer("brand_tokens", torch.as_tensor(brand_tokens), persistent=False)
        # EmbeddingBag: gather and pool in one kernel, padding (id 0) left out; an all-padding field (an item with
        # no brand) pools to zeros
        self.tokens = nn.EmbeddingBag(vocab_size, token_dim, mode=pooling, padding_idx=0)
        self.brand_table = nn.EmbeddingBag(vocab_size, token_dim, mode=pooling, padding_idx=0) \
            if per_field_tables else None
        self.adapter = nn.Linear(2 * token_dim, hidden)
        self.poolers = nn.ModuleList(TokenPooling(tokens, vocab_size, pooling)
                                     for tokens in (title_tokens, brand_tokens))
        for table in self.tables:
            nn.init.normal_(table.weight, std=0.02)
            with torch.no_grad():
                table.weight[0].zero_()

    @property
    def tables(self) -> list[nn.EmbeddingBag]:
        return [self.tokens] + ([self.brand_table] if self.brand_table is not None else [])

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        flat = items.reshape(-1)
        brand_table = self.brand_table if self.brand_table is not None else self.tokens
        fields = torch.cat([self.tokens(self.title_tokens[flat]), brand_table(self.brand_tokens[flat])], dim=-1)
        return self.adapter(fields).view(*items.shape, self.adapter.out_features)

    def catalog(self) -> torch.Tensor:
        """(n_items + 1, hidden): forward(arange(n_items + 1)), row 0 the padding item, as one sparse product per
        field: no per-item gather, and a gradient without the sort and scatter of EmbeddingBag's backward (on 5-core
        Beauty, 12,101 items: forward and backward 21 ms against 45 ms for the 11,937 distinct items of a batch
        with 1,000 negatives per target, one CPU thread)."""
        if torch.jit.is_tracing():  # fvcore's tracer cannot hold sparse tensors: the same vectors, the same count
            return self(torch.arange(len(self.title_tokens), device=self.title_tokens.device))
        brand_table = self.brand_table if self.brand_table is not None else self.tokens
        fields = [_PooledTokens.apply(table.weight, *pooler.matrices())
                  for table, pooler in zip((self.tokens, brand_table), self.poolers)]
        return self.adapter(torch.cat(fields, dim=-1))

    @property
    def lookup_params(self) -> int:
        return sum(table.weight.numel() for table in self.tables)


class TokenPooling(nn.Module):
    """P (items, vocab) with P @ table = each item's pooled token vectors as EmbeddingBag pools them (padding id 0
    left out, a repeated piece counted each time; mean: divided by the item's piece count), and its transpose, kept
    as the dense parts of two CSR matrices: buffers follow the model to its device and copy with it (a sparse
    tensor would do neither), and are not saved (the token ids make them)."""

    def __init__(self, tokens: np.ndarray, vocab: int, pooling: str) -> None:
        super().__init__()
        tokens = torch.as_tensor(tokens)
        rows, cols = (tokens != 0).nonzero(as_tuple=True)
        values = torch.ones(len(rows))
        if pooling == "mean":
            values = values / (tokens != 0).sum(1)[rows]
        matrix = torch.sparse_coo_tensor(torch.stack([rows, tokens[rows, cols]]), values, (len(tokens), vocab),
                                         check_invariants=True).coalesce()  # repeated pieces summed
        self.shapes = [(len(tokens), vocab), (vocab, len(tokens))]
        for name, coo in (("matrix", matrix), ("transposed", matrix.t().coalesce())):
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                csr = coo.to_sparse_csr()
            for part, tensor in (("crow", csr.crow_indices()), ("col", csr.col_indices()), ("values", csr.values())):
                self.register_buffer(f"{name}_{part}", tensor.clone(), persistent=False)

    def matrices(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(P, P^T) as sparse CSR tensors on the buffers' device (made without copying)."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            return tuple(torch.sparse_csr_tensor(getattr(self, f"{name}_crow"), getattr(self, f"{name}_col"),
                                                 getattr(self, f"{name}_values"), shape,
                                                 check_invariants=False)  # checked once, when made
                         for name, shape in zip(("matrix", "transposed"), self.shapes))


class _PooledTokens(torch.autograd.Function):
    """P @ table for a fixed sparse P; the gradient P^T @ grad uses a transpose made once (autograd through a
    sparse product would transpose P at every step)."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, matrix: torch.Tensor, transposed: torch.Tensor) -> torch.Tensor:
        ctx.transposed = transposed
        return matrix @ table

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return ctx.transposed @ grad, None, None


class IdItemEncoder(nn.Module):
    def __init__(self, n_items: int, hidden: int) -> None:
        super().__init__()
        self.table = nn.Embedding(n_items + 1, hidden, padding_idx=0)
        nn.init.normal_(self.table.weight, std=0.02)
        with torch.no_grad():
            self.table.weight[0].zero_()

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        return self.table(items)

    @property
    def lookup_params(self) -> int:
        return self.table.weight.numel()
