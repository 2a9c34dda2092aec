"""Losses over the M targets of a batch, each with its positive and n negatives (or the whole catalog)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sampled_softmax_from_logits(
    pos_logit: torch.Tensor,
    neg_logits: torch.Tensor,
    positive_ids: torch.Tensor,
    negative_ids: torch.Tensor,
    log_q: torch.Tensor,
) -> torch.Tensor:
    """Sampled softmax with logQ correction and accidental hits masked (SRT paper, Eq. 2).

    pos_logit (M,), neg_logits (M, n), both already divided by the temperature; ids (M,) and (M, n); log_q
    (n_items + 1,) the log sampling probability of every item. Both the positive's and the negatives' logits are
    corrected by − log q, so the sampled softmax is an unbiased estimate of the full one; a negative equal to the
    positive (an accidental hit) gets −inf.
    """
    pos_logit = pos_logit - log_q[positive_ids]
    neg_logits = neg_logits - log_q[negative_ids]
    neg_logits = neg_logits.masked_fill(negative_ids == positive_ids.unsqueeze(1), float("-inf"))
    logits = torch.cat([pos_logit.unsqueeze(-1), neg_logits], dim=-1)
    return (torch.logsumexp(logits, dim=-1) - pos_logit).mean()


def binary_cross_entropy_from_logits(
    pos_logit: torch.Tensor, neg_logits: torch.Tensor, positive_ids: torch.Tensor, negative_ids: torch.Tensor
) -> torch.Tensor:
    """Classic SASRec: −log σ(s⁺) − mean_j log(1 − σ(s⁻_j)) over uniformly sampled negatives, accidental hits left
    out. pos_logit (M,), neg_logits and negative_ids (M, n)."""
    real = (negative_ids != positive_ids.unsqueeze(1)).to(neg_logits.dtype)
    neg_term = (F.softplus(neg_logits) * real).sum(-1) / real.sum(-1).clamp(min=1)
    return (F.softplus(-pos_logit) + neg_term).mean()


def full_cross_entropy_loss(
    states: torch.Tensor, catalog: torch.Tensor, positive_ids: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Softmax over the whole catalog (SASRec-CE). states (M, d); catalog (n_items, d) vectors of items
    1..n_items; positive_ids (M,)."""
    return F.cross_entropy(torch.matmul(states, catalog.t()) / temperature, positive_ids - 1)
