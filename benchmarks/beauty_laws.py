"""The committed Beauty study's laws, for NDCG and for the validation loss: which N,T law the backtest selects, its
flags and held-out error, every candidate beside it, and the budget answer for a fixed dataset.

    python -m benchmarks.beauty_laws [--runs benchmarks/results/beauty_scaling/runs-beauty] [--bootstrap 200]
                                     [--flops 1e16] [--dataset-interactions 150000]

Prints a table and writes it to benchmarks/results/beauty_laws.md. Goal (issue 31): the selected N,T law not
flagged, backtest MAPE ≤ 5%.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchmarks.results_file import write_table
from scalerec.analysis.fit_laws import FitOptions, fit_laws
from scalerec.analysis.predict import predict_budget
from scalerec.store.provenance import git_state
from scalerec.store.runstore import read_checkpoints

HERE = Path(__file__).parent


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=str(HERE / "results" / "beauty_scaling" / "runs-beauty"))
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--flops", type=float, default=1e16)
    parser.add_argument("--dataset-interactions", type=float, default=150_000)
    args = parser.parse_args()
    checkpoints = read_checkpoints(args.runs)
    command = f"python -m benchmarks.beauty_laws {' '.join(sys.argv[1:])}".strip()
    lines = [
        f"Written by `{command}` at commit {(git_state()[0] or 'unknown')[:12]} from the run store "
        f"`{Path(args.runs).name}` ({checkpoints.run_id.nunique()} runs, {len(checkpoints)} checkpoints; "
        f"fit-laws defaults, {args.bootstrap} bootstrap resamples).",
        "",
    ]
    for metric in ("valid_ndcg_at_5", "valid_loss"):
        started = time.perf_counter()
        data = fit_laws(checkpoints, FitOptions(metric=metric, bootstrap=args.bootstrap))
        seconds = time.perf_counter() - started
        selection = data["backtest"]["selection"]
        lines += [
            f"## `{metric}` (better {data['options']['direction']}; fitted in {seconds:.0f} s)",
            "",
            f"Selected N,T law: **{selection['selected']}** ({selection['why']}).",
            "",
            "| N,T law | form | status | held-out points | MAPE | inside the calibrated 90% interval | flags |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in selection["candidates"]:
            entry = data["laws"][row["law"]]
            mark = " **(selected)**" if row["law"] == selection["selected"] else ""
            lines.append(
                f"| `{row['law']}`{mark} | {entry['law']} | {entry['status']} | {row['n']} | "
                f"{_pct(row['mape'])} | {_pct(row['coverage_calibrated_cv'])} | "
                f"{'; '.join(entry['flags']) or 'none'} |"
            )
        budget = predict_budget(data, args.flops, args.dataset_interactions)
        fixed = budget["fixed_dataset"]
        lines += [
            "",
            f"`predict --flops {args.flops:g} --dataset-interactions {args.dataset_interactions:g}`: "
            + (
                f"train N = {fixed['N']:.3g} for {fixed['epochs']:.3g} epochs"
                if fixed["answer"] == "repeat"
                else fixed["why"] + (f" (N = {fixed['one_pass']['N']:.3g})" if fixed.get("one_pass") else "")
            )
            + ".",
            "",
        ]
    write_table(HERE / "results" / "beauty_laws.md", lines)


if __name__ == "__main__":
    main()
