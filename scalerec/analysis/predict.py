"""`scalerec predict`: answers from a laws.json — the metric for (N, T), and what to train for a FLOP budget."""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np

from ..errors import ScalerecError
from ..store.schema import METRIC_PATTERN
from . import laws
from .backtest import calibrated_band, law_distance
from .candidates import NT_CANDIDATES
from .estimators import Law, LinearLaw, LossLaw, LossNLaw, PowerLaw, RiskLaw, SaturatingLaw
from .fit_laws import LAWS_SCHEMA_VERSION

RANKING_METRIC = METRIC_PATTERN  # valid_/test_ ndcg, hit, mrr @k (any protocol)
PREDICTING_LAWS = ("saturating", "risk", "n_opt", "t_opt")  # what `predict` answers from
ESTIMATORS = {"saturating": SaturatingLaw, "linear": LinearLaw, "risk": RiskLaw, "n_opt": PowerLaw,
              "t_opt": PowerLaw, "loss_nt": LossLaw, "loss_n": LossNLaw,
              **{name: candidate.law for name, candidate in NT_CANDIDATES.items()}}


def load_laws(path: str | Path) -> dict[str, Any]:
    """Read a laws.json written by `scalerec fit-laws` and check it against its schema (laws.schema.json) and the
    parameters each law needs: a file that fails names what is wrong in one line."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ScalerecError(f"{path}: no such file (run `scalerec fit-laws` first)") from None
    except (json.JSONDecodeError, UnicodeDecodeError, IsADirectoryError) as exc:
        raise ScalerecError(f"{path}: not a laws.json ({exc})") from None
    if not isinstance(data, dict) or "schema_version" not in data or "laws" not in data:
        raise ScalerecError(f"{path}: not a scalerec laws.json (no schema_version)")
    if data["schema_version"] == 1:  # same laws; the envelope laws' x_range was in ln C
        data = _from_version_1(data)
    if data["schema_version"] != LAWS_SCHEMA_VERSION:
        raise ScalerecError(f"{path}: laws.json schema version {data['schema_version']}, "
                            f"this scalerec reads version {LAWS_SCHEMA_VERSION}")
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(_schema()).iter_errors(data))
    if error is not None:
        where = "/".join(map(str, error.absolute_path)) or "the top level"
        raise ScalerecError(f"{path}: not a valid laws.json v{LAWS_SCHEMA_VERSION}: at {where}: {error.message}")
    for name, entry in data["laws"].items():
        missing = [p.name for p in ESTIMATORS[name].param_specs if p.name not in entry["params"]] \
            if name in ESTIMATORS else []
        if missing:
            raise ScalerecError(f"{path}: laws/{name}/params lacks {', '.join(missing)}")
    for name in PREDICTING_LAWS:  # a law that answers needs every parameter
        unset = [p for p, v in data["laws"][name]["params"].items() if v is None]
        if unset:
            raise ScalerecError(f"{path}: laws/{name}/params/{unset[0]} is null (the fit failed); refit with "
                                "`scalerec fit-laws`")
    return data


def _from_version_1(data: dict[str, Any]) -> dict[str, Any]:
    """A version-1 laws.json read as version 2 (the schema check that follows reports anything malformed)."""
    laws_ = dict(data["laws"]) if isinstance(data["laws"], dict) else data["laws"]
    for name in ("saturating", "linear"):
        try:
            laws_[name] = laws_[name] | {"x_range": np.exp(np.asarray(laws_[name]["x_range"], dtype=float)).tolist()}
        except (KeyError, TypeError, ValueError):
            pass
    return data | {"schema_version": 2, "laws": laws_}


@functools.cache
def _schema() -> dict[str, Any]:
    return json.loads(resources.files("scalerec.analysis").joinpath("laws.schema.json").read_text())


def fitted_laws(data: dict[str, Any]) -> dict[str, Law]:
    return {name: ESTIMATORS[name].from_dict(entry) for name, entry in data["laws"].items() if name in ESTIMATORS}


def metric_domain(metric: str) -> tuple[float, float]:
    """The values a metric can take: ranking metrics (NDCG, HIT, MRR) lie in [0, 1], losses in [0, inf)."""
    if RANKING_METRIC.match(metric):
        return 0.0, 1.0
    return (0.0, np.inf) if metric.endswith("loss") else (-np.inf, np.inf)


def interval_90(data: dict[str, Any], name: str, law: Law, *x: Any) -> tuple[np.ndarray, np.ndarray, dict | None]:
    """The 90% interval of law `name` at x: its bootstrap interval, widened by the backtest's calibrated band
    (backtest.py) when laws.json has one; and what the calibration was (None when there is none)."""
    low, high = law.predict_interval(*x)
    calibration = ((data.get("backtest") or {}).get("laws", {}).get(name) or {}).get("calibration")
    if not calibration or not calibration.get("calibrated"):
        return low, high, calibration
    distance = law_distance(data["laws"][name]["x_range"], *x)
    band_low, band_high = calibrated_band(law.predict(*x), distance, calibration["q"])
    with np.errstate(invalid="ignore"):  # no bootstrap: NaN bounds, the band alone
        low, high = np.fmin(low, band_low), np.fmax(high, band_high)
    return low, high, calibration | {"distance": float(np.max(distance))}


def _with_interval(data: dict[str, Any], name: str, law: Law, *x: float,
                   domain: tuple[float, float] = (-np.inf, np.inf), label: str = "the law") -> dict[str, Any]:
    """The law's value and 90% interval at x, bounded by what the quantity can be: an interval is clipped to the
    domain; a value outside it is no prediction (`value` null, the law's number kept as `law_value`)."""
    value = float(law.predict(*x))
    low, high, calibration = interval_90(data, name, law, *x)
    out = {"value": value, "interval_90": [float(low), float(high)] if np.isfinite(low) else None}
    if calibration is not None:
        out["calibration"] = (
            {"method": "bootstrap and backtest (split-conformal)", "q": calibration["q"],
             "backtest_points": calibration["n_scores"], "distance": calibration["distance"]}
            if calibration.get("calibrated") else {"method": "bootstrap only", "why": calibration.get("why")})
    if not domain[0] <= value <= domain[1]:
        out |= {"value": None, "law_value": value, "interval_90": None,
                "out_of_domain": f"{label} gives {value:.4g}, {_domain_text(domain)}: the law does not hold this "
                                 "far from its fit"}
    elif out["interval_90"] is not None:
        clipped = [float(np.clip(v, *domain)) for v in out["interval_90"]]
        if clipped != out["interval_90"]:
            out["interval_clipped"] = True
        out["interval_90"] = clipped
    return out


def _domain_text(domain: tuple[float, float]) -> str:
    return (f"below {domain[0]:g}, the least it can be" if np.isinf(domain[1])
            else f"outside the [{domain[0]:g}, {domain[1]:g}] it can be")


def _extrapolation(name: str, value: float, observed: list[float] | None) -> str | None:
    if not observed:  # a laws.json from before the range was recorded
        return None
    low, high = observed
    if value > high or value < low:
        factor = value / high if value > high else low / value
        return f"{name} = {value:.3g} is {factor:.3g}x outside the fitted range [{low:.3g}, {high:.3g}]: extrapolation"
    return None


def _domain_warnings(entries: dict[str, dict[str, Any]]) -> list[str]:
    return [f"{name}: {entry['out_of_domain']}" for name, entry in entries.items() if "out_of_domain" in entry]


def _flags(data: dict[str, Any], names: tuple[str, ...]) -> dict[str, list[str]]:
    """The flags of the laws an answer rests on, by law (only laws that have any)."""
    return {name: data["laws"][name]["flags"] for name in names if data["laws"][name]["flags"]}


def predict_nt(data: dict[str, Any], n: float, t: float, *, law: str | None = None,
               inputs: dict[str, float] | None = None) -> dict[str, Any]:
    """The metric an N,T law predicts for N parameters trained on T interactions.

    `law`: "risk" (the paper's Eq. 4) or a candidate of laws.json (candidates.py: risk_depth, risk_repeat,
    risk_schedule, risk_negatives); by default the one the backtest selected. A candidate takes one more input from
    `inputs`, by its key: "layers", "D" (dataset interactions), "schedule_fraction" (default 1: a finished run) or
    "negatives"."""
    metric, inputs, notes = data["options"]["metric"], inputs or {}, []
    name = law or ((data.get("backtest") or {}).get("selection") or {}).get("selected") or "risk"
    if name not in data["laws"] or name not in ("risk", *NT_CANDIDATES):
        known = [k for k in ("risk", *NT_CANDIDATES) if k in data["laws"]]
        raise ScalerecError(f"--law {name}: not an N,T law of this laws.json (it has {', '.join(known)})")
    x: tuple[float, ...] = (n, t)
    if name in NT_CANDIDATES:
        candidate = NT_CANDIDATES[name]
        value = inputs.get(candidate.key, candidate.default)
        if inputs.get(candidate.key) is None and value is not None:
            inputs = inputs | {candidate.key: value}
        if value is not None:
            x = (n, t, value)
        elif law:  # asked for by name: its input is required
            raise ScalerecError(f"--law {name} also needs {candidate.option}")
        else:
            notes.append(f"the backtest selected the N,T law {name}, which also needs {candidate.option}: answered "
                         "with the paper's Eq. 4 (risk) instead; give it for the better law")
            name = "risk"
    fitted = fitted_laws(data)[name]
    ranges = data["laws"][name]["x_range"]  # the points the law was fitted on
    prediction = _with_interval(data, name, fitted, *x, domain=metric_domain(metric), label=f"the N,T law {name}")
    labels = ("N", "T", NT_CANDIDATES[name].key if name in NT_CANDIDATES else "")
    warnings = [w for w in (_extrapolation(label, v, r) for label, v, r in zip(labels, x, ranges)) if w]
    return {"metric": metric, "N": n, "T": t, **{k: v for k, v in inputs.items() if v is not None},
            "prediction": prediction, "law": name, "flags": _flags(data, (name,)),
            "warnings": notes + warnings + _domain_warnings({metric: prediction})}


def predict_budget(data: dict[str, Any], flops: float, dataset_interactions: float | None = None,
                   shapes: list[dict] | None = None) -> dict[str, Any]:
    """Best metric for a FLOP budget and the N, T (and shape, epochs) to spend it on.

    The shape is the nearest (in log N) of `shapes` (see scalerec.shapes.load_shape_catalog), by default the
    runs' own shapes and the paper's Table 3 as laws.json lists them.
    """
    fitted, metric = fitted_laws(data), data["options"]["metric"]
    risk, k = fitted["risk"], data["allocation"]["k_flops_per_param_target"]
    n_risk, t_risk = (float(v) for v in laws.risk_optimum(flops, k, *risk.theta()))
    counts = (1.0, np.inf)  # a parameter or interaction count below 1 is no allocation
    n_power = _with_interval(data, "n_opt", fitted["n_opt"], flops, domain=counts, label="the N*(C) law")
    t_power = _with_interval(data, "t_opt", fitted["t_opt"], flops, domain=counts, label="the T*(C) law")
    best = _with_interval(data, "saturating", fitted["saturating"], flops, domain=metric_domain(metric),
                          label="the envelope law")
    shape = (min(shapes or data["shapes"], key=lambda s: abs(np.log(s["n"]) - np.log(n_power["value"])))
             if n_power["value"] is not None else None)
    out = {
        "metric": metric, "flops": flops, "best_metric": best,
        "envelope_allocation": {"N": n_power, "T": t_power},
        "risk_law_allocation": _risk_optimum(risk, n_risk, t_risk, k, metric),
        "nearest_shape": shape,
        "warnings": [w for w in [_extrapolation("FLOPs", flops, data["data"]["flops_range"])] if w]
        + _domain_warnings({metric: best, "N": n_power, "T": t_power}),
        "flags": _flags(data, ("saturating", "n_opt", "t_opt", "risk")),
    }
    if "out_of_domain" in out["risk_law_allocation"]:
        out["warnings"].append(f"the N,T law's optimum: {out['risk_law_allocation']['out_of_domain']}")
    if dataset_interactions:
        fitted_d = data["data"].get("dataset_interactions")
        out["warnings"] += [w for w in [_extrapolation("D", dataset_interactions,
                                                       fitted_d and [min(fitted_d), max(fitted_d)])] if w]
        if t_power["value"] is not None:
            out["epochs"] = t_power["value"] / dataset_interactions
            out["warnings"] += [w for w in [_extrapolation("epochs", out["epochs"], data["data"].get("epochs_range"))]
                                if w]
    return out


def _risk_optimum(risk: Law, n: float, t: float, k: float, metric: str) -> dict[str, Any]:
    """The N,T law's own optimum for the budget; its metric is none when N, T or the metric leave their domain."""
    value = float(risk.predict(n, t))
    out = {"N": n, "T": t, "metric": value, "k_flops_per_param_target": k}
    low, high = metric_domain(metric)
    if n < 1 or t < 1 or not low <= value <= high:
        out |= {"metric": None, "law_metric": value,
                "out_of_domain": f"N = {n:.3g}, T = {t:.3g} and {metric} {value:.4g} are not a run that can be: the "
                                 "law does not hold this far from its fit"}
    return out
