"""Backtest and calibrated prediction intervals: how wrong a law is when it extrapolates, measured on the store itself.

A bootstrap over runs measures how noisy the parameters of a law are, not how wrong the law is beyond its data. The
backtest measures that: rolling-origin hold-outs along each axis a user extrapolates on (the largest runs by N, by
final compute C, by data size D, one, two, three steps back), each fitted on the rest and predicting what it did not
see. Its residuals, as scores |ln(observed / predicted)| / (1 + d) with d the extrapolation distance in ln units,
calibrate a split-conformal band: a new prediction at distance d gets predicted · exp(±q (1 + d)), q the conformal
90% quantile of the scores; `predict` reports the union of that band and the bootstrap interval. The achieved
coverage is measured by leaving each hold-out out of the calibration in turn (cross-validated), so it is not the
coverage of the points q was computed from. With fewer than 9 scores a 90% conformal quantile does not exist: the
law is then reported as not calibrated.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ScalerecError
from .candidates import NT_LAWS, nt_inputs
from .envelope import envelope, select_points
from .fit_options import N_COLUMNS

LEVEL = 0.90
AXES = ("N", "C", "D")
CALIBRATED_LAWS = ("risk", "saturating")
DISTANCE_BINS = (
    (0.0, 0.0, "inside the fitted range"),
    (0.0, math.log(2), "up to 2x beyond"),
    (math.log(2), math.log(5), "2-5x beyond"),
    (math.log(5), math.inf, "more than 5x beyond"),
)
METHOD = (
    "split-conformal on |ln(observed / predicted)| / (1 + d) over the backtest's held-out points, d the "
    "extrapolation distance in ln units beyond the fitted range; the interval is the union of "
    "predicted · exp(±q (1 + d)) and the bootstrap interval"
)


def extrapolation_distance(
    log_x: tuple[float, ...] | tuple[np.ndarray, ...], log_ranges: list[list[float]]
) -> np.ndarray:
    """How far (in ln units, summed over inputs) a point lies outside the ranges a law was fitted on; 0 inside."""
    total = 0.0
    for value, (low, high) in zip(log_x, log_ranges):
        value = np.asarray(value, dtype=float)
        total = total + np.maximum(value - high, 0.0) + np.maximum(low - value, 0.0)
    return np.asarray(total, dtype=float)


def law_distance(x_range: list[list[float]], *x: Any) -> np.ndarray:
    """Extrapolation distance of a query (C,) or (N, T) from the law's fitted x_range, in natural-log units."""
    return extrapolation_distance(
        tuple(np.log(np.asarray(v, dtype=float)) for v in x), [[math.log(low), math.log(high)] for low, high in x_range]
    )


