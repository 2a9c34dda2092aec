"""Figures in the style of the SRT paper (Figs. 4-6): metric vs FLOPs per run with the envelope and its fits,
and the compute-optimal N and T against FLOPs. Matplotlib, Agg backend (no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import LogNorm  # noqa: E402

from .envelope import envelope  # noqa: E402
from .predict import fitted_laws  # noqa: E402


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path


def metric_vs_flops(checkpoints: pd.DataFrame, data: dict[str, Any], colour_by: str, path: Path) -> Path:
    """One curve per run, coloured by `colour_by` (N or D) on a log scale, the envelope, and both fits."""
    options = data["options"]
    metric, flops = options["metric"], options["flops"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    values = checkpoints[colour_by]
    norm = LogNorm(values.min(), max(values.max(), values.min() * 1.01))
    cmap = plt.get_cmap("viridis")
    for _, run in checkpoints.sort_values(flops).groupby("run_id"):
        ax.plot(run[flops], run[metric], color=cmap(norm(run[colour_by].iloc[0])), alpha=0.8, lw=1.2, marker=".")
    env = envelope(checkpoints, metric, flops)
    ax.plot(env.flops, env.metric, color="black", lw=2.5, alpha=0.35, label="envelope")
    grid = np.geomspace(env.flops.min(), env.flops.max() * 10, 200)
    fitted = fitted_laws(data)
    ax.plot(grid, fitted["saturating"].predict(np.log(grid)), "r--", label="saturating fit (Eq. 3)")
    ax.plot(grid, fitted["linear"].predict(np.log(grid)), ":", color="grey", label="linear fit")
    low, high = fitted["saturating"].predict_interval(np.log(grid))
    if np.isfinite(low).all():
        ax.fill_between(grid, low, high, color="red", alpha=0.1, label="90% interval")
    ax.set_xscale("log")
    ax.set_xlabel(f"{flops}")
    ax.set_ylabel(metric)
    label = {"non_embedding_params": "N (non-embedding params)", "dataset_interactions": "D (training interactions)"}
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=label.get(colour_by, colour_by))
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"{metric} vs compute, runs coloured by {label.get(colour_by, colour_by).split(' ')[0]}")
    return _save(fig, path)


def allocation(checkpoints: pd.DataFrame, data: dict[str, Any], path: Path) -> Path:
    """Envelope points' N and T against FLOPs with their power-law fits (paper Fig. 5)."""
    options = data["options"]
    env = envelope(checkpoints, options["metric"], options["flops"])
    fitted = fitted_laws(data)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    grid = np.geomspace(env.flops.min(), env.flops.max(), 100)
    for ax, column, name, label in ((axes[0], "n", "n_opt", "N (non-embedding params)"),
                                    (axes[1], "seen_interactions", "t_opt", "T (seen interactions)")):
        ax.scatter(env.flops, env[column], s=12, alpha=0.7, label="envelope points")
        law = fitted[name]
        ax.plot(grid, law.predict(grid), "r--", label=f"∝ C^{law.params_['exponent']:.2f}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(options["flops"])
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    fig.suptitle("Compute-optimal allocation along the envelope")
    return _save(fig, path)


def risk_fit(checkpoints: pd.DataFrame, data: dict[str, Any], points: pd.DataFrame, n_column: str,
             path: Path) -> Path:
    """Observed metric against the N,T law's prediction, one point per fitted checkpoint."""
    metric = data["options"]["metric"]
    predicted = fitted_laws(data)["risk"].predict(points[n_column], points.seen_interactions)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    sc = ax.scatter(predicted, points[metric], c=np.log10(points[n_column]), cmap="viridis", s=20)
    low, high = float(min(predicted.min(), points[metric].min())), float(max(predicted.max(), points[metric].max()))
    held = data.get("holdout", {}).get("largest", {}).get("risk_law") or {}
    if held:
        ax.scatter([r["predicted"] for r in held["per_run"]], [r["observed"] for r in held["per_run"]], marker="x",
                   s=60, color="red", label="held out (predicted by the refit)")
        ax.legend(fontsize=8)
        values = [v for r in held["per_run"] for v in (r["predicted"], r["observed"])]
        low, high = min(low, *values), max(high, *values)
    ax.plot([low, high], [low, high], "k:", lw=1)
    ax.set_xlabel("predicted by E − A/N^α − B/T^β")
    ax.set_ylabel(f"observed {metric}")
    fig.colorbar(sc, ax=ax, label="log10 N")
    ax.set_title("N,T law: observed vs predicted")
    return _save(fig, path)


def backtest(data: dict[str, Any], path: Path) -> Path:
    """The backtest: each held-out point's observed metric against what the law fitted without it predicted, with
    the calibrated 90% band at its extrapolation distance; points outside the band (cross-validated) as crosses."""
    from .backtest import calibrated_band

    laws = data["backtest"]["laws"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, (name, title) in zip(axes, (("risk", "N,T law: held-out final checkpoints"),
                                        ("saturating", "envelope law: envelope beyond the fit"))):
        entry = laws.get(name) or {}
        frame = pd.DataFrame(entry.get("points") or [])
        ax.set_title(title, fontsize=10)
        if frame.empty:
            ax.text(0.5, 0.5, "no backtest point", ha="center", transform=ax.transAxes)
            continue
        q = entry["calibration"].get("q")
        if q is not None:
            low, high = calibrated_band(frame.predicted, frame.distance, q)
            ax.errorbar(frame.predicted, frame.predicted, yerr=[frame.predicted - low, high - frame.predicted],
                        fmt="none", ecolor="0.75", lw=1, label="calibrated 90% band")
        judged = frame.inside_calibrated_cv.notna()  # NaN: the other origins were too few to calibrate
        inside, outside = judged & (frame.inside_calibrated_cv == 1), judged & (frame.inside_calibrated_cv == 0)
        sc = ax.scatter(frame.predicted[inside], frame.observed[inside], c=frame.distance[inside], cmap="viridis",
                        s=22, vmin=0, vmax=max(frame.distance.max(), 1e-9), label="inside (cross-validated)")
        ax.scatter(frame.predicted[outside], frame.observed[outside], marker="x", color="red", s=40,
                   label="outside")
        if (~judged).any():
            ax.scatter(frame.predicted[~judged], frame.observed[~judged], color="0.6", s=18, label="not judged")
        values = np.concatenate([frame.predicted, frame.observed])
        ax.plot([values.min(), values.max()], [values.min(), values.max()], "k:", lw=1)
        ax.set_xlabel("predicted by the law fitted without it")
        ax.set_ylabel(f"observed {data['options']['metric']}")
        ax.legend(fontsize=7)
        fig.colorbar(sc, ax=ax, label="extrapolation distance (ln units)")
    return _save(fig, path)
