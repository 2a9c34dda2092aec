"""Recovery and coverage of the N,T law in both metric directions, on generated tables whose law is known.

Each replicate draws a table with scalerec.analysis.synthetic_runs (a Chinchilla-shaped loss with 1% multiplicative
noise, or an Eq. 4-shaped NDCG with additive noise), imports it with import-table, fits the laws and then:
- counts, per parameter of the N,T law, whether the truth lies inside the fitted 90% bootstrap interval;
- holds out every run of the largest N (fit-laws --holdout-largest), refits, and counts how often the held-out
  runs' metric lies inside the calibrated 90% interval `predict` would give, with the error of the prediction.

    python -m benchmarks.law_recovery [--replicates 20] [--bootstrap 100] [--workers 2]

Prints a table and writes it to benchmarks/results/law_recovery.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from benchmarks.results_file import write_table
from scalerec.analysis.synthetic_runs import CASES, recovery_replicate
from scalerec.store.provenance import git_state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicates", type=int, default=20)
    parser.add_argument("--bootstrap", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    started = time.perf_counter()
    jobs = [(direction, seed, args.bootstrap) for direction in CASES for seed in range(args.replicates)]
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(recovery_replicate, *zip(*jobs)))
    minutes = (time.perf_counter() - started) / 60
    command = f"python -m benchmarks.law_recovery {' '.join(sys.argv[1:])}".strip()
    lines = [
        f"Written by `{command}` at commit {(git_state()[0] or 'unknown')[:12]} in {minutes:.1f} min: "
        f"{args.replicates} replicates per direction, {args.bootstrap} bootstrap resamples of whole runs.",
        "",
        "## Parameters of the N,T law: truth inside the 90% interval",
        "",
        "| metric (direction) | parameter | truth | median estimate | inside the 90% interval | failed fits |",
        "|---|---|---|---|---|---|",
    ]
    for direction, (_, metric, truth) in CASES.items():
        mine = [r for r in results if r["direction"] == direction]
        failed = sum(r["status"] != "ok" for r in mine)
        for name, value in truth.items():
            inside = np.mean([r["covered"][name] for r in mine])
            median = np.median([r["estimates"][name] for r in mine])
            lines.append(
                f"| `{metric}` ({direction}) | {name} | {value:g} | {median:.4g} | {inside:.0%} | "
                f"{failed} of {len(mine)} |"
            )
    lines += [
        "",
        "## Every run of the largest N held out: predicted by the refit without them",
        "",
        "| metric (direction) | held-out runs | inside the calibrated 90% interval | MAPE | intervals |",
        "|---|---|---|---|---|",
    ]
    for direction, (_, metric, _) in CASES.items():
        mine = [r for r in results if r["direction"] == direction]
        inside = [v for r in mine for v in r["held_inside"] if v is not None]
        ape = [v for r in mine for v in r["held_ape"]]
        kinds = sorted({str(r["held_interval"]).split(" on ")[0] for r in mine})
        lines.append(
            f"| `{metric}` ({direction}) | {len(ape)} | {np.mean(inside):.0%} of {len(inside)} | "
            f"{np.mean(ape):.1%} | {'; '.join(kinds)} |"
        )
    write_table(Path(__file__).parent / "results" / "law_recovery.md", lines)


if __name__ == "__main__":
    main()