def score(observed: np.ndarray, predicted: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """Nonconformity scores: |ln(observed / predicted)| / (1 + d); infinite where either is not positive."""
    observed, predicted = np.asarray(observed, dtype=float), np.asarray(predicted, dtype=float)
    with np.errstate(all="ignore"):
        ratio = np.abs(np.log(observed / predicted))
    ratio = np.where((observed > 0) & (predicted > 0) & np.isfinite(ratio), ratio, np.inf)
    return ratio / (1.0 + np.asarray(distance, dtype=float))


def conformal_quantile(scores: np.ndarray, level: float = LEVEL) -> float:
    """The split-conformal quantile: the ⌈(n + 1)·level⌉-th smallest score (inf when n is too small for it)."""
    scores = np.sort(np.asarray(scores, dtype=float))
    k = math.ceil((len(scores) + 1) * level - 1e-9)  # (n + 1)·0.9 must not round up past an integer
    return float(scores[k - 1]) if k <= len(scores) else math.inf


def calibrated_band(predicted: np.ndarray, distance: np.ndarray, q: float) -> tuple[np.ndarray, np.ndarray]:
    """predicted · exp(±q (1 + d))."""
    spread = np.exp(q * (1.0 + np.asarray(distance, dtype=float)))
    predicted = np.asarray(predicted, dtype=float)
    return predicted / spread, predicted * spread


def hold_out_sets(runs: pd.DataFrame, axis: str, max_origins: int, min_fit_runs: int = 3) -> list[list[str]]:
    """Runs held out at each origin along `axis` (a column of `runs`: N, C or D), nearest origin first: the runs at
    the largest 1, 2, ... distinct values (for C, whose values rarely repeat, the largest 10%, 20%, ... of runs),
    as long as at least `min_fit_runs` runs and 2 distinct values of the axis remain to fit on."""
    values = runs[axis]
    if axis == "C":
        order = values.sort_values(ascending=False).index
        counts = sorted({max(1, math.ceil(share * len(runs))) for share in (0.1, 0.2, 0.3, 0.4, 0.5)})
        candidates = [list(order[:k]) for k in counts]
    else:
        levels = np.sort(values.unique())[::-1]
        candidates = [list(values.index[values >= level]) for level in levels[:-1]]
    out = []
    for held in candidates:
        rest = values.drop(held)
        if len(rest) >= min_fit_runs and rest.nunique() >= 2 and held not in out:
            out.append(held)
    return out[:max_origins]


def backtest(
    checkpoints: pd.DataFrame,
    options: Any,
    max_origins: int = 3,
    level: float = LEVEL,
    complexity: dict[str, tuple[int, float]] | None = None,
    failed: set[str] | frozenset[str] = frozenset(),
    *,
    refit: Callable[[pd.DataFrame, Any], dict[str, Any]],
) -> dict[str, Any]:
    """Rolling-origin backtest of the N,T laws and the envelope law, and their calibration (see the module doc).

    `options` is the FitOptions of the main fit (its direction resolved); each origin refits without bootstrap,
    with `refit(checkpoints, options)` (law_set.fit_backtested_laws);
    `complexity`: per N,T law, (parameters, BIC of the main fit), the tie-break of the law selection; `failed`: laws
    whose main fit failed, which the selection never picks. Returns the laws.json `backtest` section."""
    n_col = N_COLUMNS[options.n_column]
    runs = checkpoints.groupby("run_id").agg(
        N=(n_col, "first"), C=(options.flops, "max"), D=("dataset_interactions", "first")
    )
    env_all = envelope(checkpoints, options.metric, options.flops, n_col, options.direction)
    points: dict[str, list[dict[str, Any]]] = {name: [] for name in (*CALIBRATED_LAWS, *NT_LAWS, "loss_n")}
    origins, skipped = [], 0
    for axis in AXES:
        for step, held in enumerate(hold_out_sets(runs, axis, max_origins), start=1):
            train = checkpoints[~checkpoints.run_id.isin(held)]
            try:
                laws = refit(train, options)
            except (ValueError, ScalerecError):  # too few points left: this origin cannot be tested
                laws = {}
            if "risk" not in laws or "saturating" not in laws:  # too few points left for the laws it judges
                skipped += 1
                continue
            group = len(origins)
            origins.append(
                {"axis": axis, "step": step, "held_out_runs": sorted(held), "fit_on_runs": int(train.run_id.nunique())}
            )
            held_points = select_points(
                checkpoints[checkpoints.run_id.isin(held)],
                options.points,
                options.metric,
                options.flops,
                options.direction,
            )
            n, t = held_points[n_col].to_numpy(float), held_points.seen_interactions.to_numpy(float)
            for name in (*NT_LAWS, "loss_n"):  # every N,T law (and a loss's L(N)) on the same held-out points
                if name not in laws:
                    continue
                x = (n,) if name == "loss_n" else nt_inputs(name, held_points, n_col)
                predicted, distance = laws[name].predict(*x), law_distance(laws[name].x_range_, *x)
                for i, row in enumerate(held_points.itertuples(index=False)):
                    points[name].append(
                        {
                            "group": group,
                            "axis": axis,
                            "run_id": row.run_id,
                            "N": float(n[i]),
                            "T": float(t[i]),
                            "observed": float(getattr(row, options.metric)),
                            "predicted": float(predicted[i]),
                            "distance": float(distance[i]),
                        }
                    )
            beyond = env_all[env_all.flops > train[options.flops].max()]
            saturating = laws["saturating"]
            flops = beyond.flops.to_numpy(float)
            for c, observed, predicted, distance in zip(
                beyond.flops, beyond.metric, saturating.predict(flops), law_distance(saturating.x_range_, flops)
            ):
                points["saturating"].append(
                    {
                        "group": group,
                        "axis": axis,
                        "flops": float(c),
                        "observed": float(observed),
                        "predicted": float(predicted),
                        "distance": float(distance),
                    }
                )
    summaries = {name: _summary(rows, level) for name, rows in points.items() if rows or name in CALIBRATED_LAWS}
    return {
        "level": level,
        "method": METHOD,
        "origins": origins,
        "skipped_origins": skipped,
        "laws": summaries,
        "selection": select_nt_law(summaries, complexity, failed=failed),
    }


def select_nt_law(
    summaries: dict[str, dict[str, Any]],
    complexity: dict[str, tuple[int, float]] | None = None,
    tolerance: float = 0.05,
    failed: set[str] | frozenset[str] = frozenset(),
) -> dict[str, Any]:
    """The N,T law `predict` uses: the lowest held-out MAE among Eq. 4 and the candidates tested on the same
    points. `complexity` (name -> (parameters, BIC of the full fit)) adds two rules: a candidate whose BIC is not
    below Eq. 4's is not eligible (its extra term does not earn its parameter in-sample, so a held-out win is
    luck: on generated stores where Eq. 4 is the truth, candidates with a term of ≈ 0 won by 7-13% by chance); and
    laws within `tolerance` (relative) of the best MAE tie, won by the fewest parameters, then the lowest BIC.
    Without it, Eq. 4 first, then the candidates in their order. A law in `failed` (its main fit determined
    nothing) is never eligible, and the BIC rule then does not hold the others to it; when every law failed, none
    is selected (`selected` None)."""
    reference = summaries.get("risk") or {}
    tested = {
        name: summaries[name]
        for name in NT_LAWS
        if name in summaries and summaries[name].get("n") and summaries[name]["n"] == reference.get("n")
    }
    if not tested:
        if "risk" in failed:
            return {"selected": None, "why": "no backtest point, and the paper's Eq. 4 failed", "candidates": []}
        return {"selected": "risk", "why": "no backtest point: the paper's Eq. 4 by default", "candidates": []}
    complexity = {
        name: (params, bic if bic is not None and np.isfinite(bic) else np.inf)
        for name, (params, bic) in (complexity or {}).items()
    }
    eq4_bic = complexity.get("risk", (0, np.inf))[1] if "risk" not in failed else np.inf
    eligible = {
        name: e
        for name, e in tested.items()
        if name not in failed and (name == "risk" or name not in complexity or complexity[name][1] < eq4_bic)
    }
    table = [
        {
            "law": name,
            "n": e["n"],
            "mae": e["mae"],
            "mape": e["mape"],
            "coverage_calibrated_cv": e["coverage_calibrated_cv"],
            "bic": None if name not in complexity or not np.isfinite(complexity[name][1]) else complexity[name][1],
            "eligible": name in eligible,
            **({"failed": True} if name in failed else {}),
        }
        for name, e in tested.items()
    ]
    if not eligible:
        return {"selected": None, "why": "every N,T law's fit failed (see their flags)", "candidates": table}
    best = min(entry["mae"] for entry in eligible.values())
    tied = [name for name in eligible if eligible[name]["mae"] <= best * (1 + tolerance)]  # Eq. 4 first
    order = {name: i for i, name in enumerate(tied)}
    selected = min(tied, key=lambda name: (*complexity.get(name, (order[name], np.inf)), order[name]))
    among = (
        "the candidates whose fit did not fail (Eq. 4's did, so no BIC rule)"
        if "risk" in failed
        else "Eq. 4 and the candidates whose BIC beats Eq. 4's"
    )
    return {
        "selected": selected,
        "why": f"lowest held-out MAE among {among}; "
        f"laws within {tolerance:.0%} of it tie, won by the fewest parameters, then the lowest BIC",
        "candidates": table,
    }


def _summary(rows: list[dict[str, Any]], level: float) -> dict[str, Any]:
    """Errors, calibration and cross-validated coverage of one law's backtest points."""
    if not rows:
        return {"n": 0, "points": [], "calibration": {"calibrated": False, "why": "no backtest point"}}
    frame = pd.DataFrame(rows)
    scores = score(frame.observed, frame.predicted, frame.distance)
    q = conformal_quantile(scores, level)
    inside = np.full(len(frame), np.nan)  # NaN: the other origins are too few to calibrate a judgement
    for group in frame.group.unique():  # leave each origin out of the calibration that judges it
        mine = (frame.group == group).to_numpy()
        q_others = conformal_quantile(scores[~mine], level)
        if np.isfinite(q_others):
            inside[mine] = scores[mine] <= q_others
    frame["inside_calibrated_cv"] = inside
    errors = _errors(frame)
    bins = []
    for low, high, label in DISTANCE_BINS:
        chosen = frame[(frame.distance == 0) if high == 0 else (frame.distance > low) & (frame.distance <= high)]
        if len(chosen):
            bins.append({"distance": label, **_errors(chosen)})
    calibration = {
        "calibrated": bool(np.isfinite(q)),
        "q": q if np.isfinite(q) else None,
        "n_scores": len(scores),
        "level": level,
    }
    if not np.isfinite(q):
        need = next(n for n in range(1, 10_000) if math.ceil((n + 1) * level - 1e-9) <= n)
        finite = int(np.isfinite(scores).sum())
        calibration["why"] = (
            f"only {len(scores)} backtest points ({finite} where the law was positive); a "
            f"{level:.0%} conformal interval needs at least {need} (and 90% of them finite)"
        )
    return {**errors, "by_distance": bins, "calibration": calibration, "points": frame.to_dict("records")}


def error_summary(observed: Any, predicted: Any) -> dict[str, Any]:
    """n, MAE and MAPE (None when an observation is 0) of predictions against what was observed."""
    observed, predicted = np.asarray(observed, dtype=float), np.asarray(predicted, dtype=float)
    error = np.abs(predicted - observed)
    return {
        "n": len(observed),
        "mae": float(error.mean()),
        "mape": float(np.mean(error / np.abs(observed))) if (observed != 0).all() else None,
    }


def _errors(frame: pd.DataFrame) -> dict[str, Any]:
    return {
        **error_summary(frame.observed, frame.predicted),
        "coverage_calibrated_cv": float(frame.inside_calibrated_cv.mean())
        if frame.inside_calibrated_cv.notna().any()
        else None,
    }
