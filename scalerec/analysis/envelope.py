"""The compute-optimal envelope of a set of runs (DESIGN §6)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import ScalerecError
from ..metric_direction import HIGHER, sign
from .fit_options import POINT_POLICIES

MAX_ENVELOPE_POINTS = 1000


class EnvelopeMatrix:
    """Every run's metric (and T) interpolated once onto the common FLOP grid, so that the envelope of any subset
    of runs (a bootstrap resample) is a max over rows.

    Each run is interpolated linearly in ln FLOPs inside its own range only (never extrapolated; −inf outside);
    T in log space. A store with more than MAX_ENVELOPE_POINTS distinct FLOP values is sampled at that many
    log-spaced values instead: the envelope is a curve, and 100,000 samples of it only slow every fit down.
    """

    def __init__(
        self,
        checkpoints: pd.DataFrame,
        metric: str,
        flops: str = "train_flops",
        n_column: str = "non_embedding_params",
        direction: str = HIGHER,
    ) -> None:
        self.sign = sign(direction)  # the matrix holds sign · metric, so the best is always the max
        ordered = checkpoints.sort_values(["run_id", flops], kind="stable")
        grid = np.unique(ordered[flops].to_numpy())
        if len(grid) > MAX_ENVELOPE_POINTS:
            grid = np.unique(np.r_[np.geomspace(grid[0], grid[-1], MAX_ENVELOPE_POINTS)[1:-1], grid[0], grid[-1]])
        runs = list(ordered.groupby("run_id", sort=False))
        self.grid, self.run_ids = grid, np.array([r for r, _ in runs])
        self.metric = np.full((len(runs), len(grid)), -np.inf)
        self.log_t = np.zeros((len(runs), len(grid)))
        self.n = np.array([float(run[n_column].iloc[0]) for _, run in runs])
        self.d = np.array([int(run.dataset_interactions.iloc[0]) for _, run in runs])
        log_grid = np.log(grid)
        for row, (_, run) in enumerate(runs):
            x = run[flops].to_numpy()
            lo, hi = np.searchsorted(grid, x[0], side="left"), np.searchsorted(grid, x[-1], side="right")
            self.metric[row, lo:hi] = np.interp(log_grid[lo:hi], np.log(x), self.sign * run[metric].to_numpy())
            self.log_t[row, lo:hi] = np.interp(log_grid[lo:hi], np.log(x), np.log(run.seen_interactions.to_numpy()))

    def envelope(self, rows: np.ndarray | None = None) -> pd.DataFrame:
        """The envelope of the runs in `rows` (indexes into run_ids; all runs when None)."""
        rows = np.arange(len(self.run_ids)) if rows is None else np.unique(rows)
        values = self.metric[rows]
        best_row = values.argmax(axis=0)
        best = values[best_row, np.arange(len(self.grid))]
        keep = np.isfinite(best)
        owner = rows[best_row[keep]]
        return pd.DataFrame(
            {
                "flops": self.grid[keep],
                "metric": self.sign * best[keep],
                "run_id": self.run_ids[owner],
                "n": self.n[owner],
                "seen_interactions": np.exp(self.log_t[owner, np.flatnonzero(keep)]),
                "dataset_interactions": self.d[owner],
            }
        )


def envelope(
    checkpoints: pd.DataFrame,
    metric: str,
    flops: str = "train_flops",
    n_column: str = "non_embedding_params",
    direction: str = HIGHER,
) -> pd.DataFrame:
    """Best metric (the highest, or the lowest for a lower-is-better `direction`) at each checkpoint FLOP value over
    all runs, with the run that attains it (see EnvelopeMatrix).

    Columns: flops, metric, run_id, n (the run's N), seen_interactions, dataset_interactions.
    """
    return EnvelopeMatrix(checkpoints, metric, flops, n_column, direction).envelope()


def pareto_mask(
    checkpoints: pd.DataFrame, metric: str, flops: str = "train_flops", direction: str = HIGHER
) -> np.ndarray:
    """True for checkpoints that no checkpoint with at most as many FLOPs beats on the metric."""
    order = np.argsort(checkpoints[flops].to_numpy(), kind="stable")
    values = sign(direction) * checkpoints[metric].to_numpy()[order]
    running = np.maximum.accumulate(np.r_[-np.inf, values[:-1]])
    mask = np.zeros(len(values), dtype=bool)
    mask[order] = values > running
    return mask


ANNEALED_TAIL = 0.8  # `tail`: checkpoints past this fraction of their schedule (a one-cycle schedule has annealed)


def best_checkpoints(
    checkpoints: pd.DataFrame, metric: str = "valid_ndcg_at_5", direction: str = HIGHER
) -> pd.DataFrame:
    """Each run's checkpoint with the best `metric` (the earliest among equals; NaN never wins): the one
    best-on-validation rule, for early-stopped runs, Table 1 and fine-tuning reports."""
    finite = checkpoints[np.isfinite(checkpoints[metric].astype(float))]
    groups = finite.groupby("run_id", sort=False)[metric]
    return finite.loc[groups.idxmax() if direction == HIGHER else groups.idxmin()].reset_index(drop=True)


def select_points(
    checkpoints: pd.DataFrame, policy: str, metric: str, flops: str = "train_flops", direction: str = HIGHER
) -> pd.DataFrame:
    """The checkpoints a law is fitted on: `final` (annealed ends of runs), `tail` (the annealed tail: the last
    fifth of each run's schedule), `all` (with the candidate risk_schedule, whose term sees the schedule position),
    `envelope` (Pareto-optimal) or `best-per-run` (each run's best checkpoint on the metric)."""
    if policy == "best-per-run":
        chosen = best_checkpoints(checkpoints, metric, direction)
    elif policy == "final":
        chosen = checkpoints[checkpoints.is_final]
    elif policy == "tail":
        chosen = checkpoints[(checkpoints.schedule_fraction >= ANNEALED_TAIL) | checkpoints.is_final]
    elif policy == "all":
        chosen = checkpoints
    elif policy == "envelope":
        chosen = checkpoints[pareto_mask(checkpoints, metric, flops, direction)]
    else:
        raise ScalerecError(f"--points must be one of {', '.join(POINT_POLICIES)}, not {policy!r}")
    return chosen.reset_index(drop=True)
