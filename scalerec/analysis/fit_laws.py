"""`scalerec fit-laws`: from checkpoint rows to every fitted law, with bootstrap intervals (the laws.json content)."""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from .. import __version__
from ..errors import ScalerecError
from ..machine import available_cores
from ..metric_direction import HIGHER, LOWER, metric_domain, resolve_direction
from ..shapes import paper_catalog
from . import laws
from .candidates import ENVELOPE_LAW, NT_CANDIDATES, NT_LAW, informative, nt_inputs
from .envelope import EnvelopeMatrix, select_points
from .estimators import Law, LinearLaw, LossLaw, LossNLaw, PowerLaw
from .fit import bootstrap_runs, interval
from .slices import MIN_SLICE_USERS, keep_large_slices, slice_metrics, users_column

LAWS_SCHEMA_VERSION = 2  # 2: the envelope laws take C, not ln C (their x_range with them)
N_COLUMNS = {"non_embedding": "non_embedding_params", "total": "total_params"}
# resamples per slice at most: a dozen slices x 200 would triple fit-laws' time (demo store: 21 s, 36 s with 100)
SLICE_BOOTSTRAP = 50


@dataclass(frozen=True)
class FitOptions:
    metric: str = "valid_ndcg_at_5"
    flops: str = "train_flops"  # or forward_macs, the SRT paper's own convention
    points: str = "final"  # which checkpoints feed the N,T law: envelope.POINT_POLICIES
    n_column: str = "non_embedding"  # N of the N,T law: non_embedding | total
    bootstrap: int = 200  # resamples of whole runs for the 90% intervals (0 = none)
    huber_delta: float = 0.01  # in metric units
    seed: int = 0
    backtest: bool = True  # rolling-origin hold-outs that calibrate the intervals (backtest.py)
    slices: bool = True  # also fit Eq. 4 and the envelope per evaluation slice (slices.py)
    min_slice_users: int = MIN_SLICE_USERS  # checkpoints whose slice holds fewer users are left out of its fits
    direction: str | None = None  # "higher" or "lower" is better; None: from the metric's name (metric_direction)


