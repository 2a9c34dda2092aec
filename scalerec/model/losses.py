"""Losses over (batch, positions) targets. Padding targets (id 0) are excluded from the mean."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sampled_softmax_loss(states: torch.Tensor, positive: torch.Tensor, positive_ids: torch.Tensor,
                         negatives: torch.Tensor, negative_ids: torch.Tensor, log_q: torch.Tensor,
                         temperature: float) -> torch.Tensor:
    """Sampled softmax with logQ correction and accidental hits masked (SRT paper, Eq. 2).

    states, positive: (B, P, d); negatives: (B, n, d), one set shared by the P positions of a sequence;
    ids: (B, P) and (B, n); log_q: (n_items + 1,) log sampling probability of every item.
    """
    return sampled_softmax_from_logits(*_logits(states, positive, negatives, temperature), positive_ids,
                                       negative_ids, log_q)


def sampled_softmax_from_logits(pos_logit: torch.Tensor, neg_logits: torch.Tensor, positive_ids: torch.Tensor,
                                negative_ids: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """pos_logit (B, P), neg_logits (B, P, n), both already divided by the temperature.

    Both the positive's and the negatives' logits are corrected by − log q, so the sampled softmax is an unbiased
    estimate of the full one; a negative equal to the positive (an accidental hit) gets −inf.
    """
    pos_logit = pos_logit - log_q[positive_ids]
    neg_logits = neg_logits - log_q[negative_ids].unsqueeze(1)
    neg_logits = neg_logits.masked_fill(negative_ids.unsqueeze(1) == positive_ids.unsqueeze(2), float("-inf"))
    logits = torch.cat([pos_logit.unsqueeze(-1), neg_logits], dim=-1)
    per_target = torch.logsumexp(logits, dim=-1) - pos_logit
    mask = positive_ids != 0
    return (per_target * mask).sum() / mask.sum().clamp(min=1)


def binary_cross_entropy_loss(states: torch.Tensor, positive: torch.Tensor, positive_ids: torch.Tensor,
                              negatives: torch.Tensor, negative_ids: torch.Tensor, temperature: float) -> torch.Tensor:
    """Classic SASRec: −log σ(s⁺) − mean_j log(1 − σ(s⁻_j)) over uniformly sampled negatives, accidental hits left
    out. negatives (B, n, d) and negative_ids (B, n) are shared by a sequence's positions; the training step gives
    every position its own instead, as SASRec does (see binary_cross_entropy_from_logits)."""
    return binary_cross_entropy_from_logits(*_logits(states, positive, negatives, temperature), positive_ids,
                                            negative_ids)


def binary_cross_entropy_from_logits(pos_logit: torch.Tensor, neg_logits: torch.Tensor, positive_ids: torch.Tensor,
                                     negative_ids: torch.Tensor) -> torch.Tensor:
    """pos_logit (B, P), neg_logits (B, P, n); negative_ids (B, n) shared by the positions, or (B, P, n) one set per
    position."""
    if negative_ids.dim() == 2:
        negative_ids = negative_ids.unsqueeze(1)
    real = (negative_ids != positive_ids.unsqueeze(2)).to(neg_logits.dtype)
    neg_term = (F.softplus(neg_logits) * real).sum(-1) / real.sum(-1).clamp(min=1)
    per_target = F.softplus(-pos_logit) + neg_term
    mask = positive_ids != 0
    return (per_target * mask).sum() / mask.sum().clamp(min=1)


def _logits(states: torch.Tensor, positive: torch.Tensor, negatives: torch.Tensor,
            temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    return (states * positive).sum(-1) / temperature, torch.bmm(states, negatives.transpose(1, 2)) / temperature


def full_cross_entropy_loss(states: torch.Tensor, catalog: torch.Tensor, positive_ids: torch.Tensor,
                            temperature: float) -> torch.Tensor:
    """Softmax over the whole catalog (SASRec-CE). catalog: (n_items, d) vectors of items 1..n_items."""
    logits = torch.matmul(states, catalog.t()) / temperature
    return F.cross_entropy(logits.flatten(0, 1), (positive_ids - 1).flatten(), ignore_index=-1)

