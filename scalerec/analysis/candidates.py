"""The N,T law and its candidates, per metric direction. Eq. 4 ("risk": E − A/N^α − B/T^β for a metric that rises,
its mirror E + A/N^α + B/T^β for a loss) and candidates that each add one input and one parameter, or drop the
ceiling (power_nt, for metrics far below theirs). The backtest picks the one `predict` uses; one registry serves the
fit, the backtest and `predict`. laws.json keys are these roles; each entry's "law" names its form."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..metric_direction import HIGHER, LOWER
from .estimators import (
    DecreasingSaturatingLaw,
    Law,
    LossDepthLaw,
    LossLaw,
    LossNegativesLaw,
    LossRepeatLaw,
    LossScheduleLaw,
    PowerNTLaw,
    RiskDepthLaw,
    RiskLaw,
    RiskNegativesLaw,
    RiskRepeatLaw,
    RiskScheduleLaw,
    SaturatingLaw,
)

NT_LAW = {HIGHER: RiskLaw, LOWER: LossLaw}  # the "risk" role: the paper's Eq. 4 in the metric's direction
ENVELOPE_LAW = {HIGHER: SaturatingLaw, LOWER: DecreasingSaturatingLaw}  # the "saturating" role


@dataclass(frozen=True)
class Candidate:
    laws: dict[str, type[Law]]  # its form per metric direction
    column: str | None  # the checkpoint column of its third input (None: N and T only)
    key: str = ""  # what `predict` takes that input as (predict_nt's inputs) ...
    option: str = ""  # ... and the CLI option that gives it
    default: float | None = None  # the value `predict` assumes when not given (None: the input is required)


NT_CANDIDATES = {
    "risk_depth": Candidate({HIGHER: RiskDepthLaw, LOWER: LossDepthLaw}, "n_layers", "layers", "--layers"),
    "risk_repeat": Candidate(
        {HIGHER: RiskRepeatLaw, LOWER: LossRepeatLaw}, "dataset_interactions", "D", "--dataset-interactions"
    ),
    # a prediction is for a finished run, at the end of its schedule, unless asked otherwise
    "risk_schedule": Candidate(
        {HIGHER: RiskScheduleLaw, LOWER: LossScheduleLaw},
        "schedule_fraction",
        "schedule_fraction",
        "--schedule-fraction",
        1.0,
    ),
    "risk_negatives": Candidate(
        {HIGHER: RiskNegativesLaw, LOWER: LossNegativesLaw}, "n_negatives", "negatives", "--negatives"
    ),
    "power_nt": Candidate({HIGHER: PowerNTLaw, LOWER: PowerNTLaw}, None),
}
NT_LAWS = ("risk", *NT_CANDIDATES)  # every role an N,T law can have


def third_input(name: str, points: pd.DataFrame) -> np.ndarray:
    """The candidate's third input for checkpoint rows; negatives: full softmax (0 sampled) ranks the catalog."""
    values = points[NT_CANDIDATES[name].column].to_numpy(float)
    if name == "risk_negatives" and "n_items" in points:
        values = np.where(values > 0, values, points.n_items.to_numpy(float))
    return values


def nt_inputs(name: str, points: pd.DataFrame, n_column: str) -> tuple[np.ndarray, ...]:
    """x of N,T law `name` for checkpoint rows: (N, T), and its third input where it has one."""
    x = (points[n_column].to_numpy(float), points.seen_interactions.to_numpy(float))
    if name in NT_CANDIDATES and NT_CANDIDATES[name].column:
        x += (third_input(name, points),)
    return x


def informative(name: str, points: pd.DataFrame) -> bool:
    """Whether the points can tell a candidate from Eq. 4: several depths, data seen more than once, checkpoints
    before the end of their schedule (fit-laws --points all), or several numbers of negatives. power_nt always."""
    column = NT_CANDIDATES[name].column
    if column is None:
        return True
    if column not in points:  # e.g. an imported store without it
        return False
    if name == "risk_repeat":
        return bool((points.seen_interactions > 1.05 * points.dataset_interactions).any())
    values = third_input(name, points)
    if name == "risk_schedule":
        return bool(len(np.unique(values)) >= 2 and values.min() < 0.99)
    return len(np.unique(values)) >= 2
