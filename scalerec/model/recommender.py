"""The sequential recommender (item encoder + causal transformer) and the training-step forward that fvcore counts."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig, TrainConfig
from .item_encoders import IdItemEncoder, TextItemEncoder
from .losses import binary_cross_entropy_from_logits, full_cross_entropy_loss, sampled_softmax_from_logits
from .transformer import CausalTransformer, HstuBlock


class SequentialRecommender(nn.Module):
    def __init__(self, item_encoder: nn.Module, transformer: CausalTransformer) -> None:
        super().__init__()
        self.item_encoder, self.transformer = item_encoder, transformer

    def last_states(
        self, inputs: torch.Tensor, table: torch.Tensor | None = None, times: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, L) right-padded item histories -> (B, d) state after each history's last item. `table`: the item
        encoder's output for every item (row i = item i), to look the histories up in rather than encode them.
        `times` (B, L + 1), for a time bias: each history's times, then the time of the item predicted."""
        states = self.transformer(self.item_encoder(inputs) if table is None else table[inputs], times)
        last = (inputs != 0).sum(1) - 1
        return states[torch.arange(len(inputs), device=inputs.device), last]

    def param_counts(self) -> dict[str, int]:
        """Parameters split as the run store records them (DESIGN §2); frozen ones count (fine-tuning freezes some)."""
        total = sum(p.numel() for p in self.parameters())
        embedding = self.item_encoder.lookup_params
        position = self.transformer.positions.weight.numel()
        return {
            "non_embedding_params": total - embedding,
            "embedding_params": embedding,
            "position_embedding_params": position,
            "total_params": total,
        }


def build_recommender(cfg: ModelConfig, n_items: int, text: dict | None) -> SequentialRecommender:
    """`text` holds title_tokens, brand_tokens and vocab_size for the text encoder (None for `id`)."""
    if cfg.item_encoder == "text":
        encoder: nn.Module = TextItemEncoder(
            text["title_tokens"],
            text["brand_tokens"],
            text["vocab_size"],
            cfg.token_width,
            cfg.hidden,
            cfg.pooling,
            cfg.token_tables == "per-field",
        )
    else:
        encoder = IdItemEncoder(n_items, cfg.hidden)
    transformer = CausalTransformer(
        cfg.n_layers,
        cfg.n_heads,
        cfg.hidden,
        cfg.ffn_size,
        cfg.max_len,
        cfg.dropout,
        cfg.layer_dropout,
        cfg.block_norm == "post",
        cfg.layer_norm_eps,
        cfg.block,
        cfg.attention_dim,
        cfg.linear_dim,
        cfg.hstu_time_bias,
    )
    model = SequentialRecommender(encoder, transformer)
    if cfg.init == "normal":
        model.apply(_normal_init)
    for block in transformer.blocks:  # an HSTU layer keeps the reference's own init whatever `init` says
        if isinstance(block, HstuBlock):
            block.reset_parameters()
    return model


