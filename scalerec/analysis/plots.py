"""Figures in the style of the SRT paper, as functions a researcher adapts: each takes the checkpoints (a DataFrame
from `read_checkpoints`) and/or the laws.json mapping, draws on the `ax` given (or a new figure) and returns the
figure, like scikit-learn's Display objects. `write_analysis` saves them as report.md's PNGs.

- `metric_vs_compute`: one curve per run coloured by N or D, the envelope and its fits (Fig. 4);
- `allocation`: N and T of the envelope points against compute, with their power laws (Fig. 5);
- `nt_contours`: the N,T law as iso-metric contours over (N, T), the runs on top (Fig. 6);
- `nt_law_fit`: observed against the N,T law's prediction, held-out runs marked;
- `transfer`: pre-trained and fine-tuned against trained from scratch on the same data (Fig. 7 / Table 4);
- `slice_exponents`: each evaluation slice's exponents with their intervals;
- `backtest`: held-out points against what the law fitted without them predicted, with the calibrated band.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import matplotlib

if "ipykernel" not in sys.modules:
    matplotlib.use("Agg")  # scripts and CI need no display; a notebook keeps its inline figures
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import LogNorm, Normalize  # noqa: E402
from matplotlib.ticker import NullFormatter  # noqa: E402

from .envelope import envelope, select_points  # noqa: E402
from .fit_options import N_COLUMNS  # noqa: E402
from .predict import fitted_laws  # noqa: E402

LABELS = {
    "non_embedding_params": "N (non-embedding params)",
    "total_params": "N (total params)",
    "dataset_interactions": "D (training interactions)",
    "seen_interactions": "T (seen interactions)",
}
BY = {"N": "non_embedding_params", "D": "dataset_interactions"}


def _direction(laws: dict[str, Any]) -> str:
    return laws["options"].get("direction") or "higher"


def _drawable(laws: dict[str, Any]) -> dict[str, Any]:
    """Every fitted law with its numbers, failed ones too: a figure shows how a failed fit misses (and says so)."""
    return fitted_laws(laws, force=tuple(laws["laws"]))


def _failed(laws: dict[str, Any], name: str) -> str:
    return " (fit failed: not used)" if laws["laws"].get(name, {}).get("status") == "failed" else ""


def save(fig: plt.Figure, path: Path) -> Path:
    """Write `fig` as a PNG atomically (a reader never sees half a file) and close it."""
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path


def _axes(ax: plt.Axes | None, figsize: tuple[float, float]) -> tuple[plt.Figure, plt.Axes]:
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def metric_vs_compute(
    checkpoints: pd.DataFrame, laws: dict[str, Any], by: str = "N", ax: plt.Axes | None = None
) -> plt.Figure:
    """One curve per run coloured by `by` ("N", "D" or any numeric column) on a log scale, the compute-optimal
    envelope, the saturating fit (Eq. 3) with its 90% interval and the linear fit."""
    options = laws["options"]
    metric, flops, colour_by = options["metric"], options["flops"], BY.get(by, by)
    fig, ax = _axes(ax, (7, 4.5))
    values = checkpoints[colour_by]
    norm = LogNorm(values.min(), max(values.max(), values.min() * 1.01))
    cmap = plt.get_cmap("viridis")
    for _, run in checkpoints.sort_values(flops).groupby("run_id"):
        ax.plot(run[flops], run[metric], color=cmap(norm(run[colour_by].iloc[0])), alpha=0.8, lw=1.2, marker=".")
    env = envelope(checkpoints, metric, flops, direction=_direction(laws))
    ax.plot(env.flops, env.metric, color="black", lw=2.5, alpha=0.35, label="envelope")
    grid = np.geomspace(env.flops.min(), env.flops.max() * 10, 200)
    fitted = _drawable(laws)
    if "saturating" in fitted:
        ax.plot(
            grid,
            fitted["saturating"].predict(grid),
            "r--",
            label="saturating fit (Eq. 3)" + _failed(laws, "saturating"),
        )
        low, high = fitted["saturating"].predict_interval(grid)
        if np.isfinite(low).all():
            ax.fill_between(grid, low, high, color="red", alpha=0.1, label="90% interval")
    if "linear" in fitted:
        ax.plot(grid, fitted["linear"].predict(grid), ":", color="grey", label="linear fit")
    ax.set_xscale("log")
    ax.set_xlabel(flops)
    ax.set_ylabel(metric)
    label = LABELS.get(colour_by, colour_by)
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=label)
    ax.legend(loc="best", fontsize=8)
    ax.set_title(f"{metric} vs compute, runs coloured by {label.split(' ')[0]}")
    return fig


def allocation(checkpoints: pd.DataFrame, laws: dict[str, Any], axes: Any = None) -> plt.Figure:
    """N and T of the envelope points against compute with their power-law fits, on two axes (Fig. 5)."""
    options = laws["options"]
    env = envelope(checkpoints, options["metric"], options["flops"], direction=_direction(laws))
    fitted = _drawable(laws)
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        fig.suptitle("Compute-optimal allocation along the envelope")
    fig = axes[0].figure
    grid = np.geomspace(env.flops.min(), env.flops.max(), 100)
    for ax, column, name, label in (
        (axes[0], "n", "n_opt", "N (non-embedding params)"),
        (axes[1], "seen_interactions", "t_opt", "T (seen interactions)"),
    ):
        ax.scatter(env.flops, env[column], s=12, alpha=0.7, label="envelope points")
        if name in fitted:
            law = fitted[name]
            ax.plot(grid, law.predict(grid), "r--", label=f"∝ C^{law.params_['exponent']:.2f}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(options["flops"])
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    return fig


def nt_contours(
    checkpoints: pd.DataFrame, laws: dict[str, Any], law: str = "risk", levels: int = 12, ax: plt.Axes | None = None
) -> plt.Figure:
    """The N,T law (Eq. 4, or `law` of the same two inputs) as iso-metric contours over (N, T), half a decade
    beyond the runs on each side, with every run's final checkpoint on top in the same colours (Fig. 6)."""
    options = laws["options"]
    metric, n_column = options["metric"], N_COLUMNS[options["n_column"]]
    final = checkpoints[checkpoints.is_final] if checkpoints.is_final.any() else checkpoints
    fig, ax = _axes(ax, (6.5, 5))
    if law not in laws["laws"]:
        ax.set_title(f"no {law} law was fitted")
        return fig
    fitted = _drawable(laws)[law]
    n = np.geomspace(final[n_column].min() / 3, final[n_column].max() * 3, 120)
    t = np.geomspace(final.seen_interactions.min() / 3, final.seen_interactions.max() * 3, 120)
    grid_n, grid_t = np.meshgrid(n, t)
    surface = fitted.predict(grid_n.ravel(), grid_t.ravel()).reshape(grid_n.shape)
    norm = Normalize(min(np.nanmin(surface), final[metric].min()), max(np.nanmax(surface), final[metric].max()))
    filled = ax.contourf(grid_n, grid_t, surface, levels=levels, cmap="viridis", norm=norm, alpha=0.85)
    lines = ax.contour(grid_n, grid_t, surface, levels=filled.levels, colors="white", linewidths=0.5)
    ax.clabel(lines, fontsize=7, fmt="%.3g")
    ax.scatter(
        final[n_column],
        final.seen_interactions,
        c=final[metric],
        cmap="viridis",
        norm=norm,
        s=40,
        edgecolors="black",
        label="runs (final checkpoint)",
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_formatter(NullFormatter())  # a narrow range labels every minor tick, on top of each other
    ax.set_xlabel(LABELS.get(n_column, n_column))
    ax.set_ylabel("T (seen interactions)")
    fig.colorbar(filled, ax=ax, label=metric)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(f"{metric} = {law} law over (N, T){_failed(laws, law)}")
    return fig


def nt_law_fit(checkpoints: pd.DataFrame, laws: dict[str, Any], ax: plt.Axes | None = None) -> plt.Figure:
    """Observed metric against the N,T law's prediction, one point per fitted checkpoint (fit-laws' --points),
    and the runs of a --holdout-largest check as crosses (predicted by the refit without them)."""
    options = laws["options"]
    metric, n_column = options["metric"], N_COLUMNS[options["n_column"]]
    points = select_points(checkpoints, options["points"], metric, options["flops"], _direction(laws))
    fig, ax = _axes(ax, (5, 4.5))
    if "risk" not in laws["laws"]:
        ax.set_title("no N,T law was fitted")
        return fig
    predicted = _drawable(laws)["risk"].predict(points[n_column], points.seen_interactions)
    sc = ax.scatter(predicted, points[metric], c=np.log10(points[n_column]), cmap="viridis", s=20)
    low, high = float(min(predicted.min(), points[metric].min())), float(max(predicted.max(), points[metric].max()))
    held = laws.get("holdout", {}).get("largest", {}).get("risk_law") or {}
    if held.get("per_run"):
        ax.scatter(
            [r["predicted"] for r in held["per_run"]],
            [r["observed"] for r in held["per_run"]],
            marker="x",
            s=60,
            color="red",
            label="held out (predicted by the refit)",
        )
        ax.legend(fontsize=8)
        values = [v for r in held["per_run"] for v in (r["predicted"], r["observed"])]
        low, high = min(low, *values), max(high, *values)
    ax.plot([low, high], [low, high], "k:", lw=1)
    ax.set_xlabel("predicted by E + A/N^α + B/T^β" if _direction(laws) == "lower" else "predicted by E − A/N^α − B/T^β")
    ax.set_ylabel(f"observed {metric}")
    fig.colorbar(sc, ax=ax, label="log10 N")
    ax.set_title("N,T law: observed vs predicted" + _failed(laws, "risk"))
    return fig


def transfer_runs(checkpoints: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(checkpoints of the fine-tuning runs, of the runs trained from scratch on the same data: same dataset,
    users, items and interactions). Raises ValueError when there is no fine-tuning run."""
    if "parent_run_id" not in checkpoints or checkpoints.parent_run_id.isna().all():
        raise ValueError("no fine-tuning run in these checkpoints (scalerec finetune writes them)")
    key = ["dataset", "n_users", "n_items", "dataset_interactions"]
    tuned = checkpoints[checkpoints.parent_run_id.notna()]
    return tuned, checkpoints[checkpoints.parent_run_id.isna()].merge(tuned[key].drop_duplicates(), on=key)


def transfer(
    checkpoints: pd.DataFrame, metric: str = "valid_ndcg_at_5", flops: str = "train_flops", ax: plt.Axes | None = None
) -> plt.Figure:
    """Every fine-tuning run (solid; compute of the fine-tuning only) beside the runs trained from scratch on the
    same data (dashed: same dataset, users, items and interactions), the metric against compute (Fig. 7)."""
    tuned, scratch = transfer_runs(checkpoints)
    fig, ax = _axes(ax, (7, 4.5))
    colours = plt.get_cmap("tab10")
    for i, (run_id, run) in enumerate(tuned.sort_values(flops).groupby("run_id")):
        ax.plot(
            run[flops],
            run[metric],
            color=colours(i % 10),
            marker="o",
            lw=1.5,
            label=f"pre-trained {run.parent_run_id.iloc[0]} → fine-tuned {run_id}",
        )
    for i, (run_id, run) in enumerate(scratch.sort_values(flops).groupby("run_id")):
        ax.plot(
            run[flops],
            run[metric],
            color="0.4",
            ls="--",
            marker=".",
            lw=1.2,
            label=f"from scratch {run_id}" if i < 5 else None,
        )
    ax.set_xscale("log")
    ax.set_xlabel(f"{flops} on the target data")
    ax.set_ylabel(metric)
    ax.legend(fontsize=7)
    ax.set_title("Pre-trained and fine-tuned vs trained from scratch")
    return fig


def slice_exponents(laws: dict[str, Any], params: tuple[str, ...] = ("alpha", "b"), axes: Any = None) -> plt.Figure:
    """Each evaluation slice's exponent (α of Eq. 4: with N; b of Eq. 3: with compute; β: with T) with its 90%
    interval, one axis per parameter; slices left out of the fit are listed, not drawn."""
    rows = [r for r in laws.get("slices") or [] if not r["left_out"]]
    if not any(r["slice"] != "all" for r in rows):
        raise ValueError("no slice was fitted (a store without slice columns, or slices too small)")
    if axes is None:
        fig, axes = plt.subplots(1, len(params), figsize=(4.5 * len(params), 0.35 * len(rows) + 1.5), squeeze=False)
        axes = axes[0]
    fig = axes[0].figure
    names = [r["slice"] for r in rows]
    for ax, param in zip(axes, params):
        values = np.array([r[param] for r in rows], dtype=float)
        low, high = (np.array([r[f"{param}_interval_90"][i] for r in rows], dtype=float) for i in (0, 1))
        y = np.arange(len(rows))
        # the interval as a segment, not as errors around the value: a percentile interval of few resamples need
        # not contain the point estimate, and an error bar cannot show that
        ax.hlines(y, low, high, color="C0", lw=1.5)
        ax.plot(values, y, "o", color="C0")
        ax.axvline(values[0], color="0.6", ls=":", lw=1)  # the whole population's
        ax.set_yticks(y, names)
        ax.invert_yaxis()
        ax.set_xlabel(
            {"alpha": "α (with N)", "beta": "β (with T)", "b": "b (envelope slope per e-fold of C)"}.get(param, param)
        )
    left_out = [r["slice"] for r in laws.get("slices") or [] if r["left_out"]]
    fig.suptitle(
        "Exponents by slice (90% intervals)" + (f"; left out: {', '.join(left_out)}" if left_out else ""), fontsize=9
    )
    return fig


def backtest(laws: dict[str, Any], axes: Any = None) -> plt.Figure:
    """The backtest: each held-out point's observed metric against what the law fitted without it predicted, with
    the calibrated 90% band at its extrapolation distance; points outside the band (cross-validated) as crosses."""
    from .backtest import calibrated_band

    entries = laws["backtest"]["laws"]
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    fig = axes[0].figure
    for ax, (name, title) in zip(
        axes, (("risk", "N,T law: held-out final checkpoints"), ("saturating", "envelope law: envelope beyond the fit"))
    ):
        entry = entries.get(name) or {}
        frame = pd.DataFrame(entry.get("points") or [])
        ax.set_title(title, fontsize=10)
        if frame.empty:
            ax.text(0.5, 0.5, "no backtest point", ha="center", transform=ax.transAxes)
            continue
        q = entry["calibration"].get("q")
        if q is not None:
            low, high = calibrated_band(frame.predicted, frame.distance, q)
            ax.vlines(frame.predicted, low, high, color="0.75", lw=1, label="calibrated 90% band")
        judged = frame.inside_calibrated_cv.notna()  # NaN: the other origins were too few to calibrate
        inside, outside = judged & (frame.inside_calibrated_cv == 1), judged & (frame.inside_calibrated_cv == 0)
        sc = ax.scatter(
            frame.predicted[inside],
            frame.observed[inside],
            c=frame.distance[inside],
            cmap="viridis",
            s=22,
            vmin=0,
            vmax=max(frame.distance.max(), 1e-9),
            label="inside (cross-validated)",
        )
        ax.scatter(frame.predicted[outside], frame.observed[outside], marker="x", color="red", s=40, label="outside")
        if (~judged).any():
            ax.scatter(frame.predicted[~judged], frame.observed[~judged], color="0.6", s=18, label="not judged")
        values = np.concatenate([frame.predicted, frame.observed])
        ax.plot([values.min(), values.max()], [values.min(), values.max()], "k:", lw=1)
        ax.set_xlabel("predicted by the law fitted without it")
        ax.set_ylabel(f"observed {laws['options']['metric']}")
        ax.legend(fontsize=7)
        fig.colorbar(sc, ax=ax, label="extrapolation distance (ln units)")
    return fig


def family_envelopes(checkpoints: pd.DataFrame, laws: dict[str, Any], ax: plt.Axes | None = None) -> plt.Figure:
    """fit-laws --by: each family's envelope (points) and its envelope law (line) on one axis, the crossovers
    marked."""
    from .families import family_values

    by, options = laws["by"], laws["options"]
    metric, flops = options["metric"], options["flops"]
    fig, ax = _axes(ax, (7, 4.5))
    values = family_values(checkpoints, by["column"])
    for i, (family, data) in enumerate(by["families"].items()):
        colour = plt.get_cmap("tab10")(i)
        rows = checkpoints[(values == family).to_numpy()]
        env = envelope(rows, metric, flops, direction=_direction(data))
        ax.plot(env.flops, env.metric, ".", color=colour, alpha=0.5)
        fitted = _drawable(data)
        if "saturating" in fitted:
            grid = np.geomspace(env.flops.min(), env.flops.max(), 200)
            ax.plot(
                grid, fitted["saturating"].predict(grid), color=colour, label=f"{family}" + _failed(data, "saturating")
            )
        else:
            ax.plot([], [], ".", color=colour, label=f"{family} (no envelope law)")
    for pair in by["comparison"]["crossovers"]:
        if pair["crossover_flops"]:
            ax.axvline(pair["crossover_flops"], color="grey", ls=":", label=f"crossover {' / '.join(pair['families'])}")
    ax.set_xscale("log")
    ax.set_xlabel(flops)
    ax.set_ylabel(metric)
    ax.legend(loc="best", fontsize=8)
    ax.set_title(f"Envelopes by {by['column']}")
    return fig