def without_finetuning(checkpoints: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The checkpoints of runs trained from scratch, and how many fine-tuning rows were left out: a fine-tuning
    run (scalerec finetune) starts from another run's weights, so it is not a point of a scaling law."""
    if "parent_run_id" not in checkpoints.columns:
        return checkpoints, 0
    is_finetune = checkpoints.parent_run_id.notna().to_numpy()
    return checkpoints[~is_finetune].reset_index(drop=True), int(is_finetune.sum())


def check_columns(checkpoints: pd.DataFrame, options: FitOptions) -> None:
    """The metric, compute and N columns exist and are numbers (a named one-line error otherwise)."""
    if options.n_column not in N_COLUMNS:
        raise ScalerecError(f"--n-column must be non_embedding or total, not {options.n_column!r}")
    metrics = sorted(c for c in checkpoints.columns if c.startswith(("valid_", "test_")))
    for column in (options.metric, options.flops, N_COLUMNS[options.n_column]):
        if column not in checkpoints.columns:
            known = f" (metrics in the store: {', '.join(metrics)})" if column == options.metric else ""
            raise ScalerecError(f"the run store has no column {column!r}{known}")
        values = checkpoints[column]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            raise ScalerecError(
                f"column {column!r} holds {values.dtype} values, not numbers: it cannot be a "
                f"metric (metrics in the store: {', '.join(metrics)})"
            )


class _Prepared:
    """What every fit and refit reads: the envelope matrix and the N,T-law points, each indexed by run."""

    def __init__(self, checkpoints: pd.DataFrame, options: FitOptions) -> None:
        self.matrix = EnvelopeMatrix(
            checkpoints, options.metric, options.flops, N_COLUMNS[options.n_column], options.direction
        )
        self.points = select_points(checkpoints, options.points, options.metric, options.flops, options.direction)
        run_index = {run_id: i for i, run_id in enumerate(self.matrix.run_ids)}
        self.point_run = self.points.run_id.map(run_index).to_numpy()

    def resample(self, draw: np.ndarray | None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(envelope, N,T points) of the runs drawn (with repetition: a run drawn twice weighs its points twice)."""
        if draw is None:
            return self.matrix.envelope(), self.points
        copies = np.bincount(draw, minlength=len(self.matrix.run_ids))[self.point_run]
        return self.matrix.envelope(draw), self.points.iloc[np.repeat(np.arange(len(self.points)), copies)]


def _fit_all(
    data: _Prepared,
    options: FitOptions,
    draw: np.ndarray | None = None,
    starts: dict[str, list] | None = None,
    scope: str = "all",
    skipped: dict[str, str] | None = None,
) -> dict[str, Law]:
    """Every law on all runs, or on a resample of them; starts (from the full fit) make bootstrap refits cheap.
    `scope` "backtested": just the laws the backtest judges (the envelope law, the N,T laws, and for a loss L(N));
    "core": the
    envelope law and Eq. 4 (what a slice's comparison reads). A law its points cannot fit is left out, the others
    are still fitted; `skipped` (when given) collects why, by law."""
    starts, skipped = starts or {}, skipped if skipped is not None else {}
    env, points = data.resample(draw)
    direction, delta = options.direction or HIGHER, options.huber_delta
    n_points, t_points = points[N_COLUMNS[options.n_column]], points.seen_interactions
    envelope_law = ENVELOPE_LAW[direction](delta, domain=metric_domain(options.metric, direction))
    jobs = {"saturating": lambda: envelope_law.fit((env.flops,), env.metric, starts.get("saturating"))}
    if scope == "all":
        jobs |= {
            "linear": lambda: LinearLaw(delta).fit((env.flops,), env.metric, starts.get("linear")),
            "n_opt": lambda: PowerLaw().fit((env.flops,), env.n),
            "t_opt": lambda: PowerLaw().fit((env.flops,), env.seen_interactions),
        }
    jobs["risk"] = lambda: NT_LAW[direction](delta).fit(
        (n_points, t_points), points[options.metric], starts.get("risk")
    )
    candidates = NT_CANDIDATES.items() if scope != "core" else ()
    for name, candidate in candidates:  # Eq. 4 with a shape, repetition, schedule or negatives term; or no ceiling
        if name in starts or (not starts and informative(name, points)):  # refits: the laws the fit had
            jobs[name] = lambda name=name, law=candidate.laws[direction]: law(delta).fit(
                nt_inputs(name, points, N_COLUMNS[options.n_column]), points[options.metric], starts.get(name)
            )
    if scope != "core" and direction == LOWER:  # the LSRM paper's law of a loss against N alone (backtested too)
        jobs["loss_n"] = lambda: LossNLaw(delta).fit((n_points,), points[options.metric], starts.get("loss_n"))
    elif scope == "all" and "valid_loss" in points.columns and np.isfinite(points.valid_loss).all():
        # Side laws of the validation loss beside a ranking metric, on residuals of log-loss.
        jobs["loss_nt"] = lambda: LossLaw(delta).fit((n_points, t_points), points.valid_loss, starts.get("loss_nt"))
        jobs["loss_n"] = lambda: LossNLaw(delta).fit((n_points,), points.valid_loss, starts.get("loss_n"))
    fitted: dict[str, Law] = {}
    for name, job in jobs.items():
        try:
            fitted[name] = job()
        except ValueError as exc:  # too few points (or distinct values) for this law's parameters
            skipped[name] = str(exc)
    return fitted


def fit_backtested_laws(checkpoints: pd.DataFrame, options: FitOptions) -> dict[str, Law]:
    """The envelope law and the N,T laws fitted on `checkpoints` (already checked, finite), without bootstrap:
    one origin of the backtest; a law with too few points is left out of it."""
    return _fit_all(_Prepared(checkpoints, options), options, scope="backtested")


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
    checkpoints, finetuned = without_finetuning(checkpoints)
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
    data, skipped = _Prepared(checkpoints, options), {}
    fitted = _fit_all(data, options, skipped=skipped)
    if not fitted:
        raise ScalerecError(f"too few points to fit any law: {'; '.join(skipped.values())}")
    _bootstrap(data, options, fitted, progress)
    summary = _summarise(checkpoints, options, fitted)
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
        from .backtest import backtest

        summary["backtest"] = backtest(
            checkpoints,
            options,
            complexity={name: (len(law.param_specs), law.quality_.get("bic")) for name, law in fitted.items()},
            failed={name for name, law in fitted.items() if law.failures()},
        )
    return summary


def semantics_summary(checkpoints: pd.DataFrame) -> tuple[dict[str, int], list[str]]:
    """Runs per training semantics (rows without the column: 0), and a warning when the store mixes them: rows of
    two semantics were computed by code that computes different things (store/provenance.py)."""
    column = checkpoints.get("training_semantics")
    semantics = (column.fillna(0) if column is not None else pd.Series(0, index=checkpoints.index)).astype(int)
    per_run = semantics.groupby(checkpoints.run_id).agg(lambda s: tuple(sorted(set(s))))
    counts = {str(v): int((per_run.map(lambda t, v=v: v in t)).sum()) for v in sorted(set(semantics))}
    warnings = []
    if len(counts) > 1:
        mixed_runs = per_run[per_run.map(len) > 1]
        warnings.append(
            "the store mixes training semantics "
            + ", ".join(f"{v} ({n} runs)" for v, n in counts.items())
            + (
                f"; {len(mixed_runs)} runs were resumed by other code (e.g. {mixed_runs.index[0]})"
                if len(mixed_runs)
                else ""
            )
            + ": their rows were computed differently; fit one semantics at a time or retrain "
            "(scalerec grid --retrain-stale)"
        )
    return counts, warnings


# Bootstraps of at least this many resamples run in worker processes, one per core (fork: the workers inherit the
# prepared data): each resample is an independent refit from the same start, so the result is the serial one.
PARALLEL_BOOTSTRAP = 50
_WORK: dict[str, Any] = {}  # what forked workers read: set just before the pool starts


def _refit_thetas(draw: np.ndarray) -> dict[str, np.ndarray]:
    """The parameters of every law refitted on one resample (NaN for a law the resample could not fit)."""
    data, options, fitted, starts, scope = (_WORK[k] for k in ("data", "options", "fitted", "starts", "scope"))
    try:
        refit = _fit_all(data, options, draw, starts, scope)
    except ValueError:  # a resample with too few distinct points: counted as missing
        refit = {}
    return {
        name: refit[name].theta() if name in refit else np.full(len(law.param_specs), np.nan)
        for name, law in fitted.items()
    }


def _bootstrap(
    data: _Prepared, options: FitOptions, fitted: dict[str, Law], progress: bool, scope: str = "all"
) -> None:
    """Refit every law of `scope` on resamples of whole runs, starting from the full fit's optimum."""
    _WORK.update(
        data=data,
        options=options,
        fitted=fitted,
        scope=scope,
        starts={name: [list(law.theta())] for name, law in fitted.items()},
    )
    draws = bootstrap_runs(np.arange(len(data.matrix.run_ids)), options.bootstrap, options.seed)
    workers = min(available_cores(), 8)
    try:
        if workers > 1 and len(draws) >= PARALLEL_BOOTSTRAP and "fork" in mp.get_all_start_methods():
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
                results = list(
                    tqdm(
                        pool.map(_refit_thetas, draws, chunksize=max(1, len(draws) // (4 * workers))),
                        desc="bootstrap",
                        total=len(draws),
                        disable=not progress,
                        leave=False,
                    )
                )
        else:
            results = [_refit_thetas(draw) for draw in tqdm(draws, desc="bootstrap", disable=not progress, leave=False)]
    finally:
        _WORK.clear()
    for name, law in fitted.items():
        law.with_bootstrap([r[name] for r in results])


def _summarise(checkpoints: pd.DataFrame, options: FitOptions, fitted: dict[str, Law]) -> dict[str, Any]:
    final = checkpoints[checkpoints.is_final] if checkpoints.is_final.any() else checkpoints
    n_col = N_COLUMNS[options.n_column]
    k_samples = final[options.flops] / (final[n_col] * final.seen_interactions)
    k = float(np.median(k_samples))
    saturating = fitted.get("saturating")
    usable = saturating is not None and not saturating.failures()
    shapes = (
        checkpoints.groupby(["n_layers", "n_heads", "hidden"])[n_col]
        .first()
        .reset_index()
        .rename(columns={n_col: "n"})
        .assign(source="runs")
        .to_dict("records")
    )
    # The catalog's N is computed, so only in the non-embedding convention (total parameters depend on the
    # vocabulary or catalog); with the runs' own item encoder, so that it is the N the laws were fitted on.
    # Imported tables have no item encoder (nor, often, a shape): no SRT catalog for them.
    encoders = checkpoints.item_encoder.dropna().mode() if "item_encoder" in checkpoints else pd.Series(["text"])
    encoder = str(encoders.iloc[0]) if len(encoders) else None
    if options.n_column == "non_embedding" and encoder is not None:
        shapes += paper_catalog(encoder)
    return {
        "schema_version": LAWS_SCHEMA_VERSION,
        "scalerec": __version__,
        "options": asdict(options),
        "data": {
            "runs": int(checkpoints.run_id.nunique()),
            "checkpoints": len(checkpoints),
            "finished_runs": int(checkpoints.is_final.sum()),
            "n_range": [float(checkpoints[n_col].min()), float(checkpoints[n_col].max())],
            "t_range": [float(checkpoints.seen_interactions.min()), float(checkpoints.seen_interactions.max())],
            "flops_range": [float(checkpoints[options.flops].min()), float(checkpoints[options.flops].max())],
            "dataset_interactions": sorted(int(v) for v in checkpoints.dataset_interactions.unique()),
            "epochs_range": [float(checkpoints.epoch.min()), float(checkpoints.epoch.max())],
            "n_column": n_col,
            "item_encoder": encoder,
        },
        "laws": {name: law.to_dict() for name, law in fitted.items()},
        "saturating_extra": {
            "asymptote": saturating.asymptote_,
            "asymptote_interval_90": list(
                interval(saturating.sign_of_a * (saturating.bootstrap_[:, 0] - saturating.bootstrap_[:, 3]))
            )
            if len(saturating.bootstrap_)
            else [None, None],
            "diminishing_returns_flops": _diminishing_returns(saturating),
        }
        if usable
        else {"asymptote": None, "asymptote_interval_90": [None, None], "diminishing_returns_flops": None},
        "allocation": {"k_flops_per_param_target": k, "k_range": [float(k_samples.min()), float(k_samples.max())]},
        "shapes": shapes,
    }


def _diminishing_returns(saturating: Law) -> float | None:
    """C past which each e-fold of compute gains less than half the steepest gain; None beyond float range."""
    ln_c = laws.diminishing_returns_ln_c(saturating.params_["b"], saturating.params_["c"])
    return float(np.exp(ln_c)) if ln_c < 700 else None


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
            data = _Prepared(sub.reset_index(drop=True), slice_options)
            skipped: dict[str, str] = {}
            fitted = (
                main
                if main and metric == options.metric
                else _fit_all(data, slice_options, scope="core", skipped=skipped)
            )
        except (ScalerecError, ValueError) as exc:
            row["left_out"] = str(exc)
            continue
        if "risk" not in fitted or "saturating" not in fitted:
            row["left_out"] = "; ".join(skipped.values()) or "the envelope law or Eq. 4 was not fitted"
            continue
        if fitted is not main:
            _bootstrap(data, slice_options, fitted, progress=False, scope="core")
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
