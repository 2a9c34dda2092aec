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
from ..metric_direction import HIGHER, metric_domain, sign
from . import laws
from .backtest import calibrated_band, law_distance
from .candidates import NT_CANDIDATES, NT_LAWS
from .estimators import FORMS, Law
from .fit import interval
from .laws_file import LAWS_SCHEMA_VERSION

# The form of a laws.json entry written before entries named it (each role had one form then).
LEGACY_FORMS = {
    "saturating": "saturating",
    "linear": "linear",
    "risk": "risk",
    "n_opt": "power",
    "t_opt": "power",
    "loss_nt": "loss_nt",
    "loss_n": "loss_n",
    **{name: name for name in NT_CANDIDATES},
}


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
        raise ScalerecError(
            f"{path}: laws.json schema version {data['schema_version']}, "
            f"this scalerec reads version {LAWS_SCHEMA_VERSION}"
        )
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(_schema()).iter_errors(data))
    if error is not None:
        where = "/".join(map(str, error.absolute_path)) or "the top level"
        raise ScalerecError(f"{path}: not a valid laws.json v{LAWS_SCHEMA_VERSION}: at {where}: {error.message}")
    for name, entry in data["laws"].items():
        form = FORMS.get(entry.get("law", LEGACY_FORMS.get(name, "")))
        missing = [p.name for p in form.param_specs if p.name not in entry["params"]] if form else []
        if missing:
            raise ScalerecError(f"{path}: laws/{name}/params lacks {', '.join(missing)}")
        unset = [p for p, v in entry["params"].items() if v is None]
        if unset and entry.get("status") != "failed":  # a failed fit's params are null by design, no other's
            raise ScalerecError(
                f"{path}: laws/{name}/params/{unset[0]} is null, but the law is not marked failed; "
                "refit with `scalerec fit-laws`"
            )
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


def fitted_laws(data: dict[str, Any], force: tuple[str, ...] = ()) -> dict[str, Law]:
    """The laws of a laws.json by role; a failed law has NaN parameters unless its role is in `force`."""
    out = {}
    for name, entry in data["laws"].items():
        form = FORMS.get(entry.get("law", LEGACY_FORMS.get(name, "")))
        if form is not None:
            out[name] = form.from_dict(entry, force=name in force)
    return out


def direction_of(data: dict[str, Any]) -> str:
    """The metric direction a laws.json was fitted with (files from before it was recorded: higher)."""
    return data["options"].get("direction") or HIGHER


def failure(data: dict[str, Any], name: str) -> str | None:
    """Why law `name` gives no answer: not fitted, or its fit failed; None when it can answer."""
    entry = data["laws"].get(name)
    if entry is None:
        why = (data.get("not_fitted") or {}).get(name, "the store gave it nothing to fit")
        return f"the {name} law was not fitted ({why})"
    if entry.get("status") == "failed":
        return f"the {name} fit failed: {'; '.join(entry.get('why') or entry['flags'])}"
    return None


def require(data: dict[str, Any], name: str, forced: bool = False) -> list[str]:
    """Refuse (one line) to answer with a law that is missing or failed, unless `forced` (then a warning)."""
    why = failure(data, name)
    if why is None:
        return []
    if forced and name in data["laws"]:
        return [f"{why}; answered with it anyway because --law {name} was given: do not trust this number"]
    hint = f" (--law {name} forces it)" if name in data["laws"] and name in NT_LAWS else ""
    raise ScalerecError(f"{why}: no answer from it{hint}")


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


def _with_interval(
    data: dict[str, Any],
    name: str,
    law: Law,
    *x: float,
    domain: tuple[float, float] = (-np.inf, np.inf),
    label: str = "the law",
) -> dict[str, Any]:
    """The law's value and 90% interval at x, bounded by what the quantity can be: an interval is clipped to the
    domain; a value outside it is no prediction (`value` null, the law's number kept as `law_value`)."""
    value = float(law.predict(*x))
    low, high, calibration = interval_90(data, name, law, *x)
    out = {"value": value, "interval_90": [float(low), float(high)] if np.isfinite(low) else None}
    if calibration is not None:
        out["calibration"] = (
            {
                "method": "bootstrap and backtest (split-conformal)",
                "q": calibration["q"],
                "backtest_points": calibration["n_scores"],
                "distance": calibration["distance"],
            }
            if calibration.get("calibrated")
            else {"method": "bootstrap only", "why": calibration.get("why")}
        )
    if not domain[0] <= value <= domain[1]:
        out |= {
            "value": None,
            "law_value": value,
            "interval_90": None,
            "out_of_domain": f"{label} gives {value:.4g}, {_domain_text(domain)}: the law does not hold this "
            "far from its fit",
        }
    elif out["interval_90"] is not None:
        clipped = [float(np.clip(v, *domain)) for v in out["interval_90"]]
        if clipped != out["interval_90"]:
            out["interval_clipped"] = True
        out["interval_90"] = clipped
    return out


