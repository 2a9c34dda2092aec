"""The compute-optimal envelope of a set of runs (DESIGN §6)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import ScalerecError


def envelope(checkpoints: pd.DataFrame, metric: str, flops: str = "train_flops",
             n_column: str = "non_embedding_params") -> pd.DataFrame:
    """Best metric at each checkpoint FLOP value over all runs, with the run that attains it.

    Each run's metric is interpolated linearly in ln FLOPs inside the run's own range (never extrapolated); so is
    its T (in log space). Columns: flops, metric, run_id, n (the run's N), seen_interactions, dataset_interactions.
    """
    grid = np.unique(checkpoints[flops].to_numpy())
    best = np.full(len(grid), -np.inf)
    rows: list[dict | None] = [None] * len(grid)
    for run_id, run in checkpoints.sort_values(flops).groupby("run_id", sort=False):
        x = np.log(run[flops].to_numpy())
        inside = (grid >= run[flops].min()) & (grid <= run[flops].max())
        if not inside.any():
            continue
        at = np.log(grid[inside])
        value = np.interp(at, x, run[metric].to_numpy())
        seen = np.exp(np.interp(at, x, np.log(run.seen_interactions.to_numpy())))
        for i, v, t in zip(np.flatnonzero(inside), value, seen):
            if v > best[i]:
                best[i] = v
                rows[i] = {"flops": grid[i], "metric": v, "run_id": run_id, "n": float(run[n_column].iloc[0]),
                           "seen_interactions": t, "dataset_interactions": int(run.dataset_interactions.iloc[0])}
    return pd.DataFrame([r for r in rows if r is not None])


def pareto_mask(checkpoints: pd.DataFrame, metric: str, flops: str = "train_flops") -> np.ndarray:
    """True for checkpoints that no checkpoint with at most as many FLOPs beats on the metric."""
    order = np.argsort(checkpoints[flops].to_numpy(), kind="stable")
    values = checkpoints[metric].to_numpy()[order]
    running = np.maximum.accumulate(np.r_[-np.inf, values[:-1]])
    mask = np.zeros(len(values), dtype=bool)
    mask[order] = values > running
    return mask


def select_points(checkpoints: pd.DataFrame, policy: str, metric: str, flops: str = "train_flops") -> pd.DataFrame:
    """The checkpoints a law is fitted on: `final` (annealed ends of runs), `all`, or `envelope` (Pareto)."""
    if policy == "final":
        chosen = checkpoints[checkpoints.is_final]
    elif policy == "all":
        chosen = checkpoints
    elif policy == "envelope":
        chosen = checkpoints[pareto_mask(checkpoints, metric, flops)]
    else:
        raise ScalerecError(f"--points must be final, all or envelope, not {policy!r}")
    return chosen.reset_index(drop=True)
