"""Robust fitting (DESIGN §6): Huber loss, positive parameters in log space, bounded L-BFGS-B from a grid of
starts, the best start kept; uncertainty by a bootstrap over whole runs; degenerate fits flagged, never hidden."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

LOG_BOUND = 50.0  # |log| of a positive parameter: e^±50 is "at a bound" for any sensible law
MAX_DESCENTS = 4  # L-BFGS-B runs per fit, from the best-scoring starts of the grid


@dataclass(frozen=True)
class Param:
    """A parameter of a law: `positive` ones are optimised as their log; `bounds` are in natural units."""

    name: str
    positive: bool = True
    bounds: tuple[float, float] | None = None

    def to_internal(self, value: float) -> float:
        return float(np.log(value)) if self.positive else float(value)

    def to_natural(self, value: float) -> float:
        return float(np.exp(value)) if self.positive else float(value)

    def internal_bounds(self) -> tuple[float, float]:
        if self.bounds is not None:
            low, high = self.bounds
            return (self.to_internal(low), self.to_internal(high))
        return (-LOG_BOUND, LOG_BOUND) if self.positive else (-1e6, 1e6)


def huber(residuals: np.ndarray, delta: float) -> np.ndarray:
    absolute = np.abs(residuals)
    return np.where(absolute <= delta, 0.5 * residuals**2, delta * (absolute - 0.5 * delta))


def fit_huber(
    predict: Callable[[np.ndarray], np.ndarray],
    jacobian: Callable[[np.ndarray], np.ndarray],
    y: np.ndarray,
    params: Sequence[Param],
    starts: Sequence[Sequence[float]],
    delta: float,
) -> tuple[np.ndarray, float, np.ndarray]:
    """Minimise Σ huber(y − predict(θ)) from every start (natural units); return (best θ, its loss, which parameters
    the optimiser moved from that start: a parameter that never left its start was not determined by the data).

    `jacobian(θ)` is ∂predict/∂θ, (points, params): with it L-BFGS-B gets exact gradients (the chain rule through the
    log transform multiplies a positive parameter's column by the parameter) instead of finite differences.
    """
    bounds = [p.internal_bounds() for p in params]
    positive = np.array([p.positive for p in params])
    # Scale the objective to O(1) per point: raw Huber sums of small metric residuals are ~1e-4, where L-BFGS-B's
    # stopping rules (an absolute floor on the change in f, a fixed gradient tolerance) fire before it has moved.
    scale = 1.0 / (delta * delta * len(y))

    def objective(internal: np.ndarray) -> tuple[float, np.ndarray]:
        with np.errstate(all="ignore"):
            theta = np.where(positive, np.exp(internal), internal)  # Param.to_natural, for all at once
            residual = y - predict(theta)
            value = scale * float(huber(residual, delta).sum())
            # d huber / d residual = clip(residual, ±δ); d residual / d θ = −jacobian
            gradient = -scale * (np.clip(residual, -delta, delta) @ jacobian(theta))
            gradient = np.where(positive, gradient * theta, gradient)
        if not (np.isfinite(value) and np.isfinite(gradient).all()):
            return 1e300, np.zeros(len(params))
        return value, gradient

    # Score the whole grid of starts (one evaluation each), then descend from the most promising few.
    internals = [np.clip([p.to_internal(v) for p, v in zip(params, start)], *np.array(bounds).T) for start in starts]
    ranked = sorted(internals, key=lambda internal: objective(internal)[0])[:MAX_DESCENTS]
    best, best_loss, moved = None, np.inf, np.zeros(len(params), dtype=bool)
    for internal in ranked:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = minimize(objective, internal, jac=True, method="L-BFGS-B", bounds=bounds, options={"maxiter": 500})
        if result.fun < best_loss:
            best, best_loss = result.x, float(result.fun) / scale
            moved = ~np.isclose(result.x, internal, rtol=1e-7, atol=1e-9)
    return np.array([p.to_natural(v) for p, v in zip(params, best)]), best_loss, moved


def start_grid(*axes: Sequence[float]) -> list[list[float]]:
    return [list(s) for s in itertools.product(*axes)]


def fit_quality(y: np.ndarray, predicted: np.ndarray, n_params: int) -> dict[str, float]:
    """RMSE, R², AIC and BIC (Gaussian likelihood of the residuals)."""
    n = len(y)
    rss = float(np.sum((y - predicted) ** 2))
    tss = float(np.sum((y - y.mean()) ** 2))
    log_term = n * np.log(max(rss, 1e-300) / n)
    return {
        "rmse": float(np.sqrt(rss / n)),
        "r2": 1.0 - rss / tss if tss > 0 else float("nan"),
        "aic": float(log_term + 2 * n_params),
        "bic": float(log_term + n_params * np.log(n)),
        "n_points": n,
    }


def at_bound_flags(params: Sequence[Param], values: np.ndarray) -> list[str]:
    flags = []
    for p, v in zip(params, values):
        low, high = p.internal_bounds()
        internal = p.to_internal(v) if (v > 0 or not p.positive) else -np.inf
        # An optimum pressed against its bound: within 1e-4 of the range of a log-scaled parameter (an exponent
        # at 2.998 of 3), 1e-6 of a linear one (E = 1e-5 of a loss bounded to [0, 1000], not a true floor of 0.02).
        slack = (1e-4 if p.positive else 1e-6) * (high - low) if p.bounds is not None else 1e-6
        if internal <= low + slack or internal >= high - slack:
            flags.append(f"{p.name} at its bound ({v:.3g})")
    return flags


def bootstrap_runs(run_ids: Sequence[str], n_resamples: int, seed: int) -> list[np.ndarray]:
    """Resamples of whole trajectories, as indexes into run_ids: each draws as many trajectories as there are, with
    replacement, and takes every run of each. A trajectory is a run with its cooldown branches (`<run>@<fraction>`,
    fit_options.cooldowns_as_runs): they share the stable phase, so their errors are not independent and they are
    drawn together. Without branches every run is its own trajectory and the draws are those of resampling runs."""
    rng = np.random.default_rng(seed)
    trajectories: dict[str, list[int]] = {}
    for i, run_id in enumerate(run_ids):
        trajectories.setdefault(str(run_id).split("@")[0], []).append(i)
    members = [np.array(rows) for rows in trajectories.values()]
    picks = (rng.choice(len(members), size=len(members)) for _ in range(n_resamples))
    return [np.concatenate([members[t] for t in pick]) for pick in picks]


def interval(samples: np.ndarray, level: float = 0.90) -> tuple[float, float]:
    """Central `level` percentile interval of bootstrap samples (NaNs from failed refits ignored)."""
    finite = np.asarray(samples, dtype=float)
    finite = finite[np.isfinite(finite)]
    if len(finite) == 0:
        return (float("nan"), float("nan"))
    tail = (1 - level) / 2 * 100
    return (float(np.percentile(finite, tail)), float(np.percentile(finite, 100 - tail)))
