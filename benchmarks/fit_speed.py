"""Speed of `fit-laws` on a large generated run store: 100,000 checkpoints from 2,000 runs that follow a known
N,T law — without bootstrap or backtest, with the backtest, and with the backtest and 200 bootstrap resamples, in
one run.

    python -m benchmarks.fit_speed [--runs 2000] [--checkpoints 50] [--bootstrap 200]

Prints a table and writes it to benchmarks/results/fit_speed.md. Targets: < 5 s without bootstrap (issue 6); with
the backtest and 200 resamples < 2 min on 2 cores (issue 16).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from scalerec.analysis import laws
from scalerec.analysis.fit_laws import FitOptions, fit_laws
from scalerec.store.provenance import git_state


def generated_store(n_runs: int, per_run: int, seed: int = 0) -> pd.DataFrame:
    """Checkpoints of runs on an N x D grid following NDCG = 0.5 − 3/N^0.35 − 40/T^0.35 plus noise."""
    rng = np.random.default_rng(seed)
    n = np.exp(rng.uniform(np.log(3e3), np.log(1e7), n_runs))
    d = np.exp(rng.uniform(np.log(1e4), np.log(1e7), n_runs))
    epochs = np.tile(np.arange(1, per_run + 1), n_runs) * (10 / per_run)
    run = np.repeat(np.arange(n_runs), per_run)
    t = epochs * d[run]
    return pd.DataFrame(
        {
            "run_id": np.char.add("r", run.astype(str)),
            "step": np.tile(np.arange(1, per_run + 1), n_runs),
            "epoch": epochs,
            "is_final": np.tile(np.arange(per_run) == per_run - 1, n_runs),
            "schedule_fraction": epochs / 10,
            "seen_interactions": t.astype(np.int64),
            "dataset_interactions": d[run].astype(np.int64),
            "train_flops": 6 * 2 * n[run] * t,
            "non_embedding_params": n[run].astype(np.int64),
            "total_params": (1.5 * n[run]).astype(np.int64),
            "n_layers": 2,
            "n_heads": 2,
            "hidden": 64,
            "valid_ndcg_at_5": laws.risk(n[run], t, 0.5, 3.0, 0.35, 40.0, 0.35) + rng.normal(0, 0.003, len(run)),
        }
    )


def store_parser(doc: str) -> argparse.ArgumentParser:
    """The options of a benchmark on a generated store: its size and the bootstrap resamples fitted."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--checkpoints", type=int, default=50)
    parser.add_argument("--bootstrap", type=int, default=200)
    return parser


def main() -> None:
    args = store_parser(__doc__).parse_args()
    store = generated_store(args.runs, args.checkpoints)
    rows = []
    for bootstrap, backtest in ((0, False), (0, True), (args.bootstrap, True)):
        started = time.perf_counter()
        data = fit_laws(store, FitOptions(bootstrap=bootstrap, huber_delta=1e-3, backtest=backtest))
        seconds = time.perf_counter() - started
        risk = data["laws"]["risk"]["params"]
        held = (data.get("backtest") or {}).get("laws", {}).get("risk", {})
        checked = (
            f"{held['n']} points, {held['coverage_calibrated_cv']:.0%} inside"
            if held.get("coverage_calibrated_cv") is not None
            else "–"
        )
        rows.append(
            f"| {bootstrap} | {'yes' if backtest else 'no'} | {seconds:.1f} | {risk['E']:.3f} | "
            f"{risk['alpha']:.3f} | {risk['beta']:.3f} | {checked} |"
        )
    commit = (git_state()[0] or "unknown")[:12]
    command = f"python -m benchmarks.fit_speed {' '.join(sys.argv[1:])}".strip()
    table = "\n".join(
        [
            f"Written by `{command}` at commit {commit}: {len(store):,} checkpoints from "
            f"{args.runs:,} runs (true E 0.5, α 0.35, "
            f"β 0.35); {os.cpu_count()} CPUs.",
            "",
            "| bootstrap resamples | backtest | seconds | fitted E | fitted α | fitted β | N,T backtest |",
            "|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    print(table)
    out = Path(__file__).parent / "results" / "fit_speed.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(table + "\n")


if __name__ == "__main__":
    main()
