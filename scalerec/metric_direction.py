"""Which way a metric improves: higher (NDCG, HIT, MRR, recall, accuracy) or lower (a loss, perplexity, bits per
byte, an error rate). Every law, envelope and answer of the analysis reads it from here."""

from __future__ import annotations

import re

import numpy as np

from .errors import ScalerecError
from .store.schema import METRIC_PATTERN

HIGHER, LOWER = "higher", "lower"
# Whole words of a metric's name (split on _, -, /, . and digits) that say which way it improves.
LOWER_WORDS = frozenset(
    {
        "loss",
        "losses",
        "nll",
        "perplexity",
        "ppl",
        "bpb",
        "bpc",
        "bits",
        "error",
        "err",
        "errors",
        "mse",
        "rmse",
        "mae",
        "mape",
        "logloss",
        "crossentropy",
        "ce",
        "wer",
        "cer",
    }
)
HIGHER_WORDS = frozenset(
    {
        "ndcg",
        "hit",
        "hr",
        "mrr",
        "recall",
        "precision",
        "accuracy",
        "acc",
        "auc",
        "map",
        "f1",
        "score",
        "reward",
        "bleu",
        "rouge",
        "coverage",
    }
)


def infer_direction(metric: str) -> str | None:
    """HIGHER or LOWER from the metric's name, or None when its words do not say (or say both)."""
    words = set(re.split(r"[^a-z]+", metric.lower())) - {""}
    lower, higher = bool(words & LOWER_WORDS), bool(words & HIGHER_WORDS)
    if lower == higher:
        return None
    return LOWER if lower else HIGHER


def resolve_direction(metric: str, given: str | None = None, recorded: str | None = None) -> str:
    """The direction of `metric`: what the user gave (--lower-is-better / --higher-is-better), else what its name
    says, else what an import recorded for it; an error naming the flags when none of these knows."""
    for value in (given, infer_direction(metric), recorded):
        if value is not None:
            if value not in (HIGHER, LOWER):
                raise ScalerecError(f"metric direction must be {HIGHER!r} or {LOWER!r}, not {value!r}")
            return value
    raise ScalerecError(
        f"cannot tell whether {metric!r} is better higher or lower from its name: give "
        "--lower-is-better or --higher-is-better"
    )


def sign(direction: str) -> float:
    """+1 where higher is better, −1 where lower is: `sign · metric` is always to be maximised."""
    return 1.0 if direction == HIGHER else -1.0


def metric_domain(metric: str, direction: str = HIGHER) -> tuple[float, float]:
    """The values a metric can take: ranking metrics (NDCG, HIT, MRR) lie in [0, 1]; a lower-is-better metric (a
    loss, perplexity, an error rate) in [0, inf); any other in (−inf, inf)."""
    if METRIC_PATTERN.match(metric):
        return 0.0, 1.0
    return (0.0, np.inf) if direction == LOWER or metric.endswith("loss") else (-np.inf, np.inf)
