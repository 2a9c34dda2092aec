"""`scalerec fit-laws`, the pipeline: from checkpoint rows to every fitted law, with bootstrap intervals, the
backtest and the per-slice fits (the laws.json content).

fit_options.py holds what is asked and the input checks, law_set.py one fit of every law, bootstrap_pool.py the
resampled refits, backtest.py the hold-outs, laws_file.py the mapping written."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from ..errors import ScalerecError
from ..metric_direction import resolve_direction
from .backtest import backtest
from .bootstrap_pool import bootstrap_law_set
from .estimators import Law
from .fit_options import N_COLUMNS, SLICE_BOOTSTRAP, FitOptions, check_columns, law_runs, without_finetuning
from .law_set import PreparedRuns, fit_backtested_laws, fit_law_set
from .laws_file import LAWS_SCHEMA_VERSION, laws_mapping, semantics_summary
from .slices import MIN_SLICE_USERS, keep_large_slices, slice_metrics, users_column

__all__ = [
    "FitOptions",
    "LAWS_SCHEMA_VERSION",
    "N_COLUMNS",
    "SLICE_BOOTSTRAP",
    "fit_laws",
    "fit_slices",
    "semantics_summary",
    "without_finetuning",
]


def fit_laws(
    checkpoints: pd.DataFrame, options: FitOptions = FitOptions(), progress: bool = False, strict: bool = False
) -> dict[str, Any]:
    """Fit every law and return the laws.json mapping.

    Checkpoints with a NaN/inf metric (a diverged run) are dropped and counted in data.dropped_non_finite_rows;
    with `strict` they are an error instead.
    """
    # Thousands of tiny L-BFGS-B problems: BLAS threads only add overhead (13x slower on 2 cores, measured on the
    # demo store: 2.7 s against 0.2 s a fit), and more when training runs beside.
    with threadpool_limits(1):
        return _fit_laws(checkpoints, options, progress, strict)


def _fit_laws(checkpoints: pd.DataFrame, options: FitOptions, progress: bool, strict: bool) -> dict[str, Any]:
    checkpoints, finetuned = law_runs(checkpoints)
    check_columns(checkpoints, options)
    options = replace(options, direction=resolve_direction(options.metric, options.direction))
    checkpoints, small_slices = keep_large_slices(checkpoints, options.metric, options.min_slice_users)
    finite = np.isfinite(checkpoints[options.metric].astype(float))
    dropped = int((~finite).sum())
    if dropped and strict:
        bad = checkpoints.run_id[~finite.to_numpy()].unique()
        raise ScalerecError(
            f"{dropped} checkpoints have a NaN/inf {options.metric} (runs {', '.join(bad[:5])}"
            f"{' ...' if len(bad) > 5 else ''}); without --strict they are left out and counted"
        )
    checkpoints = checkpoints[finite.to_numpy()].reset_index(drop=True)
    if checkpoints.run_id.nunique() < 2:
        raise ScalerecError(f"{checkpoints.run_id.nunique()} run(s): fitting laws needs at least 2 runs")
    data, skipped = PreparedRuns(checkpoints, options), {}
    fitted = fit_law_set(data, options, skipped=skipped)
    if not fitted:
        raise ScalerecError(f"too few points to fit any law: {'; '.join(skipped.values())}")
    bootstrap_law_set(data, options, fitted, progress)
    summary = laws_mapping(checkpoints, options, fitted)
    summary["not_fitted"] = skipped
    summary["data"]["dropped_non_finite_rows"] = dropped
    summary["data"]["finetuning_rows_left_out"] = finetuned
    summary["data"]["training_semantics"], summary["warnings"] = semantics_summary(checkpoints)
    if small_slices:
        summary["data"]["slice"] = small_slices
        if small_slices["left_out_checkpoints"]:
            summary["warnings"].append(
                f"{small_slices['left_out_checkpoints']} checkpoints of {small_slices['left_out_runs']} runs were "
                f"left out: their slice holds fewer than {options.min_slice_users} users "
                f"({small_slices['users_column']} {small_slices['users_range'][0]}–{small_slices['users_range'][1]})"
            )
    if options.slices and users_column(options.metric) is None and slice_metrics(checkpoints, options.metric):
        summary["slices"] = fit_slices(checkpoints, options, options.min_slice_users, main=fitted)
    if options.backtest:
        summary["backtest"] = backtest(
            checkpoints,
            options,
            refit=fit_backtested_laws,
            complexity={name: (len(law.param_specs), law.quality_.get("bic")) for name, law in fitted.items()},
            failed={name for name, law in fitted.items() if law.failures()},
        )
    return summary


def fit_slices(
    checkpoints: pd.DataFrame, options: FitOptions, min_users: int = MIN_SLICE_USERS, main: dict[str, Law] | None = None
) -> list[dict[str, Any]]:
    """One row per slice of options.metric (and one for the metric itself, slice "all"): users, the exponents
    α (N) and β (T) of Eq. 4 and the envelope's slope b (per e-fold of C), each with its 90% bootstrap interval,
    and the best metric on the envelope; a slice too small to fit has `left_out` saying why. `main`: the laws
    already fitted on options.metric, which the "all" row reuses rather than refits."""
    rows = []
    for metric in [options.metric, *slice_metrics(checkpoints, options.metric)]:
        name = metric[len(options.metric) + 2 :] or "all"
        column = users_column(metric)
        median = float(checkpoints[column].median()) if column else float("nan")
        users = int(median) if np.isfinite(median) else None
        row: dict[str, Any] = {"slice": name, "metric": metric, "users": users, "left_out": None}
        rows.append(row)
        sub = checkpoints[np.isfinite(checkpoints[metric].astype(float))]
        try:
            sub, _ = keep_large_slices(sub, metric, min_users)
            slice_options = replace(options, metric=metric, bootstrap=min(options.bootstrap, SLICE_BOOTSTRAP))
            data = PreparedRuns(sub.reset_index(drop=True), slice_options)
            skipped: dict[str, str] = {}
            fitted = (
                main
                if main and metric == options.metric
                else fit_law_set(data, slice_options, scope="core", skipped=skipped)
            )
        except (ScalerecError, ValueError) as exc:
            row["left_out"] = str(exc)
            continue
        if "risk" not in fitted or "saturating" not in fitted:
            row["left_out"] = "; ".join(skipped.values()) or "the envelope law or Eq. 4 was not fitted"
            continue
        if fitted is not main:
            bootstrap_law_set(data, slice_options, fitted, progress=False, scope="core")
        risk, sat = fitted["risk"], fitted["saturating"]
        for law, param in ((risk, "alpha"), (risk, "beta"), (sat, "b")):  # a failed fit gives no number
            failed = bool(law.failures())
            row[param] = None if failed else law.params_[param]
            row[f"{param}_interval_90"] = [None, None] if failed else list(law.intervals()[param])
        row["failed"] = risk.failures() + sat.failures()
        row["best_on_envelope"] = float(data.matrix.envelope().metric.max())
        row["flags"] = risk.flags() + sat.flags()
        row["r2"] = risk.quality_.get("r2")
    return rows