def _domain_text(domain: tuple[float, float]) -> str:
    return (
        f"below {domain[0]:g}, the least it can be"
        if np.isinf(domain[1])
        else f"outside the [{domain[0]:g}, {domain[1]:g}] it can be"
    )


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


def predict_nt(
    data: dict[str, Any], n: float, t: float, *, law: str | None = None, inputs: dict[str, float] | None = None
) -> dict[str, Any]:
    """The metric an N,T law predicts for N parameters trained on T interactions.

    `law`: "risk" (the paper's Eq. 4, mirrored for a loss) or a candidate of laws.json (candidates.py: risk_depth,
    risk_repeat, risk_schedule, risk_negatives, power_nt); by default the one the backtest selected. A candidate with
    a third input takes it from `inputs`, by its key: "layers", "D" (dataset interactions), "schedule_fraction"
    (default 1: a finished run) or "negatives". A law whose fit failed answers only when named by `law` (with a
    warning); otherwise the answer is a one-line refusal."""
    metric, inputs, notes = data["options"]["metric"], inputs or {}, []
    selection = (data.get("backtest") or {}).get("selection") or {}
    if law is None and "selection" in (data.get("backtest") or {}) and selection.get("selected") is None:
        raise ScalerecError(f"no N,T law of this laws.json can answer: {selection.get('why')} (--law NAME forces one)")
    name = law or selection.get("selected") or "risk"
    if name not in NT_LAWS:
        raise ScalerecError(f"--law {name}: not an N,T law (they are {', '.join(NT_LAWS)})")
    x: tuple[float, ...] = (n, t)
    if name in NT_CANDIDATES and NT_CANDIDATES[name].column:
        candidate = NT_CANDIDATES[name]
        value = inputs.get(candidate.key, candidate.default)
        if inputs.get(candidate.key) is None and value is not None:
            inputs = inputs | {candidate.key: value}
        if value is not None:
            x = (n, t, value)
        elif law:  # asked for by name: its input is required
            raise ScalerecError(f"--law {name} also needs {candidate.option}")
        elif failure(data, "risk"):
            raise ScalerecError(
                f"the backtest selected the N,T law {name}, which also needs {candidate.option}; "
                f"and Eq. 4, the law without it, gives no answer: {failure(data, 'risk')}"
            )
        else:
            notes.append(
                f"the backtest selected the N,T law {name}, which also needs {candidate.option}: answered "
                "with the paper's Eq. 4 (risk) instead; give it for the better law"
            )
            name = "risk"
    notes += require(data, name, forced=law == name)  # a law not fitted, or failed and not named: refused
    fitted = fitted_laws(data, force=(name,) if law == name else ())[name]
    ranges = data["laws"][name]["x_range"]  # the points the law was fitted on
    prediction = _with_interval(
        data, name, fitted, *x, domain=metric_domain(metric, direction_of(data)), label=f"the N,T law {name}"
    )
    labels = ("N", "T", NT_CANDIDATES[name].key if name in NT_CANDIDATES else "")
    warnings = [w for w in (_extrapolation(label, v, r) for label, v, r in zip(labels, x, ranges)) if w]
    return {
        "metric": metric,
        "direction": direction_of(data),
        "N": n,
        "T": t,
        **{k: v for k, v in inputs.items() if v is not None},
        "prediction": prediction,
        "law": name,
        "flags": _flags(data, (name,)),
        "warnings": notes + warnings + _domain_warnings({metric: prediction}),
    }


def predict_n(data: dict[str, Any], n: float) -> dict[str, Any]:
    """A loss the LSRM paper's law L(N) = E + (N0/N)^α predicts for N parameters (single-pass runs: no T), with
    its 90% interval calibrated by the backtest like the N,T law's."""
    metric = data["options"]["metric"]
    if direction_of(data) != "lower":
        raise ScalerecError(f"--law loss_n answers for a loss (lower is better); {metric} is better higher")
    notes = require(data, "loss_n")
    prediction = _with_interval(
        data, "loss_n", fitted_laws(data)["loss_n"], n, domain=metric_domain(metric, "lower"), label="the law L(N)"
    )
    warnings = [w for w in [_extrapolation("N", n, data["laws"]["loss_n"]["x_range"][0])] if w]
    return {
        "metric": metric,
        "direction": "lower",
        "N": n,
        "prediction": prediction,
        "law": "loss_n",
        "flags": _flags(data, ("loss_n",)),
        "warnings": notes + warnings + _domain_warnings({metric: prediction}),
    }