def _normal_init(module: nn.Module) -> None:
    """The reference code's (and BERT's) init: every Linear and embedding N(0, 0.02), biases 0, LayerNorm 1 and 0."""
    if isinstance(module, (nn.Linear, nn.Embedding, nn.EmbeddingBag)):
        nn.init.normal_(module.weight, std=0.02)
        if getattr(module, "padding_idx", None) is not None:  # padding stays a zero vector
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class TrainingStep(nn.Module):
    """One training step's forward, from a batch to the loss: the module whose FLOPs are counted.

    seq (B, W): right-padded windows; the transformer reads seq[:, :-1].
    times (B, W), with a time bias only: the windows' items' times (the transformer's time_buckets).
    targets (B, W - 1): the item each position must predict, 0 where the position is no target (padding, or a
      position whose prefix is another batch's sample); the loss is the mean over the M targets.
    negatives: (M, n) one set per target, in the row-major order of `targets != 0` (train.negatives_per_target),
      or (B, n) one set per window shared by its targets; full_ce takes a (B, 0) tensor.

    Three stages: encode (items and negatives to vectors), score (the M target states against their positive and
    negatives), loss. The nominal path (`shortcuts = False`) encodes every item and negative of the batch as it
    stands: it is what the FLOP counter counts and the reference the shortcuts are tested against.
    """

    def __init__(self, model: SequentialRecommender, train: TrainConfig, log_q: torch.Tensor, n_items: int) -> None:
        super().__init__()
        self.model, self.loss, self.temperature = model, train.loss, train.temperature
        self.per_target = train.negatives_per_target
        # Shortcuts that skip repeated work: each distinct item of a batch encoded once (negatives are mostly
        # repeats of popular items), and, when few distinct items are sampled, each scored once.
        self.shortcuts = True
        self.bf16 = train.precision == "bf16"
        self.register_buffer("log_q", log_q, persistent=False)
        self.register_buffer("catalog_ids", torch.arange(1, n_items + 1), persistent=False)
        self.whole_catalog = hasattr(model.item_encoder, "catalog") and (
            train.loss == "full_ce"
            or _catalog_pays(
                log_q, train.batch_size * train.negatives, n_items, model.item_encoder.tokens.embedding_dim
            )
        )
        self.work = (0, 0)  # the last forward's (items encoded, target-candidate dot products): executed work

    def forward(
        self, seq: torch.Tensor, targets: torch.Tensor, negatives: torch.Tensor, times: torch.Tensor | None = None
    ) -> torch.Tensor:
        # bf16 autocast (train.precision, CUDA only): matmuls in bf16, the loss's reductions stay fp32
        with torch.autocast(seq.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            items, negative_vectors, table, negative_index = self._encode(seq, negatives)
            states = self.model.transformer(items[:, :-1], times)  # (B, W - 1, d)
            mask = targets != 0
            rows = mask.nonzero(as_tuple=True)[0]  # the window of each target
            target_states, positive_ids = states[mask], targets[mask]  # (M, d), (M,)
            encoded = len(table) if table is not None else seq.numel() + negatives.numel()
            if self.loss == "full_ce":
                whole = self.shortcuts and self.whole_catalog  # the table is the catalog
                self.work = (
                    encoded + (0 if whole else len(self.catalog_ids)),
                    len(positive_ids) * len(self.catalog_ids),
                )
                catalog = table[1:] if whole else self.model.item_encoder(self.catalog_ids)
                return full_cross_entropy_loss(target_states, catalog, positive_ids, self.temperature)
            pos_logit = (target_states * items[:, 1:][mask]).sum(-1)  # (M,)
            if table is None:
                neg_logits = self._score_vectors(states, mask, target_states, negative_vectors)
            else:
                neg_logits = self._score_table(states, mask, rows, target_states, table, negative_index)
            self.work = (encoded, len(positive_ids) + self._scored(states, len(positive_ids), table, negatives))
            negative_ids = negatives if self.per_target else negatives[rows]  # (M, n)
            pos_logit, neg_logits = pos_logit / self.temperature, neg_logits / self.temperature
            if self.loss == "bce":
                return binary_cross_entropy_from_logits(pos_logit, neg_logits, positive_ids, negative_ids)
            return sampled_softmax_from_logits(pos_logit, neg_logits, positive_ids, negative_ids, self.log_q)

    def _encode(self, seq: torch.Tensor, negatives: torch.Tensor):
        """(items (B, W, d), negative vectors or None, distinct-item table or None, negatives' index into it)."""
        encoder = self.model.item_encoder
        if not self.shortcuts:
            return encoder(seq), encoder(negatives), None, None
        if self.whole_catalog:  # row i is item i, so the ids index the table as they are
            table = encoder.catalog()
            return table[seq], None, table, negatives
        unique, inverse = torch.unique(torch.cat([seq.reshape(-1), negatives.reshape(-1)]), return_inverse=True)
        table = encoder(unique)  # (U, d)
        items = table[inverse[: seq.numel()]].view(*seq.shape, -1)
        return items, None, table, inverse[seq.numel() :].view(negatives.shape)

    def _scored(self, states, targets: int, table, negatives) -> int:
        """Negative dot products the scoring below computes (the branch it takes, counted)."""
        n = negatives.shape[1]
        if table is not None and _scores_whole_table(table, n):
            return targets * len(table)
        return targets * n if self.per_target else states.shape[0] * states.shape[1] * n

    def _score_vectors(self, states, mask, target_states, vectors) -> torch.Tensor:
        """Negative logits (M, n) from the negatives' own vectors."""
        if self.per_target:  # (M, n, d)
            return torch.einsum("md,mnd->mn", target_states, vectors)
        return torch.bmm(states, vectors.transpose(1, 2))[mask]  # a window's set at all its positions

    def _score_table(self, states, mask, rows, target_states, table, index) -> torch.Tensor:
        """Negative logits (M, n) from the batch's distinct-item table. Unless the table is far larger than a set of
        negatives, score every distinct item once with one matmul and pick: the (M, n, d) gather it avoids, and
        above all the scatter of that gather's gradient, cost more (on 5-core Beauty with 1,000 negatives per
        target, a table 12x the negatives: 0.099 s against 0.166 s a step, measured on one CPU thread)."""
        per_row = index if self.per_target else index[rows]  # (M, n)
        if _scores_whole_table(table, index.shape[1]):
            return torch.matmul(target_states, table.t()).gather(-1, per_row)
        if self.per_target:
            return torch.einsum("md,mnd->mn", target_states, table[index])
        return torch.bmm(states, table[index].transpose(1, 2))[mask]


def _catalog_pays(log_q: torch.Tensor, draws: int, n_items: int, token_width: int) -> bool:
    """Encode the whole catalog (TextItemEncoder.catalog) rather than a batch's distinct items, when the batch's
    `draws` negatives are expected to cover enough of the catalog: 30% of it for token tables 64 wide, less for
    narrower ones, more for wider ones, whose catalog costs more per item. Measured on 5-core Beauty, one CPU thread,
    time per step distinct / catalog at coverage 0.09, 0.23, 0.51, 0.82: width 32: 1.02, 1.15, 1.47, 1.72; width 64:
    0.79, 0.93, 1.21, 1.36; width 128: 0.61, 0.75, 0.90, 1.11 (2026-11-24, after the catalog's gradient became an
    EmbeddingBag sum; wider tables not measured: at 256 the rule never takes the catalog)."""
    expected = float(-torch.expm1(draws * torch.log1p(-log_q.exp())).sum())  # distinct items among the draws
    return expected / n_items >= 0.3 * (token_width / 64) ** 1.2


def _scores_whole_table(table: torch.Tensor, n_negatives: int) -> bool:
    """Score every distinct item of the batch once (one matmul) rather than each target's negatives: while the
    table is at most 16x a set of negatives (see TrainingStep._score_table)."""
    return len(table) <= 16 * n_negatives
