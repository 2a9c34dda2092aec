"""Speed of the import path at scale: 100,000 rows (2,000 runs x 50 checkpoints, the table of fit_speed.py) written
as CSV, imported with `import-table`, and fitted with `fit-laws` (backtest on, 200 bootstrap resamples).

    python -m benchmarks.import_speed [--runs 2000] [--checkpoints 50] [--bootstrap 200]

Prints a table and writes it to benchmarks/results/import_speed.md. Goal (issue 31): fit-laws on 100,000 imported
rows with the backtest under 2 minutes.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.fit_speed import generated_store, store_parser
from benchmarks.results_file import write_table
from scalerec.analysis.fit_laws import FitOptions, fit_laws
from scalerec.store.imported import TableMapping, import_table
from scalerec.store.provenance import git_state
from scalerec.store.runstore import read_checkpoints


def main() -> None:
    args = store_parser(__doc__).parse_args()
    store = generated_store(args.runs, args.checkpoints)
    table = store[
        ["run_id", "step", "non_embedding_params", "seen_interactions", "dataset_interactions", "valid_ndcg_at_5"]
    ].rename(
        columns={
            "run_id": "run",
            "non_embedding_params": "params",
            "seen_interactions": "tokens",
            "dataset_interactions": "data",
            "valid_ndcg_at_5": "ndcg",
        }
    )
    timings = {}
    with tempfile.TemporaryDirectory() as work:
        table.to_csv(Path(work) / "runs.csv", index=False)
        started = time.perf_counter()
        import_table(
            [str(Path(work) / "runs.csv")],
            TableMapping("params", "tokens", "ndcg", run="run", step="step", D="data"),
            Path(work) / "s",
        )
        timings["import-table"] = time.perf_counter() - started
        started = time.perf_counter()
        checkpoints = read_checkpoints(Path(work) / "s")
        timings["read the store"] = time.perf_counter() - started
        for bootstrap in (0, args.bootstrap):
            started = time.perf_counter()
            data = fit_laws(checkpoints, FitOptions(metric="ndcg", bootstrap=bootstrap, slices=False))
            timings[f"fit-laws, backtest, {bootstrap} resamples"] = time.perf_counter() - started
    risk = data["laws"]["risk"]
    command = f"python -m benchmarks.import_speed {' '.join(sys.argv[1:])}".strip()
    lines = [
        f"Written by `{command}` at commit {(git_state()[0] or 'unknown')[:12]}: {len(table):,} rows of "
        f"{args.runs:,} runs; {os.cpu_count()} CPUs. Fitted Eq. 4 ({risk['status']}): E "
        f"{(risk['params']['E'] or 0):.3f}, α {(risk['params']['alpha'] or 0):.3f}, β "
        f"{(risk['params']['beta'] or 0):.3f} (true 0.5, 0.35, 0.35).",
        "",
        "| step | seconds |",
        "|---|---|",
        *[f"| {k} | {v:.1f} |" for k, v in timings.items()],
    ]
    write_table(Path(__file__).parent / "results" / "import_speed.md", lines)


if __name__ == "__main__":
    main()
