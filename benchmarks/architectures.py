"""The Beauty architecture study (issue 33): SASRec and HSTU blocks on the same shapes, recipe and data ladder,
their laws fitted per family with `scalerec fit-laws --by block`, and where one family's envelope overtakes the
other's. Writes benchmarks/results/architectures/README.md (and the fit-laws output beside it) from the stores:

    python -m benchmarks.architectures [--sasrec-runs results/beauty_scaling/runs-beauty]
        [--hstu-runs benchmarks/work/architectures/runs-hstu] [--archive]

The SASRec family is the committed Beauty study (preset beauty-ladder), the ID encoder family its ID twin
(beauty-ladder-id, committed); the HSTU family trains with
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
from scalerec.analysis.families import EXPONENT_COLUMNS, crossover_text, exponent_cells
from scalerec.grid.spec import expand, load_spec
from scalerec.store import RunStore, read_checkpoints
from scalerec.store.summary import run_seconds

HERE = Path(__file__).resolve().parent


PRESETS = {"sasrec": "beauty-ladder", "text": "beauty-ladder", "hstu": "beauty-ladder-hstu", "id": "beauty-ladder-id"}


def family_hours(runs: Path, preset: str) -> tuple[int, int, float]:
    """(finished runs, runs the family's preset plans, CPU hours of the store's last rows)."""
    store = RunStore(runs)
    rows = read_checkpoints(runs)
    last = rows.sort_values("step").groupby("run_id").tail(1)
    seconds = [run_seconds(row)["cpu_time_s"] or row["wall_time_s"] for _, row in last.iterrows()]
    planned = len(expand(load_spec(preset=preset)[0]))
    return sum(store.status(i) == "done" for i in store.run_ids()), planned, sum(seconds) / 3600


def _shown(path: Path) -> str:
    """A store's path as the repository sees it (absolute when it lies elsewhere)."""
    path = path.resolve()
    return str(path.relative_to(HERE.parent)) if path.is_relative_to(HERE.parent) else str(path)


def compare(stores: dict[str, Path], column: str, out: Path, args: argparse.Namespace) -> list[str]:
    """`scalerec fit-laws STORES --by COLUMN --out OUT` and its comparison as markdown lines: the families'
    exponents side by side, the crossovers of their envelopes, the families left out."""
    fit = [sys.executable, "-m", "scalerec", "fit-laws", *map(str, stores.values()), "--by", column]
    fit += ["--metric", args.metric, "--bootstrap", str(args.bootstrap), "--out", str(out)]
    if subprocess.run(fit).returncode:
        sys.exit(f"architectures: `{' '.join(fit[1:])}` failed (its error is above)")
    by = json.loads((out / "laws.json").read_text())["by"]
    lines = [
        "| family | store | finished / planned | CPU hours | " + " | ".join(EXPONENT_COLUMNS.values()) + " |",
        "|---" * (4 + len(EXPONENT_COLUMNS)) + "|",
    ]
    for family, exps in by["comparison"]["exponents"].items():
        done, total, hours = family_hours(stores[family], PRESETS[family]) if family in stores else (0, 0, 0.0)
        cells = exponent_cells(exps)
        where = _shown(stores[family]) if family in stores else "?"
        lines.append(f"| {family} | `{where}` | {done} / {total} | {hours:.2f} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {crossover_text(pair)}." for pair in by["comparison"]["crossovers"]]
    lines += [f"- {by['column']} = {family} left out: {why}." for family, why in by["left_out"].items()]
    return [*lines, "", f"![envelopes by {column}]({out.name}/figures/families.png)"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sasrec-runs", type=Path, default=HERE / "results" / "beauty_scaling" / "runs-beauty")
    parser.add_argument("--hstu-runs", type=Path, default=HERE / "work" / "architectures" / "runs-hstu")
    parser.add_argument("--id-runs", type=Path, default=HERE / "results" / "beauty_scaling" / "runs-beauty-id")
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
    lines = [
        "# Architectures on Beauty compared by their laws: SASRec and HSTU blocks, text and ID item encoders",
        "",
        f"Written by `{command}`. Metric `{args.metric}`, {args.bootstrap} bootstrap resamples of whole runs; every "
        "family: the `srt-reference` recipe (SRT-100, one-pass prefixes) on the same 5-core Beauty ladder and seed.",
        "",
        "## Blocks: SASRec and HSTU (text item encoder, the beauty-ladder shapes)",
        "",
        "HSTU with its relative-position bias only: the shared 5-core Beauty holds each user's order, not times, so "
        "`model.hstu_time_bias` does not apply. CPU hours are as the runs recorded them, evaluation included: they "
        "depend on what else shared the machine's two cores while each trained (a run beside another takes more CPU "
        "time), so they are what the study cost, not a per-architecture price. finished / planned: the runs of the "
        "family's preset done when this was written; a family still training is fitted on what its store holds.",
        "",
        *compare({"sasrec": args.sasrec_runs, "hstu": hstu}, "block", args.out / "laws", args),
        "",
        "## Item encoders: text and ID (SASRec blocks; presets beauty-ladder and beauty-ladder-id)",
        "",
        *compare({"text": args.sasrec_runs, "id": args.id_runs}, "item_encoder", args.out / "laws-encoders", args),
    ]
    write_table(args.out / "README.md", lines)


if __name__ == "__main__":
    main()
