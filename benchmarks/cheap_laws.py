"""Cheaper evidence per law (issue 34): the cells of a grid of separate one-cycle runs (shapes x lengths x seeds)
against the same cells read off one warmup-stable-decay run per shape and seed, whose cooldown branches give the
annealed result at every length. Writes benchmarks/results/cheap_laws/README.md from the two stores:

    python -m benchmarks.cheap_laws [--one-cycle-runs DIR] [--wsd-runs DIR] [--metric valid_ndcg_at_5]

The stores train with `benchmarks/configs/cheap-laws-one-cycle.toml` and `cheap-laws-wsd.toml` (the commands are in
their headers; resumable); `scalerec runs WORK --archive benchmarks/results/cheap_laws/runs-...` keeps their records
(the defaults here). Three checks: the CPU-hours each grid cost; the same science, cell by cell (WSD's
annealed metric against the one-cycle runs', beside the seed-to-seed spread); and a law fitted from WSD branches
against one fitted from the one-cycle runs, each fitted on the shorter lengths and predicting the longest one-cycle
runs (what a user would train)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.results_file import write_table, written_at
from scalerec.analysis.backtest import error_summary
from scalerec.analysis.fit_laws import fit_laws
from scalerec.analysis.fit_options import FitOptions, cooldowns_as_runs
from scalerec.analysis.predict import failure, fitted_laws, interval_90
from scalerec.store import RunStore, read_checkpoints
from scalerec.store.schema import is_cooldown_row

HERE = Path(__file__).resolve().parent
SHAPE = ["n_layers", "n_heads", "hidden"]


def finished(runs: Path) -> pd.DataFrame:
    """The rows of a store's finished runs, with each run's seed and decay shape from its config."""
    store = RunStore(runs)
    done = [i for i in store.run_ids() if store.status(i) == "done"]
    rows = read_checkpoints(runs)
    rows = rows[rows.run_id.isin(done)].copy()
    records = {i: store.read_config(i) for i in done}
    configs = {i: record["config"] for i, record in records.items()}
    rows["seed"] = rows.run_id.map(lambda i: configs[i]["seed"])
    rows["decay_shape"] = rows.run_id.map(lambda i: configs[i]["train"].get("decay_shape", "-"))
    rows.attrs["commits"] = sorted({r["provenance"]["git_commit"][:12] for r in records.values()})
    return rows


def annealed_cells(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per (shape, length, seed): the annealed end of a run or of a WSD branch (a one-cycle run's earlier
    checkpoints are not annealed, a WSD run's own are not either)."""
    points = rows[rows.is_final | is_cooldown_row(rows)].copy()
    points["length"] = points.epoch.round(6)
    return points[[*SHAPE, "non_embedding_params", "decay_shape", "length", "seed", metric]]


def cpu_hours(rows: pd.DataFrame) -> float:
    """What the runs cost: each run's last row of its own trajectory (a WSD run's includes its branches)."""
    own = rows[~is_cooldown_row(rows)]
    last = own.sort_values("step").groupby("run_id").tail(1)
    return float(last.cpu_time_s.sum() / 3600)


def same_science(one_cycle: pd.DataFrame, wsd: pd.DataFrame, metric: str) -> tuple[list[str], dict]:
    """Cell by cell: the one-cycle runs' mean and the WSD branches' (per decay shape), and whether their difference
    is within the seed-to-seed spread (the larger of the two families' seed ranges in that cell)."""
    key = [*SHAPE, "length"]
    base = one_cycle.groupby(key)[metric].agg(["mean", lambda s: s.max() - s.min(), "count"])
    base.columns = ["oc", "oc_range", "oc_seeds"]
    shapes = sorted(wsd.decay_shape.unique())
    header = "| shape | epochs | one-cycle (seeds) | seed range |"
    header += "".join(f" WSD {s} | − one-cycle | within spread |" for s in shapes)
    lines = [header, "|" + "---|" * (4 + 3 * len(shapes))]
    summary = {s: {"within": 0, "cells": 0, "diffs": []} for s in shapes}
    branches = {s: {cell: g[metric].to_numpy() for cell, g in wsd[wsd.decay_shape == s].groupby(key)} for s in shapes}
    for cell, row in base.iterrows():
        shape = "x".join(map(str, cell[:3]))
        line = f"| {shape} | {cell[3]:g} | {row.oc:.4f} ({int(row.oc_seeds)}) | {row.oc_range:.4f} |"
        for s in shapes:
            values = branches[s].get(cell, np.array([]))
            if not len(values):
                line += " – | – | – |"
                continue
            diff = float(np.mean(values) - row.oc)
            spread = max(row.oc_range, float(np.ptp(values)))
            within = abs(diff) <= spread
            summary[s]["within"] += within
            summary[s]["cells"] += 1
            summary[s]["diffs"].append(diff / row.oc)
            line += f" {np.mean(values):.4f} ({len(values)}) | {diff:+.4f} | {'yes' if within else 'no'} |"
        lines.append(line)
    return lines, summary


