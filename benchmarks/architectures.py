"""The Beauty architecture study (issue 33): SASRec and HSTU blocks on the same shapes, recipe and data ladder,
their laws fitted per family with `scalerec fit-laws --by block`, and where one family's envelope overtakes the
other's. Writes benchmarks/results/architectures/README.md (and the fit-laws output beside it) from the stores:

    python -m benchmarks.architectures [--sasrec-runs results/beauty_scaling/runs-beauty]
        [--hstu-runs benchmarks/work/architectures/runs-hstu] [--archive]

The SASRec family is the committed Beauty study (preset beauty-ladder); the HSTU family trains with
`scalerec grid --preset beauty-ladder-hstu --runs benchmarks/work/architectures/runs-hstu` (resumable). Works on a
store still training: the README says how many runs of each family had finished. `--archive` copies the finished
HSTU runs' records into results/architectures/runs-hstu (committable; no weights)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from benchmarks.results_file import write_table
from scalerec.analysis.families import crossover_text, estimate_text
from scalerec.store import RunStore, read_checkpoints
from scalerec.store.summary import run_seconds

HERE = Path(__file__).resolve().parent


def family_hours(runs: Path) -> tuple[int, int, float]:
    """(finished runs, runs, CPU hours of their last rows) of a store."""
    store = RunStore(runs)
    ids = store.run_ids()
    rows = read_checkpoints(runs)
    last = rows.sort_values("step").groupby("run_id").tail(1)
    seconds = [run_seconds(row)["cpu_time_s"] or row["wall_time_s"] for _, row in last.iterrows()]
    return sum(store.status(i) == "done" for i in ids), len(ids), sum(seconds) / 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sasrec-runs", type=Path, default=HERE / "results" / "beauty_scaling" / "runs-beauty")
    parser.add_argument("--hstu-runs", type=Path, default=HERE / "work" / "architectures" / "runs-hstu")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "architectures")
    parser.add_argument("--metric", default="valid_ndcg_at_5")  # under `full`, the recipe's protocol
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--archive", action="store_true")
    args = parser.parse_args()
    command = f"python -m benchmarks.architectures {' '.join(sys.argv[1:])}".strip()
    args.out.mkdir(parents=True, exist_ok=True)
    hstu = args.hstu_runs
    if args.archive:
        RunStore(args.hstu_runs).archive_finished(RunStore(args.out / "runs-hstu"))
        hstu = args.out / "runs-hstu"
    fit = [
        sys.executable,
        "-m",
        "scalerec",
        "fit-laws",
        str(args.sasrec_runs),
        str(hstu),
        "--by",
        "block",
        "--metric",
        args.metric,
        "--bootstrap",
        str(args.bootstrap),
        "--out",
        str(args.out / "laws"),
    ]
    if subprocess.run(fit).returncode:
        sys.exit(f"architectures: `{' '.join(fit[1:])}` failed (its error is above)")
    laws = json.loads((args.out / "laws" / "laws.json").read_text())
    by = laws["by"]

    lines = [
        "# Architectures on Beauty: SASRec and HSTU blocks compared by their laws",
        "",
        f"Written by `{command}`. Metric `{args.metric}`, {args.bootstrap} bootstrap resamples of whole runs; "
        "both families: the beauty-ladder shapes, the `srt-reference` recipe (SRT-100, one-pass prefixes), the "
        "text item encoder, the same 5-core Beauty ladder and seed. Laws, report and figures: `laws/`.",
        "",
        "| family | store | finished / runs | CPU hours | α (N) | β (T) | b (envelope) | N* exponent | T* exponent |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    stores = {"sasrec": args.sasrec_runs, "hstu": args.hstu_runs}
    for family, exps in by["comparison"]["exponents"].items():
        done, total, hours = family_hours(stores[family]) if family in stores else (0, 0, 0.0)
        cells = [estimate_text(exps[k]) for k in ("alpha", "beta", "b", "n_opt_exponent", "t_opt_exponent")]
        lines.append(
            f"| {family} | `{stores.get(family, '?')}` | {done} / {total} | {hours:.2f} | " + " | ".join(cells) + " |"
        )
    lines.append("")
    lines += [f"- {crossover_text(pair)}." for pair in by["comparison"]["crossovers"]]
    lines += [f"- {by['column']} = {family} left out: {why}." for family, why in by["left_out"].items()]
    lines += ["", "![envelopes by block](laws/figures/families.png)"]
    write_table(args.out / "README.md", lines)


if __name__ == "__main__":
    main()