# One more epoch over a fixed dataset "stops paying" once its data is worth less than this share of fresh data: the
# e-th pass adds D·exp(−(e − 1)/R) effective interactions (laws.effective_data), so from epoch 1 + R·ln(1/share) on.
EPOCH_WORTH = 0.10


def predict_budget(
    data: dict[str, Any], flops: float, dataset_interactions: float | None = None, shapes: list[dict] | None = None
) -> dict[str, Any]:
    """Best metric for a FLOP budget and the N, T (and shape, epochs) to spend it on.

    Answers from the envelope (the saturating law; N*(C), T*(C) power laws) and from the N,T law's own optimum
    under C = k·N·T (closed form, with bootstrap intervals). With `dataset_interactions` D, a budget whose T* exceeds
    D is answered under the repetition-aware law (fixed_dataset). A law that is missing or failed gives no number:
    its part of the answer says why. The shape is the nearest (in log N) of `shapes` (scalerec.shapes), by default
    the runs' own shapes and the paper's Table 3 as laws.json lists them.
    """
    fitted, metric = fitted_laws(data), data["options"]["metric"]
    domain = metric_domain(metric, direction_of(data))
    counts = (1.0, np.inf)  # a parameter or interaction count below 1 is no allocation
    out: dict[str, Any] = {
        "metric": metric,
        "direction": direction_of(data),
        "flops": flops,
        "warnings": [],
        "refusals": [],
    }

    def answer(name: str, domain: tuple[float, float], label: str) -> dict[str, Any]:
        why = failure(data, name)
        if why is not None:
            out["refusals"].append(why)
            return {"value": None, "interval_90": None, "refused": why}
        return _with_interval(data, name, fitted[name], flops, domain=domain, label=label)

    best = answer("saturating", domain, "the envelope law")
    n_power = answer("n_opt", counts, "the N*(C) law")
    t_power = answer("t_opt", counts, "the T*(C) law")
    pool = shapes or data["shapes"]
    shape = (
        min(pool, key=lambda s: abs(np.log(s["n"]) - np.log(n_power["value"])))
        if n_power["value"] is not None and pool
        else None
    )
    k = data["allocation"]["k_flops_per_param_target"]
    risk_why = failure(data, "risk")
    risk_alloc = (
        _risk_optimum(data, fitted["risk"], flops, k, metric, domain)
        if risk_why is None
        else {"N": None, "T": None, "metric": None, "refused": risk_why}
    )
    out |= {
        "best_metric": best,
        "envelope_allocation": {"N": n_power, "T": t_power},
        "risk_law_allocation": risk_alloc,
        "nearest_shape": shape,
        "flags": _flags(data, tuple(n for n in ("saturating", "n_opt", "t_opt", "risk") if n in data["laws"])),
    }
    out["warnings"] += [w for w in [_extrapolation("FLOPs", flops, data["data"]["flops_range"])] if w]
    out["warnings"] += _domain_warnings({metric: best, "N": n_power, "T": t_power})
    if "out_of_domain" in risk_alloc:
        out["warnings"].append(f"the N,T law's optimum: {risk_alloc['out_of_domain']}")
    if dataset_interactions:
        fitted_d = data["data"].get("dataset_interactions")
        out["warnings"] += [
            w for w in [_extrapolation("D", dataset_interactions, fitted_d and [min(fitted_d), max(fitted_d)])] if w
        ]
        out["fixed_dataset"] = fixed_dataset(data, flops, dataset_interactions, out)
        if t_power["value"] is not None and t_power["value"] <= dataset_interactions:
            out["epochs"] = t_power["value"] / dataset_interactions
            out["warnings"] += [
                w for w in [_extrapolation("epochs", out["epochs"], data["data"].get("epochs_range"))] if w
            ]
    return out


def _risk_optimum(
    data: dict[str, Any], risk: Law, flops: float, k: float, metric: str, domain: tuple[float, float]
) -> dict[str, Any]:
    """The N,T law's own optimum for the budget, N* and T* with bootstrap intervals, and the metric there; its
    metric is none when N, T or the metric leave their domain."""
    n, t = (float(v) for v in laws.risk_optimum(flops, k, *risk.theta()))
    out: dict[str, Any] = {"N": n, "T": t, "metric": None, "k_flops_per_param_target": k}
    if len(risk.bootstrap_):
        with np.errstate(all="ignore"):
            optima = np.array([laws.risk_optimum(flops, k, *theta) for theta in risk.bootstrap_], dtype=float)
        out["N_interval_90"], out["T_interval_90"] = ([float(v) for v in interval(optima[:, i])] for i in (0, 1))
    if n < 1 or t < 1:
        value = float(risk.predict(n, t))
        out |= {
            "law_metric": value,
            "out_of_domain": f"N = {n:.3g}, T = {t:.3g} are not a run that can be: the law "
            "does not hold this far from its fit",
        }
        return out
    prediction = _with_interval(data, "risk", risk, n, t, domain=domain, label="the N,T law")
    out |= {"metric": prediction["value"], "metric_prediction": prediction}
    if prediction["value"] is None:
        out |= {
            "law_metric": prediction["law_value"],
            "out_of_domain": f"N = {n:.3g}, T = {t:.3g} and {metric} {prediction['law_value']:.4g} are not a "
            "run that can be: the law does not hold this far from its fit",
        }
    return out


