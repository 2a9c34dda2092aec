"""Tables of runs whose law is known, one row per run: for checks of the fitters, the benchmarks and the worked
example of docs/bring-your-own-runs.md. Columns: run, params (N), tokens (T), data (D), and the metric."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from ..store.imported import TableMapping, import_table
from ..store.runstore import read_checkpoints

# A Chinchilla-shaped loss and an Eq. 4-shaped NDCG, with the parameters the tests recover.
LOSS_TRUTH = {"E": 1.7, "A": 400.0, "alpha": 0.34, "B": 410.0, "beta": 0.28}
NDCG_TRUTH = {"E": 0.30, "A": 2.0, "alpha": 0.30, "B": 3.0, "beta": 0.35}
SIZES = (1e6, 2e6, 5e6, 1e7, 2e7, 5e7, 1e8, 2e8)
TOKENS = (1e8, 3e8, 1e9, 3e9, 1e10)


def loss_table(seed: int = 0, noise: float = 0.01, sizes=SIZES, tokens=TOKENS) -> pd.DataFrame:
    """val_loss = E + A/N^α + B/T^β, times exp(noise · 𝒩(0, 1)) (multiplicative, as loss noise is)."""
    rng, p = np.random.default_rng(seed), LOSS_TRUTH
    rows = [
        {
            "run": f"n{n:g}-t{t:g}",
            "params": n,
            "tokens": t,
            "val_loss": (p["E"] + p["A"] / n ** p["alpha"] + p["B"] / t ** p["beta"]) * np.exp(rng.normal(0, noise)),
        }
        for n in sizes
        for t in tokens
    ]
    return pd.DataFrame(rows)


def ndcg_table(
    seed: int = 0, noise: float = 0.003, sizes=(1e4, 3e4, 1e5, 3e5, 1e6, 3e6), tokens=(1e5, 3e5, 1e6, 3e6, 1e7)
) -> pd.DataFrame:
    """ndcg = E − A/N^α − B/T^β plus noise · 𝒩(0, 1)."""
    rng, p = np.random.default_rng(seed), NDCG_TRUTH
    rows = [
        {
            "run": f"n{n:g}-t{t:g}",
            "params": n,
            "tokens": t,
            "ndcg": p["E"] - p["A"] / n ** p["alpha"] - p["B"] / t ** p["beta"] + rng.normal(0, noise),
        }
        for n in sizes
        for t in tokens
    ]
    return pd.DataFrame(rows)


CASES = {"lower": (loss_table, "val_loss", LOSS_TRUTH), "higher": (ndcg_table, "ndcg", NDCG_TRUTH)}


def recovery_replicate(direction: str, seed: int, bootstrap: int = 100) -> dict[str, Any]:
    """One generated table of `direction` ("lower": the loss, "higher": NDCG), imported and fitted: which true
    parameters of the N,T law its 90% intervals cover, and, with every run of the largest N held out and refitted
    without, whether each held-out run lies inside the calibrated 90% interval and its relative error."""
    from .fit_laws import FitOptions, fit_laws  # the fitter's modules import this one's callers, not it
    from .holdout import holdout_largest

    make, metric, truth = CASES[direction]
    table = make(seed=seed)
    with tempfile.TemporaryDirectory() as work, threadpool_limits(1):
        table.to_csv(Path(work) / "runs.csv", index=False)
        import_table(
            [str(Path(work) / "runs.csv")], TableMapping("params", "tokens", metric, run="run"), Path(work) / "store"
        )
        checkpoints = read_checkpoints(Path(work) / "store")
    options = FitOptions(metric=metric, bootstrap=bootstrap, slices=False, seed=seed)
    with threadpool_limits(1):
        risk = fit_laws(checkpoints, options)["laws"]["risk"]
        held = holdout_largest(checkpoints, int((table.params == table.params.max()).sum()), "N", options)["risk_law"]
    params = risk["params"] if risk["status"] == "ok" else risk["unreliable_params"]
    return {
        "direction": direction,
        "status": risk["status"],
        "estimates": {k: params[k] for k in truth},
        "covered": {k: bool(risk["intervals_90"][k][0] <= v <= risk["intervals_90"][k][1]) for k, v in truth.items()},
        "held_inside": [r["inside_90"] for r in held.get("per_run", [])],
        "held_ape": [abs(r["error"]) / r["observed"] for r in held.get("per_run", [])],
        "held_interval": held.get("interval", held.get("refused")),
    }
