"""The laws as small estimators (scikit-learn style): fit(...) returns self, fitted attributes end in `_`,
predict(...), to_dict() / from_dict(). Uncertainty comes from bootstrap refits stored with the fit."""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import nnls

from . import laws
from .fit import Param, at_bound_flags, fit_huber, fit_quality, interval, start_grid

EXPONENT_FLOOR = 0.02  # below this an exponent is "≈ 0": the law has collapsed into a constant
# Flags (Law.flags) that mean the fit determined nothing: a law carrying one is reported as failed, with no number.
FAILURE_MARKS = ("at its bound", "outside its own 90% interval", "did not leave its starting value", "is ≈ 0")


class Law:
    """Shared machinery; subclasses set `name`, `param_specs`, `_function` and `_starts`. Fitted attributes end in
    an underscore (scikit-learn's convention): `params_`, `quality_`, `x_range_`, `bootstrap_`."""

    name: str = ""
    param_specs: tuple[Param, ...] = ()  # names, bounds and signs of the parameters; the fitted values: params_
    exponents: tuple[str, ...] = ()
    log_residuals = False  # loss laws: residuals of log(loss), so every scale of loss counts alike (Chinchilla)
    exact_start = False  # the start is the least-squares solution itself: not moving from it is no failure

    def __init__(self, huber_delta: float = 0.01, domain: tuple[float, float] | None = None) -> None:
        self.huber_delta = huber_delta
        self.domain = domain  # the values the metric can take, where the law's flags judge its asymptote

    # subclass hooks -----------------------------------------------------------------------------------------
    def _function(self, x: tuple[np.ndarray, ...], theta: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _jacobian(self, x: tuple[np.ndarray, ...], theta: np.ndarray) -> np.ndarray:
        """∂ prediction / ∂ θ, shape (points, params)."""
        raise NotImplementedError

    def _starts(self, x: tuple[np.ndarray, ...], y: np.ndarray) -> list[list[float]]:
        raise NotImplementedError

    # estimator API ------------------------------------------------------------------------------------------
    def fit(self, x: tuple[np.ndarray, ...], y: np.ndarray, starts: list[list[float]] | None = None) -> Law:
        x, y = tuple(np.asarray(v, dtype=float) for v in x), np.asarray(y, dtype=float)
        if len(y) < len(self.param_specs) + 1:
            raise ValueError(f"{self.name}: {len(y)} points cannot fit {len(self.param_specs)} parameters")
        predict, jacobian, target = (lambda t: self._function(x, t)), (lambda t: self._jacobian(x, t)), y
        if self.log_residuals:  # fit log(law) to log(y): d log f / dθ = (df/dθ) / f
            if (y <= 0).any():
                raise ValueError(f"{self.name}: a law fitted on log residuals needs positive metric values")
            predict, jacobian, target = (
                (lambda t: np.log(self._function(x, t))),
                (lambda t: self._jacobian(x, t) / self._function(x, t)[:, None]),
                np.log(y),
            )
        theta, _, self.moved_ = fit_huber(
            predict, jacobian, target, self.param_specs, starts or self._starts(x, y), self.huber_delta
        )
        self.params_ = dict(zip((p.name for p in self.param_specs), map(float, theta)))
        self.quality_ = fit_quality(y, self._function(x, theta), len(self.param_specs))
        self.x_range_ = [[float(v.min()), float(v.max())] for v in x]
        self.bootstrap_ = np.empty((0, len(self.param_specs)))
        return self

    def with_bootstrap(self, thetas: list[np.ndarray]) -> Law:
        """Record the parameters of refits on resamples (NaN rows: a resample that could not be fitted); the 90%
        intervals come from them. Returns self."""
        self.bootstrap_ = np.asarray(thetas, dtype=float).reshape(-1, len(self.param_specs))
        return self

    def theta(self) -> np.ndarray:
        return np.array([self.params_[p.name] for p in self.param_specs])

    def predict(self, *x: np.ndarray) -> np.ndarray:
        return self._function(tuple(np.asarray(v, dtype=float) for v in x), self.theta())

    def predict_interval(self, *x: np.ndarray, level: float = 0.90) -> tuple[np.ndarray, np.ndarray]:
        """Percentile interval of the prediction over the bootstrap refits (NaN when there are none)."""
        if len(self.bootstrap_) == 0:
            nan = np.full(np.broadcast(*x).shape, np.nan)
            return nan, nan
        with np.errstate(all="ignore"):
            samples = np.array([self._function(tuple(np.asarray(v, float) for v in x), t) for t in self.bootstrap_])
        bounds = np.array([interval(col, level) for col in samples.reshape(len(samples), -1).T])
        shape = np.broadcast(*x).shape
        return bounds[:, 0].reshape(shape), bounds[:, 1].reshape(shape)

    def intervals(self, level: float = 0.90) -> dict[str, tuple[float, float]]:
        return {
            p.name: interval(self.bootstrap_[:, i], level) if len(self.bootstrap_) else (np.nan, np.nan)
            for i, p in enumerate(self.param_specs)
        }

    def failures(self) -> list[str]:
        """Reasons the fit determined nothing (a subset of flags()): a parameter at a bound, an exponent outside
        its own bootstrap interval, or an optimiser that never left its start. Such a law gives no number."""
        return [flag for flag in self.flags() if any(mark in flag for mark in FAILURE_MARKS)]

    def flags(self) -> list[str]:
        """Reasons not to trust this fit; empty when none was found."""
        out = at_bound_flags(self.param_specs, self.theta())
        moved = getattr(self, "moved_", None)  # not kept in laws.json: judged when the fit is made
        if moved is not None and not self.exact_start:
            if not moved.any():
                out.append("the optimiser did not leave its starting values: the data did not determine the fit")
            else:
                out += [
                    f"exponent {p.name} = {self.params_[p.name]:.3g} did not leave its starting value: not "
                    "determined by the data"
                    for p, m in zip(self.param_specs, moved)
                    if p.name in self.exponents and not m
                ]
        r2 = self.quality_.get("r2", float("nan"))
        if np.isfinite(r2) and r2 < 0.5:
            out.append(f"explains only {max(r2, 0):.0%} of the variance (R² = {r2:.2f})")
        out += [
            f"exponent {e} = {self.params_[e]:.3g} is ≈ 0" for e in self.exponents if self.params_[e] < EXPONENT_FLOOR
        ]
        # Coefficients (A, B, k) swing with their exponents, so only the exponents' spread is judged.
        for name, (low, high) in self.intervals().items():
            if name not in self.exponents or not np.isfinite(low):
                continue
            if low > 0 and high / low > 10:
                out.append(f"90% interval of {name} spans [{low:.3g}, {high:.3g}]: poorly determined")
            # Refits start from this optimum; landing elsewhere means it is one of several, not the best supported.
            slack = 1e-6 * max(abs(low), abs(high))  # percentiles of identical refits differ in the last bits
            if not low - slack <= self.params_[name] <= high + slack:
                out.append(
                    f"exponent {name} = {self.params_[name]:.3g} lies outside its own 90% interval "
                    f"[{low:.3g}, {high:.3g}]: the fit is not stable under resampling"
                )
        return out

    def to_dict(self) -> dict[str, Any]:
        """The laws.json entry. A failed fit (failures()) is written with `status` "failed", its reasons in `why`
        and null parameters: its numbers are kept only under `unreliable_params`, for `predict --law` to force."""
        entry = {
            "law": self.name,
            "status": "ok",
            "params": self.params_,
            "intervals_90": {k: list(v) for k, v in self.intervals().items()},
            "quality": self.quality_,
            "flags": self.flags(),
            "x_range": self.x_range_,
            "huber_delta": self.huber_delta,
            "bootstrap": self.bootstrap_.tolist(),
        }
        failures = self.failures()
        if failures:
            entry |= {
                "status": "failed",
                "why": failures,
                "params": {k: None for k in self.params_},
                "unreliable_params": self.params_,
            }
        return entry

    @classmethod
    def from_dict(cls, data: dict[str, Any], force: bool = False) -> Law:
        """The law of a laws.json entry; a failed one has NaN parameters unless `force` (its unreliable numbers)."""
        law = cls(data.get("huber_delta", 0.01))
        params = data["unreliable_params"] if force and data.get("unreliable_params") else data["params"]
        law.params_ = {p.name: np.nan if (v := params[p.name]) is None else float(v) for p in cls.param_specs}
        law.quality_, law.x_range_ = data.get("quality", {}), data.get("x_range", [])
        law.bootstrap_ = np.asarray(data.get("bootstrap") or np.empty((0, len(cls.param_specs))), dtype=float)
        return law


class SaturatingLaw(Law):
    """NDCG(C) = a / (1 + exp(−b (ln C − c))) − d (paper Eq. 3); x = (C,)."""

    name = "saturating"
    param_specs = (Param("a"), Param("b", bounds=(1e-4, 20.0)), Param("c", positive=False), Param("d", positive=False))
    exponents = ("b",)

    def _function(self, x, theta):
        return laws.saturating(x[0], *theta)

    def _jacobian(self, x, theta):
        a, b, c, _ = theta
        ln_c = np.log(x[0])
        s = 1.0 / (1.0 + np.exp(-b * (ln_c - c)))
        slope = a * s * (1 - s)
        return np.column_stack([s, slope * (ln_c - c), -slope * b, -np.ones_like(s)])

    def _starts(self, x, y):
        span, ln_c = max(float(np.ptp(y)), 1e-3), np.log(x[0])
        starts = []
        for a, b, c in start_grid((span, 2 * span, 4 * span), (0.1, 0.3, 1.0), np.quantile(ln_c, [0.25, 0.5, 0.75])):
            d = float(np.mean(a / (1 + np.exp(-b * (ln_c - c)))) - np.mean(y))
            starts.append([a, b, c, d])
        return starts

    asymptote_label = "a − d"
    sign_of_a = 1.0  # asymptote = sign_of_a · (a − d)

    @property
    def asymptote_(self) -> float:
        return self.params_["a"] - self.params_["d"]

    def flags(self) -> list[str]:
        out = super().flags()
        low, high = self.domain or (0.0, 1.0)
        if not low <= self.asymptote_ <= high:
            out.append(f"asymptote {self.asymptote_label} = {self.asymptote_:.3g} is outside [{low:g}, {high:g}]")
        return out


class DecreasingSaturatingLaw(SaturatingLaw):
    """A lower-is-better metric's envelope: m(C) = d − a / (1 + exp(−b (ln C − c))), Eq. 3 mirrored; falls from d
    to its asymptote d − a. x = (C,)."""

    name = "saturating_decreasing"
    asymptote_label = "d − a"
    sign_of_a = -1.0

    def _function(self, x, theta):
        return -super()._function(x, theta)

    def _jacobian(self, x, theta):
        return -super()._jacobian(x, theta)

    def _starts(self, x, y):
        return super()._starts(x, -np.asarray(y))

    @property
    def asymptote_(self) -> float:
        return self.params_["d"] - self.params_["a"]


class LinearLaw(Law):
    """NDCG(C) = p + q ln C; x = (C,)."""

    name = "linear"
    param_specs = (Param("p", positive=False), Param("q", positive=False))

    def _function(self, x, theta):
        return laws.linear(x[0], *theta)

    def _jacobian(self, x, theta):
        return np.column_stack([np.ones_like(x[0]), np.log(x[0])])

    def _starts(self, x, y):
        q, p = np.polyfit(np.log(x[0]), y, 1)
        return [[p, q]]

    exact_start = True


class _TwoTermLaw(Law):
    """E + sign · (A / N^α + B / T^β) with A, B, α, β ≥ 0; x = (N, T). `sign` is −1 for a metric that rises to E,
    +1 for a loss that falls to E; the subclasses differ only in it and in where E starts."""

    exponents = ("alpha", "beta")
    sign = -1.0

    def _e_starts(self, y: np.ndarray) -> tuple[float, ...]:
        raise NotImplementedError

    def _jacobian(self, x, theta):
        _, a, alpha, b, beta = theta
        n_term, t_term = x[0] ** -alpha, x[1] ** -beta
        s = self.sign
        return np.column_stack(
            [
                np.ones_like(n_term),
                s * n_term,
                -s * a * n_term * np.log(x[0]),
                s * t_term,
                -s * b * t_term * np.log(x[1]),
            ]
        )

    def _starts(self, x, y):
        starts = []
        for alpha, beta, e in start_grid((0.1, 0.3, 0.7), (0.1, 0.3, 0.7), self._e_starts(y)):
            # Given E and the exponents the law is linear in A and B: solve that part exactly (non-negative).
            design = np.column_stack([x[0] ** -alpha, x[1] ** -beta])
            (a, b), _ = nnls(design, self.sign * (y - e))
            starts.append([e, max(a, 1e-8), alpha, max(b, 1e-8), beta])
        return starts


class RiskLaw(_TwoTermLaw):
    """NDCG(N, T) = E − A / N^α − B / T^β (paper Eq. 4), A, B, α, β ≥ 0; x = (N, T)."""

    name = "risk"
    param_specs = (
        Param("E", positive=False, bounds=(0.0, 1.0)),
        Param("A"),
        Param("alpha", bounds=(1e-3, 3.0)),
        Param("B"),
        Param("beta", bounds=(1e-3, 3.0)),
    )
    # E is the metric reached with infinite N and T: for NDCG/HIT/MRR it lies in [0, 1]. Left free, small grids
    # push it far outside and the exponents to ≈ 0 (a degenerate optimum that fits yet cannot extrapolate).

    def _function(self, x, theta):
        return laws.risk(x[0], x[1], *theta)

    def _e_starts(self, y):
        return tuple(float(y.max()) + lift for lift in (0.01, 0.05, 0.2))


class _CovariateLaw(Law):
    """Mixed in before an N,T law (RiskLaw or LossLaw): that law plus a coefficient (the last parameter, of either
    sign) times a covariate of a third input z (laws.py); x = (N, T, z). A subclass sets `covariate`."""

    def _function(self, x, theta):
        return super()._function(x[:2], theta[:5]) + theta[5] * self.covariate(x[2])

    def _jacobian(self, x, theta):
        return np.column_stack([super()._jacobian(x[:2], theta[:5]), self.covariate(x[2])])

    def _starts(self, x, y):
        return [start + [g] for start in super()._starts(x, y) for g in (0.0, 0.02)]


class _RepeatLaw(Law):
    """Mixed in before an N,T law: that law on repetition-aware data T_eff = effective_data(T, D, R)
    (laws.effective_data, Muennighoff et al. 2023); x = (N, T, D)."""

    def _function(self, x, theta):
        return super()._function((x[0], laws.effective_data(x[1], x[2], theta[5])), theta[:5])

    def _jacobian(self, x, theta):
        *base, r = theta
        t_eff = laws.effective_data(x[1], x[2], r)
        columns = super()._jacobian((x[0], t_eff), np.asarray(base))
        _, _, _, b, beta = base
        u = np.maximum(x[1] / x[2] - 1.0, 0.0)
        decay = np.exp(-u / r)
        d_t_eff_d_r = x[2] * ((1.0 - decay) - (u / r) * decay)
        # ∂/∂R of sign · B · T_eff^−β
        return np.column_stack([columns, -self.sign * b * beta * t_eff ** (-beta - 1.0) * d_t_eff_d_r])

    def _starts(self, x, y):
        return [start + [r] for start in super()._starts(x[:2], y) for r in (2.0, 15.0)]


COEFFICIENT = Param("G", positive=False, bounds=(-1.0, 1.0))
REPEAT_DECAY = Param("R", bounds=(0.1, 1e3))


class RiskDepthLaw(_CovariateLaw, RiskLaw):
    """Candidate: E − A/N^α − B/T^β − G ln L (laws.risk_depth); x = (N, T, layers)."""

    name = "risk_depth"
    param_specs = RiskLaw.param_specs + (COEFFICIENT,)
    covariate = staticmethod(laws.depth_covariate)


class RiskScheduleLaw(_CovariateLaw, RiskLaw):
    """Candidate: E − A/N^α − B/T^β − S (1 − f) (laws.risk_schedule); x = (N, T, schedule fraction f)."""

    name = "risk_schedule"
    param_specs = RiskLaw.param_specs + (Param("S", positive=False, bounds=(-1.0, 1.0)),)
    covariate = staticmethod(laws.schedule_covariate)


class RiskNegativesLaw(_CovariateLaw, RiskLaw):
    """Candidate: E − A/N^α − B/T^β + G ln K (laws.risk_negatives); x = (N, T, negatives per target K)."""

    name = "risk_negatives"
    param_specs = RiskLaw.param_specs + (COEFFICIENT,)
    covariate = staticmethod(laws.negatives_covariate)


class RiskRepeatLaw(_RepeatLaw, RiskLaw):
    """Candidate: Eq. 4 on repetition-aware data, E − A/N^α − B/T_eff^β (laws.risk_repeat); x = (N, T, D)."""

    name = "risk_repeat"
    param_specs = RiskLaw.param_specs + (REPEAT_DECAY,)


class PowerNTLaw(Law):
    """Candidate far from any ceiling: m = k · N^a · T^b (a straight plane in log-log; a and b of either sign, so the
    same form serves a metric that rises and a loss that falls), Huber on log residuals; x = (N, T). Where NDCG is
    0.01–0.04 and still climbing, Eq. 4's ceiling E is not identified while this has nothing to identify."""

    name = "power_nt"
    param_specs = (
        Param("k"),
        Param("a", positive=False, bounds=(-3.0, 3.0)),
        Param("b", positive=False, bounds=(-3.0, 3.0)),
    )
    log_residuals = True
    exact_start = True

    def _function(self, x, theta):
        k, a, b = theta
        return k * x[0] ** a * x[1] ** b

    def _jacobian(self, x, theta):
        k, _, _ = theta
        f = self._function(x, theta)
        return np.column_stack([f / k, f * np.log(x[0]), f * np.log(x[1])])

    def _starts(self, x, y):
        design = np.column_stack([np.ones(len(y)), np.log(x[0]), np.log(x[1])])
        (log_k, a, b), *_ = np.linalg.lstsq(design, np.log(y), rcond=None)
        return [[float(np.exp(np.clip(log_k, -40, 40))), float(np.clip(a, -3, 3)), float(np.clip(b, -3, 3))]]


class PowerLaw(Law):
    """y = k · C^exponent, fitted by least squares in log-log space (paper Fig. 5); x = (C,)."""

    name = "power"
    param_specs = (Param("k"), Param("exponent", positive=False))
    exponents = ()  # may be of either sign; its interval is reported instead

    def fit(self, x, y, starts=None):
        c, y = np.asarray(x[0], dtype=float), np.asarray(y, dtype=float)
        if len(np.unique(c)) < 2:
            raise ValueError("power law: needs at least two distinct compute values")
        slope, intercept = np.polyfit(np.log(c), np.log(y), 1)
        self.params_ = {"k": float(np.exp(intercept)), "exponent": float(slope)}
        self.quality_ = fit_quality(np.log(y), np.log(self.predict(c)), 2)
        self.x_range_ = [[float(c.min()), float(c.max())]]
        self.bootstrap_ = np.empty((0, 2))
        return self

    def _function(self, x, theta):
        return laws.power(x[0], *theta)


class LossLaw(_TwoTermLaw):
    """L(N, T) = E + A / N^α + B / T^β (a loss, lower is better; Chinchilla's form); x = (N, T)."""

    name = "loss_nt"
    param_specs = (
        Param("E", positive=False, bounds=(0.0, 1e3)),
        Param("A"),
        Param("alpha", bounds=(1e-3, 3.0)),
        Param("B"),
        Param("beta", bounds=(1e-3, 3.0)),
    )
    sign = 1.0
    log_residuals = True

    def _function(self, x, theta):
        return laws.loss(x[0], x[1], *theta)

    def _e_starts(self, y):
        return tuple(float(y.min()) * share for share in (0.5, 0.8, 0.95))


LOSS_COEFFICIENT = Param("G", positive=False, bounds=(-10.0, 10.0))  # in loss units, which run larger than NDCG's


class LossDepthLaw(_CovariateLaw, LossLaw):
    """Candidate for a loss: E + A/N^α + B/T^β − G ln L; x = (N, T, layers)."""

    name = "loss_depth"
    param_specs = LossLaw.param_specs + (LOSS_COEFFICIENT,)
    covariate = staticmethod(laws.depth_covariate)


class LossScheduleLaw(_CovariateLaw, LossLaw):
    """Candidate for a loss: E + A/N^α + B/T^β − S (1 − f); x = (N, T, schedule fraction f)."""

    name = "loss_schedule"
    param_specs = LossLaw.param_specs + (Param("S", positive=False, bounds=(-10.0, 10.0)),)
    covariate = staticmethod(laws.schedule_covariate)


class LossNegativesLaw(_CovariateLaw, LossLaw):
    """Candidate for a loss: E + A/N^α + B/T^β + G ln K; x = (N, T, negatives per target K)."""

    name = "loss_negatives"
    param_specs = LossLaw.param_specs + (LOSS_COEFFICIENT,)
    covariate = staticmethod(laws.negatives_covariate)


class LossRepeatLaw(_RepeatLaw, LossLaw):
    """Candidate for a loss: E + A/N^α + B/T_eff^β on repetition-aware data; x = (N, T, D)."""

    name = "loss_repeat"
    param_specs = LossLaw.param_specs + (REPEAT_DECAY,)


class LossNLaw(Law):
    """L(N) = E + (N0 / N)^α (the LSRM paper's law of loss against non-embedding parameters); x = (N,)."""

    name = "loss_n"
    param_specs = (Param("E", positive=False, bounds=(0.0, 1e3)), Param("N0"), Param("alpha", bounds=(1e-3, 3.0)))
    exponents = ("alpha",)
    log_residuals = True

    def _function(self, x, theta):
        return laws.loss_n(x[0], *theta)

    def _jacobian(self, x, theta):
        _, n0, alpha = theta
        term = (n0 / x[0]) ** alpha
        return np.column_stack([np.ones_like(term), alpha * term / n0, term * np.log(n0 / x[0])])

    def _starts(self, x, y):
        starts = []
        for alpha, share in start_grid((0.1, 0.3, 0.7), (0.5, 0.8, 0.95)):
            e = float(y.min()) * share
            log_n0 = float(np.mean(np.log(np.maximum(y - e, 1e-12)) / alpha + np.log(x[0])))
            starts.append([e, float(np.exp(np.clip(log_n0, -40, 40))), alpha])
        return starts


# Every law form by the name its laws.json entry records under "law" (laws.json keys name a role, e.g. "risk" is the
# N,T law in the metric's direction: RiskLaw for NDCG, LossLaw for a loss).
FORMS: dict[str, type[Law]] = {
    cls.name: cls
    for cls in (
        SaturatingLaw,
        DecreasingSaturatingLaw,
        LinearLaw,
        RiskLaw,
        RiskDepthLaw,
        RiskScheduleLaw,
        RiskNegativesLaw,
        RiskRepeatLaw,
        PowerNTLaw,
        PowerLaw,
        LossLaw,
        LossDepthLaw,
        LossScheduleLaw,
        LossNegativesLaw,
        LossRepeatLaw,
        LossNLaw,
    )
}
