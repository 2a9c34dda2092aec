"""The sequential recommender (item encoder + causal transformer) and the training-step forward that fvcore counts."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig, TrainConfig
from .item_encoders import IdItemEncoder, TextItemEncoder
from .losses import binary_cross_entropy_from_logits, full_cross_entropy_loss, sampled_softmax_from_logits
from .transformer import CausalTransformer


class SequentialRecommender(nn.Module):
    def __init__(self, item_encoder: nn.Module, transformer: CausalTransformer) -> None:
        super().__init__()
        self.item_encoder, self.transformer = item_encoder, transformer

    def last_states(self, inputs: torch.Tensor) -> torch.Tensor:
        """(B, L) right-padded item histories -> (B, d) state after each history's last item."""
        states = self.transformer(self.item_encoder(inputs))
        last = (inputs != 0).sum(1) - 1
        return states[torch.arange(len(inputs), device=inputs.device), last]

    def param_counts(self) -> dict[str, int]:
        """Parameters split as the run store records them (DESIGN §2); frozen ones count (fine-tuning freezes some)."""
        total = sum(p.numel() for p in self.parameters())
        embedding = self.item_encoder.lookup_params
        position = self.transformer.positions.weight.numel()
        return {"non_embedding_params": total - embedding, "embedding_params": embedding,
                "position_embedding_params": position, "total_params": total}


def build_recommender(cfg: ModelConfig, n_items: int, text: dict | None) -> SequentialRecommender:
    """`text` holds title_tokens, brand_tokens and vocab_size for the text encoder (None for `id`)."""
    if cfg.item_encoder == "text":
        encoder: nn.Module = TextItemEncoder(text["title_tokens"], text["brand_tokens"], text["vocab_size"],
                                             cfg.token_width, cfg.hidden)
    else:
        encoder = IdItemEncoder(n_items, cfg.hidden)
    transformer = CausalTransformer(cfg.n_layers, cfg.n_heads, cfg.hidden, cfg.ffn_size, cfg.max_len, cfg.dropout,
                                    cfg.layer_dropout)
    return SequentialRecommender(encoder, transformer)


class TrainingStep(nn.Module):
    """One training step's forward, from a batch of windows to the loss: the module whose FLOPs are counted.

    seq: (B, L + 1) right-padded windows; inputs are seq[:, :-1] and targets seq[:, 1:].
    negatives: (B, n) sampled negative ids, shared by a window's targets (ignored by full_ce; pass a (B, 0) tensor);
    bce with `all` targets takes (B, L·n): n for each position, in order.
    """

    def __init__(self, model: SequentialRecommender, train: TrainConfig, log_q: torch.Tensor, n_items: int) -> None:
        super().__init__()
        self.model, self.targets, self.loss, self.temperature = model, train.targets, train.loss, train.temperature
        # Shortcuts that skip repeated or padded work: each distinct item of a batch encoded once (negatives are
        # mostly repeats of popular items), full-CE logits only at real targets. The FLOP counter switches them
        # off: C counts the model's nominal computation, not this batch's luck in repeats and lengths.
        self.shortcuts = True
        self.bf16 = train.precision == "bf16"
        self.register_buffer("log_q", log_q, persistent=False)
        self.register_buffer("catalog_ids", torch.arange(1, n_items + 1), persistent=False)

    def forward(self, seq: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        # bf16 autocast (train.precision, CUDA only): matmuls in bf16, the loss's reductions stay fp32
        with torch.autocast(seq.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self._loss(seq, negatives)

    def _loss(self, seq: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
        encoder, table = self.model.item_encoder, None
        if self.shortcuts:  # each distinct item of the batch encoded once: negatives stay a table and an index
            unique, inverse = torch.unique(torch.cat([seq.reshape(-1), negatives.reshape(-1)]), return_inverse=True)
            table = encoder(unique)                                # (U, d)
            items = table[inverse[: seq.numel()]].view(*seq.shape, -1)
            negative_index = inverse[seq.numel():].view(negatives.shape)
        else:
            items, negative_vectors = encoder(seq), encoder(negatives)
        states = self.model.transformer(items[:, :-1])             # (B, L, d)
        if self.targets == "last":
            rows = torch.arange(len(seq), device=seq.device)
            target_at = (seq != 0).sum(1) - 1                      # the window's last item is its only target
            states = states[rows, target_at - 1].unsqueeze(1)
            positive, positive_ids = items[rows, target_at].unsqueeze(1), seq[rows, target_at].unsqueeze(1)
        else:
            positive, positive_ids = items[:, 1:], seq[:, 1:]
        # Padding targets are ignored by every loss; with the shortcuts on, their logits are not even computed.
        real = positive_ids != 0 if self.shortcuts and self.targets == "all" else None
        if self.loss == "full_ce":
            catalog = encoder(self.catalog_ids)
            if real is not None:
                states, positive_ids = states[real].unsqueeze(0), positive_ids[real].unsqueeze(0)
            return full_cross_entropy_loss(states, catalog, positive_ids, self.temperature)
        pos_logit = (states * positive).sum(-1) / self.temperature
        if self.loss == "bce" and self.targets == "all":  # SASRec: every position scores its own n negatives
            per_position = (*positive_ids.shape, -1)
            vectors = negative_vectors if table is None else table[negative_index]
            neg_logits = torch.einsum("bpd,bpnd->bpn", states, vectors.view(*per_position, states.shape[-1]))
            return binary_cross_entropy_from_logits(pos_logit, neg_logits / self.temperature, positive_ids,
                                                    negatives.view(per_position))
        if real is not None:  # one row per real target: (M, 1) positives against their sequence's negatives
            rows = real.nonzero(as_tuple=True)[0]
            pos_logit, positive_ids = pos_logit[real].unsqueeze(1), positive_ids[real].unsqueeze(1)
            negatives = negatives[rows]
        if table is None:
            neg_logits = torch.bmm(states, negative_vectors.transpose(1, 2))
        elif len(table) <= 2 * negatives.shape[1]:
            # Few distinct items (popular negatives repeat): score each once, then pick the sampled ones. This
            # skips materialising (B, n, d) negative vectors and scattering their gradient back.
            if real is not None:
                neg_logits = torch.matmul(states[real], table.t()).gather(-1, negative_index[rows]).unsqueeze(1)
            else:
                index = negative_index.unsqueeze(1).expand(-1, states.shape[1], -1)
                neg_logits = torch.matmul(states, table.t()).gather(-1, index)
        else:
            neg_logits = torch.bmm(states, table[negative_index].transpose(1, 2))
            if real is not None:
                neg_logits = neg_logits[real].unsqueeze(1)
        neg_logits = neg_logits / self.temperature
        if self.loss == "bce":
            return binary_cross_entropy_from_logits(pos_logit, neg_logits, positive_ids, negatives)
        return sampled_softmax_from_logits(pos_logit, neg_logits, positive_ids, negatives, self.log_q)
