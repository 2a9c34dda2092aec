"""`scalerec predict`: answers from a laws.json — the metric for (N, T), and what to train for a FLOP budget."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ScalerecError
from . import laws
from .estimators import Law, LinearLaw, LossLaw, LossNLaw, PowerLaw, RiskLaw, SaturatingLaw
from .fit_laws import LAWS_SCHEMA_VERSION

ESTIMATORS = {"saturating": SaturatingLaw, "linear": LinearLaw, "risk": RiskLaw, "n_opt": PowerLaw,
              "t_opt": PowerLaw, "loss_nt": LossLaw, "loss_n": LossNLaw}


def load_laws(path: str | Path) -> dict[str, Any]:
    """Read and check a laws.json written by `scalerec fit-laws`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ScalerecError(f"{path}: no such file (run `scalerec fit-laws` first)") from None
    except (json.JSONDecodeError, UnicodeDecodeError, IsADirectoryError) as exc:
        raise ScalerecError(f"{path}: not a laws.json ({exc})") from None
    if not isinstance(data, dict) or "schema_version" not in data or "laws" not in data:
        raise ScalerecError(f"{path}: not a scalerec laws.json (no schema_version)")
    if data["schema_version"] != LAWS_SCHEMA_VERSION:
        raise ScalerecError(f"{path}: laws.json schema version {data['schema_version']}, "
                            f"this scalerec reads version {LAWS_SCHEMA_VERSION}")
    return data


def fitted_laws(data: dict[str, Any]) -> dict[str, Law]:
    return {name: ESTIMATORS[name].from_dict(entry) for name, entry in data["laws"].items() if name in ESTIMATORS}


def _with_interval(law: Law, *x: float) -> dict[str, Any]:
    value = float(law.predict(*x))
    low, high = law.predict_interval(*x)
    return {"value": value, "interval_90": [float(low), float(high)] if np.isfinite(low) else None}


def _extrapolation(name: str, value: float, observed: list[float]) -> str | None:
    low, high = observed
    if value > high or value < low:
        factor = value / high if value > high else low / value
        return f"{name} = {value:.3g} is {factor:.3g}x outside the fitted range [{low:.3g}, {high:.3g}]: extrapolation"
    return None


def _flags(data: dict[str, Any], names: tuple[str, ...]) -> dict[str, list[str]]:
    """The flags of the laws an answer rests on, by law (only laws that have any)."""
    return {name: data["laws"][name]["flags"] for name in names if data["laws"][name]["flags"]}


def predict_nt(data: dict[str, Any], n: float, t: float) -> dict[str, Any]:
    """The metric the N,T law predicts for N parameters trained on T interactions."""
    risk = fitted_laws(data)["risk"]
    n_range, t_range = data["laws"]["risk"]["x_range"]  # the points the law was fitted on
    warnings = [w for w in (_extrapolation("N", n, n_range), _extrapolation("T", t, t_range)) if w]
    return {"metric": data["options"]["metric"], "N": n, "T": t, "prediction": _with_interval(risk, n, t),
            "law": "risk", "flags": _flags(data, ("risk",)), "warnings": warnings}


def predict_budget(data: dict[str, Any], flops: float, dataset_interactions: float | None = None,
                   shapes: list[dict] | None = None) -> dict[str, Any]:
    """Best metric for a FLOP budget and the N, T (and shape, epochs) to spend it on.

    The shape is the nearest (in log N) of `shapes` (see scalerec.shapes.load_shape_catalog), by default the
    runs' own shapes and the paper's Table 3 as laws.json lists them.
    """
    fitted = fitted_laws(data)
    risk, k = fitted["risk"], data["allocation"]["k_flops_per_param_target"]
    n_risk, t_risk = (float(v) for v in laws.risk_optimum(flops, k, *risk.theta()))
    n_power = _with_interval(fitted["n_opt"], flops)
    t_power = _with_interval(fitted["t_opt"], flops)
    shape = min(shapes or data["shapes"], key=lambda s: abs(np.log(s["n"]) - np.log(n_power["value"])))
    out = {
        "metric": data["options"]["metric"], "flops": flops,
        "best_metric": _with_interval(fitted["saturating"], np.log(flops)),
        "envelope_allocation": {"N": n_power, "T": t_power},
        "risk_law_allocation": {"N": n_risk, "T": t_risk, "metric": float(risk.predict(n_risk, t_risk)),
                                "k_flops_per_param_target": k},
        "nearest_shape": shape,
        "warnings": [w for w in [_extrapolation("FLOPs", flops, data["data"]["flops_range"])] if w],
        "flags": _flags(data, ("saturating", "n_opt", "t_opt", "risk")),
    }
    if dataset_interactions:
        out["epochs"] = t_power["value"] / dataset_interactions
    return out