def law_check(one_cycle: pd.DataFrame, wsd: pd.DataFrame | None, options: FitOptions) -> dict:
    """Fit the N,T law on every length but the longest (WSD branches when `wsd` is given, else the shorter one-cycle
    runs) and predict the one-cycle runs of the longest length: extrapolation in T, every shape on both sides. Also
    what the fitted points cost: the one-cycle runs, or the WSD runs up to their checkpoint at the last branch's end
    (which includes every branch)."""
    longest = one_cycle.epoch.max()
    held = one_cycle[one_cycle.is_final & (one_cycle.epoch == longest)]
    if wsd is None:
        fit_on = one_cycle[one_cycle.run_id.isin(one_cycle.run_id[one_cycle.is_final & (one_cycle.epoch < longest)])]
        cost = cpu_hours(fit_on)
    else:
        as_runs = cooldowns_as_runs(wsd)
        fit_on = as_runs[as_runs.run_id.str.contains("@", regex=False)]  # the branches alone
        last_branch = fit_on.epoch.max()
        own = wsd[~is_cooldown_row(wsd) & (wsd.epoch >= last_branch)].sort_values("step").groupby("run_id").head(1)
        cost = float(own.cpu_time_s.sum() / 3600)
    data = fit_laws(fit_on, options)
    out = {"points": int(fit_on.is_final.sum()), "hours": cost, "refused": failure(data, "risk")}
    if out["refused"]:
        return out
    law, rows = fitted_laws(data)["risk"], []
    for row in held.itertuples():
        low, high, calibration = interval_90(data, "risk", law, row.non_embedding_params, row.seen_interactions)
        observed = getattr(row, options.metric)
        rows.append(
            (observed, float(law.predict(row.non_embedding_params, row.seen_interactions)), low <= observed <= high)
        )
    observed, predicted, inside = zip(*rows)
    calibrated = bool(calibration and calibration.get("calibrated"))
    return out | error_summary(observed, predicted) | {"inside": float(np.mean(inside)), "calibrated": calibrated}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--one-cycle-runs", type=Path, default=HERE / "results" / "cheap_laws" / "runs-one-cycle")
    parser.add_argument("--wsd-runs", type=Path, default=HERE / "results" / "cheap_laws" / "runs-wsd")
    parser.add_argument("--metric", default="valid_ndcg_at_5")
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "cheap_laws" / "README.md")
    args = parser.parse_args()
    command = f"python -m benchmarks.cheap_laws {' '.join(sys.argv[1:])}".strip()
    one_cycle, wsd = finished(args.one_cycle_runs), finished(args.wsd_runs)
    if one_cycle.empty or wsd.empty:
        sys.exit("cheap_laws: a store has no finished run yet")
    metric = args.metric
    cells_oc, cells_wsd = annealed_cells(one_cycle, metric), annealed_cells(wsd, metric)
    hours = {"one-cycle": cpu_hours(one_cycle)}
    for shape in sorted(wsd.decay_shape.unique()):
        hours[f"WSD {shape}"] = cpu_hours(wsd[wsd.decay_shape == shape])
    n_runs = {"one-cycle": one_cycle.run_id.nunique()}
    n_runs |= {f"WSD {s}": wsd[wsd.decay_shape == s].run_id.nunique() for s in sorted(wsd.decay_shape.unique())}

    lines = [
        "# Cheaper evidence: WSD cooldown branches against separate one-cycle runs",
        "",
        f"Written by `{command}` {written_at()}"
        f" from the finished runs of `{args.one_cycle_runs.name}` and `{args.wsd_runs.name}`"
        f" (configs: benchmarks/configs/cheap-laws-*.toml; trained at commits "
        f"{', '.join(sorted(set(one_cycle.attrs['commits']) | set(wsd.attrs['commits'])))}, one training semantics)."
        f" Metric `{metric}` under the recipe's `full` protocol.",
        "",
        "## What each grid cost",
        "",
        "| grid | runs | annealed cells | CPU-hours | ÷ one-cycle |",
        "|---|---|---|---|---|",
    ]
    for name, value in hours.items():
        cells = len(cells_oc) if name == "one-cycle" else len(cells_wsd[cells_wsd.decay_shape == name[4:]])
        lines.append(f"| {name} | {n_runs[name]} | {cells} | {value:.3f} | {value / hours['one-cycle']:.2f} |")
    table, summary = same_science(cells_oc, cells_wsd, metric)
    lines += ["", "## The same science, cell by cell", "", *table, ""]
    for shape, s in summary.items():
        if s["cells"]:
            diffs = np.array(s["diffs"])
            lines.append(
                f"- WSD {shape}: {s['within']} of {s['cells']} cells within the seed-to-seed spread; mean relative "
                f"difference {diffs.mean():+.1%} (its standard error {diffs.std(ddof=1) / np.sqrt(len(diffs)):.1%})"
            )
    options = FitOptions(metric=metric, points="final", bootstrap=args.bootstrap, slices=False)
    lines += [
        "",
        "## A law from each, predicting the longest one-cycle runs",
        "",
        "Each N,T law is fitted on the annealed points of every length but the longest (the one-cycle runs of those "
        "lengths, or the WSD branches) and predicts the one-cycle runs of the longest length, every shape, from "
        "their N and T; 90% intervals as `predict` gives them.",
        "",
        "| law fitted on | annealed points | their CPU-hours | MAE | MAPE | inside 90% | interval |",
        "|---|---|---|---|---|---|---|",
    ]
    sources = {"one-cycle runs": None} | {
        f"WSD {s} branches": wsd[wsd.decay_shape == s] for s in sorted(wsd.decay_shape.unique())
    }
    for name, rows in sources.items():
        check = law_check(one_cycle, rows, options)
        if check["refused"]:
            lines.append(f"| {name} | {check['points']} | {check['hours']:.3f} | – | – | – | {check['refused']} |")
            continue
        mape = "–" if check["mape"] is None else f"{check['mape']:.1%}"
        interval = "calibrated by its backtest" if check["calibrated"] else "bootstrap only"
        lines.append(
            f"| {name} | {check['points']} | {check['hours']:.3f} | {check['mae']:.4f} | {mape} | "
            f"{check['inside']:.0%} | {interval} |"
        )
    write_table(args.out, lines)


if __name__ == "__main__":
    main()
