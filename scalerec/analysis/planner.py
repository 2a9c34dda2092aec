"""Which runs to train next: the ones that most narrow the prediction the user needs, per hour (`scalerec plan`).

The N,T law fitted on the runs so far has parameters θ̂ whose uncertainty, linearised, is (JᵀJ/σ²)⁻¹: J the law's
Jacobian at the observed points, σ the scatter of those points about the law (its residual RMS, corrected for the
parameters fitted). A run yet to train adds its own rows of J, computed at θ̂ where it will end (a WSD run: at each
cooldown branch too). The prediction at the target x* then has variance g(x*)ᵀ (F + ΔF)⁻¹ g(x*), g the law's gradient
there. Greedily, the planner takes the run that removes the most of that variance per hour of its cost, until the
budget is spent: a c-optimal design (it serves one prediction, not the whole law), within (1 − 1/e) of the best
subset when the gains are submodular (they are not exactly, so: a heuristic with that flavour, measured in
benchmarks/planner.py against the grid's greedy cover). What it cannot know: runs that early stopping cuts short,
and a law whose form is wrong; the backtest (fit-laws) is where that shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ScalerecError
from .estimators import Law

Z90 = 1.6449  # two-sided 90%: the half-width is z·sd
MIN_REDUCTION = 0.01  # a run that removes less than this share of the prediction's variance is not proposed


@dataclass(frozen=True)
class Candidate:
    """A run that could be trained: where its annealed points will lie, (N, T) each, and what it costs."""

    run_id: str
    points: tuple[tuple[float, float], ...]
    hours: float
    label: str = ""


@dataclass
class Plan:
    """The chosen runs (in the order chosen), their hours, and the expected 90% half-width of the law's prediction
    at the target before and after them (linearised parameter uncertainty, in metric units)."""

    target: tuple[float, float]
    predicted: float
    chosen: list[Candidate] = field(default_factory=list)
    half_width_now: float = float("nan")
    half_width_after: float = float("nan")
    steps: list[dict] = field(default_factory=list)

    @property
    def hours(self) -> float:
        return float(sum(c.hours for c in self.chosen))

    def as_dict(self) -> dict:
        return {
            "target": {"N": self.target[0], "T": self.target[1]},
            "predicted": self.predicted,
            "run_ids": [c.run_id for c in self.chosen],
            "hours": self.hours,
            "half_width_90_now": self.half_width_now,
            "half_width_90_after": self.half_width_after,
            "steps": self.steps,
        }


def _rows(law: Law, points: np.ndarray) -> np.ndarray:
    """The law's Jacobian at `points` (k, 2), in the space its residuals are fitted in."""
    x = (points[:, 0], points[:, 1])
    jacobian = law._jacobian(x, law.theta())
    if law.log_residuals:  # a loss law fits log(loss): d log f / dθ
        jacobian = jacobian / law.predict(*x)[:, None]
    return jacobian


def residual_scale(law: Law, n: np.ndarray, t: np.ndarray, y: np.ndarray) -> float:
    """σ: the points' RMS scatter about the law, with the degrees of freedom its parameters took."""
    predicted = law.predict(n, t)
    residuals = np.log(y) - np.log(predicted) if law.log_residuals else y - predicted
    dof = max(len(y) - len(law.theta()), 1)
    return float(np.sqrt(np.sum(residuals**2) / dof))


