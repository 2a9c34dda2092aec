"""The laws, as pure numpy functions (DESIGN §6). Natural logs throughout."""

from __future__ import annotations

import numpy as np


def saturating(flops: np.ndarray, a: float, b: float, c: float, d: float) -> np.ndarray:
    """Paper Eq. 3: m(C) = a / (1 + exp(−b (ln C − c))) − d; asymptote a − d. Takes C (the midpoint c is a ln C)."""
    return a / (1.0 + np.exp(-b * (np.log(np.asarray(flops, dtype=float)) - c))) - d


def linear(flops: np.ndarray, p: float, q: float) -> np.ndarray:
    """m(C) = p + q ln C. Takes C."""
    return p + q * np.log(np.asarray(flops, dtype=float))


def risk(n: np.ndarray, t: np.ndarray, e: float, a: float, alpha: float, b: float, beta: float) -> np.ndarray:
    """Paper Eq. 4: m(N, T) = E − A / N^α − B / T^β (a metric, higher is better)."""
    return e - a / np.asarray(n, dtype=float) ** alpha - b / np.asarray(t, dtype=float) ** beta


def loss(n: np.ndarray, t: np.ndarray, e: float, a: float, alpha: float, b: float, beta: float) -> np.ndarray:
    """The mirror of Eq. 4 for a loss (lower is better): L(N, T) = E + A / N^α + B / T^β."""
    return e + a / np.asarray(n, dtype=float) ** alpha + b / np.asarray(t, dtype=float) ** beta


def loss_n(n: np.ndarray, e: float, n0: float, alpha: float) -> np.ndarray:
    """The LSRM paper's law of loss against parameters: L(N) = E + (N0 / N)^α."""
    return e + (n0 / np.asarray(n, dtype=float)) ** alpha


def power(c: np.ndarray, k: float, exponent: float) -> np.ndarray:
    """y = k · C^exponent (N*(C), T*(C))."""
    return k * np.asarray(c, dtype=float) ** exponent


def risk_optimum(
    c: np.ndarray, k_flops: float, e: float, a: float, alpha: float, b: float, beta: float
) -> tuple[np.ndarray, np.ndarray]:
    """(N*, T*) maximising the risk law under the budget C = k·N·T (closed form).

    Setting d/dN [A N^−α + B (kN/C)^β] = 0 gives N* = (αA / (βB))^(1/(α+β)) · (C/k)^(β/(α+β)), T* = C / (k N*).
    """
    c = np.asarray(c, dtype=float)
    n_opt = (alpha * a / (beta * b)) ** (1.0 / (alpha + beta)) * (c / k_flops) ** (beta / (alpha + beta))
    return n_opt, c / (k_flops * n_opt)


def diminishing_returns_ln_c(b: float, c: float) -> float:
    """ln C past which an e-fold more compute gains less than half the steepest gain of the saturating law.

    The logistic's slope σ(1−σ) falls to half its maximum (1/4 → 1/8) at σ = (2+√2)/4, i.e. ln C = c + ln(3+2√2)/b.
    """
    return c + np.log(3.0 + 2.0 * np.sqrt(2.0)) / b


# Candidate laws of the form Eq. 4 + G · covariate(z), one covariate each: the laws below and their estimators'
# Jacobian columns (∂m/∂G) both read these, so the two cannot drift apart.
def depth_covariate(layers: np.ndarray) -> np.ndarray:
    return -np.log(np.asarray(layers, dtype=float))


def schedule_covariate(fraction: np.ndarray) -> np.ndarray:
    return -(1.0 - np.asarray(fraction, dtype=float))


def negatives_covariate(k: np.ndarray) -> np.ndarray:
    return np.log(np.asarray(k, dtype=float))


def risk_depth(
    n: np.ndarray, t: np.ndarray, layers: np.ndarray, e: float, a: float, alpha: float, b: float, beta: float, g: float
) -> np.ndarray:
    """Eq. 4 with a shape term: m = E − A/N^α − B/T^β − G ln L. At fixed N, performance depends on the shape
    (Kaplan et al. 2020); in published SRT grids the deepest models fall below shallower ones of fewer parameters."""
    return risk(n, t, e, a, alpha, b, beta) + g * depth_covariate(layers)


def risk_schedule(
    n: np.ndarray,
    t: np.ndarray,
    fraction: np.ndarray,
    e: float,
    a: float,
    alpha: float,
    b: float,
    beta: float,
    s: float,
) -> np.ndarray:
    """Eq. 4 with a schedule-position term: m = E − A/N^α − B/T^β − S (1 − f), f the fraction of the learning-rate
    schedule done. A checkpoint before a one-cycle schedule has annealed sits below an annealed run of the same N
    and T (many checkpoints of published SRT grids do); at f = 1 the law is Eq. 4."""
    return risk(n, t, e, a, alpha, b, beta) + s * schedule_covariate(fraction)


def risk_negatives(
    n: np.ndarray, t: np.ndarray, k: np.ndarray, e: float, a: float, alpha: float, b: float, beta: float, g: float
) -> np.ndarray:
    """Eq. 4 with the sampled negatives as a covariate: m = E − A/N^α − B/T^β + G ln K (SRT-X grids: more
    negatives per target rank better at the same N and T; K = the catalog for full softmax)."""
    return risk(n, t, e, a, alpha, b, beta) + g * negatives_covariate(k)


def effective_data(t: np.ndarray, d: np.ndarray, r: float) -> np.ndarray:
    """Data-constrained scaling (Muennighoff et al. 2023): T seen over D unique interactions is worth
    min(T, D) + D·R·(1 − exp(−(T/D − 1)/R)) fresh ones; repeats decay with constant R (R → ∞: every repeat counts)."""
    t, d = np.asarray(t, dtype=float), np.asarray(d, dtype=float)
    repeats = np.maximum(t / d - 1.0, 0.0)
    return np.minimum(t, d) + d * r * (1.0 - np.exp(-repeats / r))


def risk_repeat(
    n: np.ndarray, t: np.ndarray, d: np.ndarray, e: float, a: float, alpha: float, b: float, beta: float, r: float
) -> np.ndarray:
    """Eq. 4 on repetition-aware data: m = E − A/N^α − B/T_eff^β, T_eff = effective_data(T, D, R)."""
    return risk(n, effective_data(t, d, r), e, a, alpha, b, beta)
