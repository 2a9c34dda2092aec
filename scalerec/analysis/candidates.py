"""The N,T law candidates beside the paper's Eq. 4: each adds one input and one parameter (estimators.py). The
backtest picks the N,T law `predict` uses among Eq. 4 ("risk") and these; one registry serves the fit, the backtest
and `predict`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .estimators import Law, RiskDepthLaw, RiskNegativesLaw, RiskRepeatLaw, RiskScheduleLaw


@dataclass(frozen=True)
class Candidate:
    law: type[Law]
    column: str                   # the checkpoint column of its third input
    key: str                      # what `predict` takes it as (predict_nt's inputs) ...
    option: str                   # ... and the CLI option that gives it
    default: float | None = None  # the value `predict` assumes when not given (None: the input is required)


NT_CANDIDATES = {
    "risk_depth": Candidate(RiskDepthLaw, "n_layers", "layers", "--layers"),
    "risk_repeat": Candidate(RiskRepeatLaw, "dataset_interactions", "D", "--dataset-interactions"),
    # a prediction is for a finished run, at the end of its schedule, unless asked otherwise
    "risk_schedule": Candidate(RiskScheduleLaw, "schedule_fraction", "schedule_fraction", "--schedule-fraction", 1.0),
    "risk_negatives": Candidate(RiskNegativesLaw, "n_negatives", "negatives", "--negatives"),
}


def third_input(name: str, points: pd.DataFrame) -> np.ndarray:
    """The candidate's third input for checkpoint rows; negatives: full softmax (0 sampled) ranks the catalog."""
    values = points[NT_CANDIDATES[name].column].to_numpy(float)
    if name == "risk_negatives" and "n_items" in points:
        values = np.where(values > 0, values, points.n_items.to_numpy(float))
    return values


def informative(name: str, points: pd.DataFrame) -> bool:
    """Whether the points can tell a candidate from Eq. 4: several depths, data seen more than once, checkpoints
    before the end of their schedule (fit-laws --points all), or several numbers of negatives."""
    if NT_CANDIDATES[name].column not in points:  # e.g. an imported store without it
        return False
    if name == "risk_repeat":
        return bool((points.seen_interactions > 1.05 * points.dataset_interactions).any())
    values = third_input(name, points)
    if name == "risk_schedule":
        return bool(len(np.unique(values)) >= 2 and values.min() < 0.99)
    return len(np.unique(values)) >= 2