def fixed_dataset(data: dict[str, Any], flops: float, d: float, budget: dict[str, Any]) -> dict[str, Any]:
    """The budget's answer when the data is fixed at D unique interactions.

    Where the N,T law's T* ≤ D, one pass or less suffices and the unconstrained answer stands. Otherwise the
    repetition-aware law (risk_repeat: T_eff = effective_data(T, D, R), Muennighoff et al. 2023) chooses N with
    T = C/(kN), searching only up to the epoch where one more pass is worth less than EPOCH_WORTH of fresh data
    (1 + R·ln(1/EPOCH_WORTH)): what repetition costs is the law's metric with repeats against the same budget on
    fresh data. Without a usable repetition-aware law it says so and gives no multi-epoch advice."""
    metric, direction = data["options"]["metric"], direction_of(data)
    k = data["allocation"]["k_flops_per_param_target"]
    t_star = budget["risk_law_allocation"].get("T") or budget["envelope_allocation"]["T"]["value"]
    if t_star is None:
        return {"answer": None, "why": "neither the N,T law nor the envelope's T*(C) could answer for this budget"}
    if t_star <= d:
        return {
            "answer": "fresh",
            "epochs": t_star / d,
            "T": t_star,
            "why": f"the optimum sees {t_star / d:.3g} epochs of D: the data does not limit this budget",
        }
    one_pass = {"N": flops / (k * d), "T": d, "epochs": 1.0}
    why_not = failure(data, "risk_repeat")
    if why_not is not None:
        budget["warnings"] += [
            w for w in [_extrapolation("the one-pass answer's N", one_pass["N"], data["data"].get("n_range"))] if w
        ]
        return {
            "answer": None,
            "epochs_unconstrained": t_star / d,
            "one_pass": one_pass,
            "why": f"the budget's optimum would see D {t_star / d:.3g} times, and no repetition-aware law can "
            f"say what repeats are worth ({why_not}"
            + ("; it needs runs that saw their data more than once" if "risk_repeat" not in data["laws"] else "")
            + "): one pass, N = C/(k·D), is the most these laws support",
        }
    law = fitted_laws(data)["risk_repeat"]
    r = law.params_["R"]
    max_epochs = 1.0 + r * np.log(1.0 / EPOCH_WORTH)
    s = sign(direction)
    n_low = flops / (k * d * max_epochs)  # the fewest parameters: the most epochs worth training
    n_high = flops / (k * d) * 1e3
    grid = np.geomspace(n_low, n_high, 4001)
    values = s * law.predict(grid, flops / (k * grid), np.full_like(grid, d))
    n = float(grid[int(np.nanargmax(values))])
    t = flops / (k * n)
    prediction = _with_interval(
        data, "risk_repeat", law, n, t, d, domain=metric_domain(metric, direction), label="the repetition-aware law"
    )
    fresh_value = float(law.predict(n, t, t))  # the same run on T fresh interactions (D = T: no repeat)
    epochs = t / d
    gain_next = float(s * (law.predict(n, t + d, d) - law.predict(n, t, d)))  # one more pass at this N
    out = {
        "answer": "repeat",
        "N": n,
        "T": t,
        "epochs": epochs,
        "metric": prediction,
        "metric_on_fresh_data": fresh_value,
        "repetition_cost": float(s * (fresh_value - prediction["value"])) if prediction["value"] is not None else None,
        "R": r,
        "epochs_worth_paying": float(max_epochs),
        "next_epoch_gain": gain_next,
        "why": f"T* = {t_star:.3g} exceeds D = {d:.3g}: N chosen under the repetition-aware law (R = {r:.3g}); "
        f"an epoch past {max_epochs:.3g} is worth less than {EPOCH_WORTH:.0%} of fresh data",
    }
    budget["warnings"] += [
        w
        for w in (
            _extrapolation(f"the fixed-dataset answer's {label}", value, observed)
            for label, value, observed in zip(("N", "T"), (n, t), law.x_range_)
        )
        if w
    ]
    if epochs > (data["data"].get("epochs_range") or [0, np.inf])[1]:
        budget["warnings"].append(
            f"the fixed-dataset answer trains {epochs:.3g} epochs, more than any fitted run "
            f"({data['data']['epochs_range'][1]:.3g}): the repetition law extrapolates"
        )
    return out
