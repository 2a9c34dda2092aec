"""Every law fitted once on a store's runs, or on a resample of them: what the main fit, each bootstrap resample
and each backtest origin do."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..metric_direction import HIGHER, LOWER, metric_domain
from .candidates import ENVELOPE_LAW, NT_CANDIDATES, NT_LAW, informative, nt_inputs
from .envelope import EnvelopeMatrix, select_points
from .estimators import Law, LinearLaw, LossLaw, LossNLaw, PowerLaw
from .fit_options import N_COLUMNS, FitOptions


class PreparedRuns:
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


def fit_law_set(
    data: PreparedRuns,
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
    return fit_law_set(PreparedRuns(checkpoints, options), options, scope="backtested")
