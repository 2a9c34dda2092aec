"""Cheaper evidence per law (issue 34): the cells of a grid of separate one-cycle runs (shapes x lengths x seeds)
against the same cells read off one warmup-stable-decay run per shape and seed, whose cooldown branches give the
annealed result at every length. Writes benchmarks/results/cheap_laws.md from the two stores:

    python -m benchmarks.cheap_laws [--one-cycle-runs DIR] [--wsd-runs DIR] [--metric valid_ndcg_at_5]

The stores train with `benchmarks/configs/cheap-laws-one-cycle.toml` and `cheap-laws-wsd.toml` (the commands are in
their headers; resumable). Three checks: the CPU-hours each grid cost; the same science, cell by cell (WSD's
annealed metric against the one-cycle runs', beside the seed-to-seed spread); and a law fitted from WSD branches
against one fitted from the one-cycle runs, each fitted without the largest shape and predicting that shape's
one-cycle runs (what a user would train)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.results_file import write_table
from scalerec.analysis.fit_options import FitOptions, cooldowns_as_runs
from scalerec.analysis.holdout import holdout_largest
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
    configs = {i: store.read_config(i)["config"] for i in done}
    rows["seed"] = rows.run_id.map(lambda i: configs[i]["seed"])
    rows["decay_shape"] = rows.run_id.map(lambda i: configs[i]["train"].get("decay_shape", "-"))
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
    for cell, row in base.iterrows():
        shape = "x".join(map(str, cell[:3]))
        line = f"| {shape} | {cell[3]:g} | {row.oc:.4f} ({int(row.oc_seeds)}) | {row.oc_range:.4f} |"
        for s in shapes:
            branch = wsd[wsd.decay_shape == s].set_index(key).sort_index()
            values = branch.loc[cell, metric] if cell in branch.index else pd.Series(dtype=float)
            values = np.atleast_1d(values)
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
    """Fit the N,T law without the largest shape (from WSD branches when `wsd` is given, else from the one-cycle
    runs) and predict the largest shape's one-cycle runs."""
    largest = one_cycle.non_embedding_params.max()
    held = one_cycle[one_cycle.non_embedding_params == largest]
    fit_on = one_cycle if wsd is None else cooldowns_as_runs(wsd[wsd.non_embedding_params < largest])
    fit_on = fit_on[fit_on.non_embedding_params < largest]
    checkpoints = pd.concat([fit_on, held], ignore_index=True)
    check = holdout_largest(checkpoints, held.run_id.nunique(), "N", options)
    return {"check": check["risk_law"], "fit_rows": fit_on, "runs": int(fit_on.run_id.nunique())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--one-cycle-runs", type=Path, default=HERE / "work" / "cheap_laws" / "runs-one-cycle")
    parser.add_argument("--wsd-runs", type=Path, default=HERE / "work" / "cheap_laws" / "runs-wsd")
    parser.add_argument("--metric", default="valid_ndcg_at_5")
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "cheap_laws.md")
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
        f"Written by `{command}` from the finished runs of `{args.one_cycle_runs.name}` and `{args.wsd_runs.name}`"
        f" (configs: benchmarks/configs/cheap-laws-*.toml). Metric `{metric}` under the recipe's `full` protocol.",
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
        "## A law from each, predicting the largest shape's one-cycle runs",
        "",
        "Each N,T law is fitted without the largest shape and predicts that shape's one-cycle runs at every length "
        "(`holdout_largest`, 90% intervals calibrated by the refit's backtest where it has enough points).",
        "",
        "| law fitted on | runs (a branch counts as one) | their CPU-hours | MAE | MAPE | inside 90% | interval |",
        "|---|---|---|---|---|---|---|",
    ]
    sources = {"one-cycle runs": None} | {
        f"WSD {s} branches": wsd[wsd.decay_shape == s] for s in sorted(wsd.decay_shape.unique())
    }
    for name, rows in sources.items():
        result = law_check(one_cycle, rows, options)
        check = result["check"]
        cost = cpu_hours(result["fit_rows"])
        if not check or "refused" in check:
            why = (check or {}).get("refused", "no held-out points")
            lines.append(f"| {name} | {result['runs']} | {cost:.3f} | – | – | – | not fitted: {why} |")
            continue
        coverage = "–" if check["coverage_90"] is None else f"{check['coverage_90']:.0%}"
        mape = "–" if check["mape"] is None else f"{check['mape']:.1%}"
        lines.append(
            f"| {name} | {result['runs']} | {cost:.3f} | {check['mae']:.4f} | {mape} | {coverage} | "
            f"{check['interval']} |"
        )
    write_table(args.out, lines)


if __name__ == "__main__":
    main()
