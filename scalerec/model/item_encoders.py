"""Item encoders: item index -> vector of the model's hidden size.

TextItemEncoder (SRT): SentencePiece tokens of title and brand, token embeddings pooled per field (mean, or sum as
the reference code), fields concatenated, a linear adapter to the hidden size. One token table shared by the fields,
or one per field (the reference's). Its size does not grow with the catalog: the per-item token ids
are buffers, not parameters, so a new catalog needs no new weights.
IdItemEncoder (classic SASRec): one learned vector per item.
"""

from __future__ import annotations

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

    @property
    def lookup_params(self) -> int:
        return sum(table.weight.numel() for table in self.tables)


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
