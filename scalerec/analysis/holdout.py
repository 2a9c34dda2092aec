"""Held-out extrapolation checks: refit without the largest runs (or above a compute budget) and report how well the
laws predict what they did not see. This is how a user knows whether to trust a law."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ScalerecError
from .backtest import error_summary
from .envelope import envelope
from .fit_laws import N_COLUMNS, FitOptions, fit_laws
from .predict import failure, fitted_laws, interval_90


def _errors(rows: list[dict[str, Any]]) -> dict[str, Any]:
    inside = [r["inside_90"] for r in rows if r["inside_90"] is not None]
    return {
        **error_summary([r["observed"] for r in rows], [r["predicted"] for r in rows]),
        "coverage_90": float(np.mean(inside)) if inside else None,
    }


def _row(label: dict[str, Any], observed: float, predicted: float, low: float, high: float) -> dict[str, Any]:
    has_interval = bool(np.isfinite(low) and np.isfinite(high))
    return label | {
        "observed": float(observed),
        "predicted": float(predicted),
        "interval_90": [float(low), float(high)] if has_interval else None,
        "inside_90": bool(low <= observed <= high) if has_interval else None,
        "error": float(predicted - observed),
    }


def holdout_largest(checkpoints: pd.DataFrame, k: int, by: str, options: FitOptions) -> dict[str, Any]:
    """Fit without the k largest runs (by N, or by final compute C); predict each held-out run's final metric with
    the N,T law (and, for a loss, with L(N): the LSRM paper's check), and the held-out runs' envelope with the
    saturating law."""
    n_col = N_COLUMNS[options.n_column]
    runs = checkpoints.groupby("run_id").agg(n=(n_col, "first"), c=(options.flops, "max"))
    if k < 1 or k > len(runs) - 2:
        raise ScalerecError(f"--holdout-largest {k}: keep at least 2 of the {len(runs)} runs to fit on")
    order = ["n", "c"] if by == "N" else ["c", "n"]
    held = runs.sort_values(order, ascending=False).index[:k]
    train = checkpoints[~checkpoints.run_id.isin(held)]
    data = fit_laws(train, _refit_options(options))
    laws = fitted_laws(data)
    final = checkpoints[checkpoints.run_id.isin(held) & checkpoints.is_final]
    out = {
        "by": by,
        "k": k,
        "held_out_runs": list(held),
        "fit_on_runs": int(train.run_id.nunique()),
        "risk_law": _final_check(final, data, laws, "risk", n_col, options.metric),
        "envelope_law": _envelope_check(checkpoints, train, data, laws, options),
        "laws_without_held_out": _lean(data["laws"]),
    }
    if data["options"]["direction"] == "lower":
        out["loss_n_law"] = _final_check(final, data, laws, "loss_n", n_col, options.metric)
    return out


def _final_check(final: pd.DataFrame, data: dict, laws: dict, name: str, n_col: str, metric: str) -> dict | None:
    """Each held-out run's final metric against law `name` (risk: of N and T; loss_n: of N alone), with the 90%
    interval `predict` would give; the refusal when the refit has no such law or it failed."""
    refused = failure(data, name)
    if refused:
        return {"refused": refused}
    per_run, calibration = [], None
    for row in final.itertuples(index=False):
        n, t, observed = getattr(row, n_col), row.seen_interactions, getattr(row, metric)
        x = (n,) if name == "loss_n" else (n, t)
        low, high, calibration = interval_90(data, name, laws[name], *x)  # as `predict` would give it
        per_run.append(
            _row({"run_id": row.run_id, "N": float(n), "T": float(t)}, observed, laws[name].predict(*x), low, high)
        )
    return {"per_run": per_run, **_errors(per_run), "interval": _interval_kind(calibration)} if per_run else None


def _refit_options(options: FitOptions) -> FitOptions:
    """A hold-out refit needs the laws and their calibration (its own backtest), not the per-slice fits."""
    return replace(options, slices=False)


def _interval_kind(calibration: dict | None) -> str:
    """How the refit's 90% intervals were made: calibrated by its own backtest, or the bootstrap alone (and why)."""
    if calibration and calibration.get("calibrated"):
        return f"calibrated on the refit's {calibration['n_scores']} backtest points"
    return "bootstrap only" + (f": {calibration['why']}" if calibration and calibration.get("why") else "")


def _lean(laws: dict[str, Any]) -> dict[str, Any]:
    return {name: {k: v for k, v in law.items() if k != "bootstrap"} for name, law in laws.items()}


def holdout_flops_above(checkpoints: pd.DataFrame, budget: float, options: FitOptions) -> dict[str, Any]:
    """Fit on checkpoints with at most `budget` FLOPs; predict the full envelope above it with the saturating law."""
    train = checkpoints[checkpoints[options.flops] <= budget]
    if train.run_id.nunique() < 2 or not (checkpoints[options.flops] > budget).any():
        raise ScalerecError(
            f"--holdout-flops-above {budget:.3g}: needs at least 2 runs below it and checkpoints above it"
        )
    data = fit_laws(train, _refit_options(options))
    return {
        "budget": budget,
        "fit_on_checkpoints": len(train),
        "envelope_law": _envelope_check(checkpoints, train, data, fitted_laws(data), options),
        "laws_without_held_out": _lean(data["laws"]),
    }


def _envelope_check(
    full: pd.DataFrame, train: pd.DataFrame, data: dict, laws: dict, options: FitOptions
) -> dict | None:
    """The full data's envelope beyond the training data's largest compute, against the saturating law."""
    env = envelope(full, options.metric, options.flops, N_COLUMNS[options.n_column], data["options"]["direction"])
    beyond = env[env.flops > train[options.flops].max()]
    if beyond.empty:
        return None
    if failure(data, "saturating"):
        return {"refused": failure(data, "saturating")}
    flops = beyond.flops.to_numpy()
    predicted = laws["saturating"].predict(flops)
    low, high, calibration = interval_90(data, "saturating", laws["saturating"], flops)
    rows = [
        _row({"flops": float(c)}, o, p, lo, hi)
        for c, o, p, lo, hi in zip(beyond.flops, beyond.metric, predicted, low, high)
    ]
    return {"points": rows, **_errors(rows), "interval": _interval_kind(calibration)}