def plan_for_target(
    law: Law,
    observed: np.ndarray,
    sigma: float,
    target: tuple[float, float],
    candidates: list[Candidate],
    budget_hours: float,
) -> Plan:
    """Greedy c-optimal choice of `candidates` within `budget_hours` for the prediction of `law` at `target`;
    `observed` (k, 2) holds the (N, T) of the points the law was fitted on, `sigma` their scatter about it. Stops
    when the budget is spent or no run would remove MIN_REDUCTION of the variance left."""
    if not np.isfinite(sigma) or sigma <= 0:
        raise ScalerecError("plan: the law fits its points exactly (no scatter): nothing tells how much a run adds")
    target_point = np.asarray([target], dtype=float)
    if not np.all(np.isfinite(target_point)) or (target_point < 1).any():
        raise ScalerecError(f"plan: the target N = {target[0]:.3g}, T = {target[1]:.3g} is not a run that can be")
    predicted = float(law.predict(*target_point.T)[0])
    if not np.isfinite(predicted):
        raise ScalerecError("plan: the law gives no number at the target")
    g = _rows(law, target_point)[0]
    fitted = _rows(law, np.asarray(observed, dtype=float))
    information = fitted.T @ fitted / sigma**2
    ridge = 1e-9 * np.trace(information) / len(g) + 1e-300  # unidentified directions stay (almost) uncertain
    information += ridge * np.eye(len(g))

    def variance(matrix: np.ndarray) -> float:
        return float(g @ np.linalg.solve(matrix, g))

    def half_width(var: float) -> float:
        sd = np.sqrt(max(var, 0.0))
        return float(abs(predicted) * Z90 * sd if law.log_residuals else Z90 * sd)

    plan = Plan(target=(float(target[0]), float(target[1])), predicted=predicted)
    plan.half_width_now = half_width(variance(information))
    rows = {c.run_id: _rows(law, np.asarray(c.points, dtype=float)) / sigma for c in candidates}
    remaining, spent, current = {c.run_id: c for c in candidates}, 0.0, variance(information)
    while True:
        best, best_gain, best_matrix = None, 0.0, None
        for run_id, candidate in remaining.items():
            if spent + candidate.hours > budget_hours or not np.all(np.isfinite(rows[run_id])):
                continue
            matrix = information + rows[run_id].T @ rows[run_id]
            reduction = current - variance(matrix)
            if reduction < MIN_REDUCTION * current:  # not worth an hour, however cheap
                continue
            gain = reduction / max(candidate.hours, 1e-9)
            if gain > best_gain:
                best, best_gain, best_matrix = run_id, gain, matrix
        if best is None:
            break
        chosen = remaining.pop(best)
        information, current = best_matrix, variance(best_matrix)
        spent += chosen.hours
        plan.chosen.append(chosen)
        plan.steps.append({"run_id": best, "hours": chosen.hours, "half_width_90": half_width(current)})
    plan.half_width_after = half_width(current)
    return plan


@dataclass(frozen=True)
class FittedRuns:
    """The N,T law of the runs so far and what the planner needs of them."""

    law: Law
    points: np.ndarray  # (k, 2): N, T of each annealed point the law was fitted on
    sigma: float
    flops_per_param_target: float  # k of C = k·N·T
    targets_per_interaction_epoch: float  # T of a run ≈ this × D × epochs


def fit_runs(checkpoints, metric: str, direction: str, huber_delta: float = 0.01) -> FittedRuns:
    """Fit the N,T law (Eq. 4, or its loss mirror) on the annealed points of `checkpoints` (finished runs' last
    rows and WSD cooldown branches), as fit-laws does with `--points final`, without bootstrap."""
    from .estimators import LossLaw, RiskLaw
    from .fit_options import law_runs

    rows, _ = law_runs(checkpoints)
    if metric not in rows.columns:
        raise ScalerecError(f"plan: the run store has no column {metric!r}")
    final = rows[rows.is_final & np.isfinite(rows[metric].astype(float))]
    law = (LossLaw if direction == "lower" else RiskLaw)(huber_delta)
    if len(final) < len(law.param_specs) + 2:
        raise ScalerecError(
            f"plan: {len(final)} finished run(s) with {metric}: the N,T law needs at least "
            f"{len(law.param_specs) + 2} before it can say which runs help (grid --budget-hours covers the range)"
        )
    n, t = final.non_embedding_params.to_numpy(float), final.seen_interactions.to_numpy(float)
    y = final[metric].to_numpy(float)
    law.fit((n, t), y)
    if law.failures():
        raise ScalerecError(
            f"plan: the N,T law is not determined by the runs so far ({law.failures()[0]}); train more of the "
            "grid first (grid --budget-hours covers the range)"
        )
    epochs = final.epoch.to_numpy(float)
    return FittedRuns(
        law,
        np.column_stack([n, t]),
        residual_scale(law, n, t, y),
        float(np.median(final.train_flops.to_numpy(float) / (n * t))),
        float(np.median(t / (final.dataset_interactions.to_numpy(float) * epochs))),
    )
