"""Bootstrap intervals of a fitted law set: every law refitted on resamples of whole runs (a run and its cooldown
branches together), in forked worker processes when there are enough resamples to pay for them."""

from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from ..machine import available_cores, die_with_parent
from .estimators import Law
from .fit import bootstrap_runs
from .fit_options import FitOptions
from .law_set import PreparedRuns, fit_law_set

# Bootstraps of at least this many resamples run in worker processes, one per core (fork: the workers inherit the
# prepared data): each resample is an independent refit from the same start, so the result is the serial one.
PARALLEL_BOOTSTRAP = 50
_WORK: dict[str, Any] = {}  # what forked workers read: set just before the pool starts


def _refit_thetas(draw: np.ndarray) -> dict[str, np.ndarray]:
    """The parameters of every law refitted on one resample (NaN for a law the resample could not fit)."""
    data, options, fitted, starts, scope = (_WORK[k] for k in ("data", "options", "fitted", "starts", "scope"))
    try:
        refit = fit_law_set(data, options, draw, starts, scope)
    except ValueError:  # a resample with too few distinct points: counted as missing
        refit = {}
    return {
        name: refit[name].theta() if name in refit else np.full(len(law.param_specs), np.nan)
        for name, law in fitted.items()
    }


def bootstrap_law_set(
    data: PreparedRuns, options: FitOptions, fitted: dict[str, Law], progress: bool, scope: str = "all"
) -> None:
    """Refit every law of `scope` on resamples of whole runs, starting from the full fit's optimum."""
    _WORK.update(
        data=data,
        options=options,
        fitted=fitted,
        scope=scope,
        starts={name: [list(law.theta())] for name, law in fitted.items()},
    )
    draws = bootstrap_runs(data.matrix.run_ids, options.bootstrap, options.seed)
    workers = min(available_cores(), 8)
    try:
        if workers > 1 and len(draws) >= PARALLEL_BOOTSTRAP and "fork" in mp.get_all_start_methods():
            # a kill -9 of fit-laws takes its workers with it (they would wait on their pipe forever)
            with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork"), initializer=die_with_parent) as pool:
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
