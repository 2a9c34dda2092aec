"""Tables of runs whose law is known, one row per run: for checks of the fitters, the benchmarks and the worked
example of docs/bring-your-own-runs.md. Columns: run, params (N), tokens (T), data (D), and the metric."""

from __future__ import annotations

import numpy as np
import pandas as pd

# A Chinchilla-shaped loss and an Eq. 4-shaped NDCG, with the parameters the tests recover.
LOSS_TRUTH = {"E": 1.7, "A": 400.0, "alpha": 0.34, "B": 410.0, "beta": 0.28}
NDCG_TRUTH = {"E": 0.30, "A": 2.0, "alpha": 0.30, "B": 3.0, "beta": 0.35}
SIZES = (1e6, 2e6, 5e6, 1e7, 2e7, 5e7, 1e8, 2e8)
TOKENS = (1e8, 3e8, 1e9, 3e9, 1e10)


def loss_table(seed: int = 0, noise: float = 0.01, sizes=SIZES, tokens=TOKENS) -> pd.DataFrame:
    """val_loss = E + A/N^α + B/T^β, times exp(noise · 𝒩(0, 1)) (multiplicative, as loss noise is)."""
    rng, p = np.random.default_rng(seed), LOSS_TRUTH
    rows = [{"run": f"n{n:g}-t{t:g}", "params": n, "tokens": t,
             "val_loss": (p["E"] + p["A"] / n ** p["alpha"] + p["B"] / t ** p["beta"]) * np.exp(rng.normal(0, noise))}
            for n in sizes for t in tokens]
    return pd.DataFrame(rows)


def ndcg_table(seed: int = 0, noise: float = 0.003, sizes=(1e4, 3e4, 1e5, 3e5, 1e6, 3e6),
               tokens=(1e5, 3e5, 1e6, 3e6, 1e7)) -> pd.DataFrame:
    """ndcg = E − A/N^α − B/T^β plus noise · 𝒩(0, 1)."""
    rng, p = np.random.default_rng(seed), NDCG_TRUTH
    rows = [{"run": f"n{n:g}-t{t:g}", "params": n, "tokens": t,
             "ndcg": p["E"] - p["A"] / n ** p["alpha"] - p["B"] / t ** p["beta"] + rng.normal(0, noise)}
            for n in sizes for t in tokens]
    return pd.DataFrame(rows)
