"""Evaluation's share of a reference-recipe run (issue 34): Table 1's SRT-1K on 5-core Beauty, evaluated as today
(every epoch: validation and test, both protocols from one pass, every slice with its own passes) and lean
(`train.test_when_best`: test only where best-on-validation can select; `train.slice_passes = "final"`: the noise
and ahead slices only at the last checkpoint). Same training, so the same validation curve; the table gives each
variant's evaluation share (eval_time_s / wall_time_s of its rows) and the checkpoint and test numbers each selects.

    python -m benchmarks.eval_share [--epochs 3] [--data data/beauty] [--work benchmarks/work/eval_share]

Resumable (a run store under --work). Writes benchmarks/results/eval_share.md."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.results_file import write_table, written_at
from benchmarks.table1 import MODELS, PROTOCOLS, recipe_config
from scalerec.analysis.envelope import best_checkpoints
from scalerec.config import protocol_suffix
from scalerec.store import RunStore
from scalerec.train.trainer import train_run

HERE = Path(__file__).resolve().parent
LEAN = {"test_when_best": True, "slice_passes": "final"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--data", type=Path, default=Path("data/beauty"))
    parser.add_argument("--work", type=Path, default=HERE / "work" / "eval_share")
    parser.add_argument("--model", default="SRT-1K", choices=sorted(MODELS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "eval_share.md")
    args = parser.parse_args()
    if not (args.data / "dataset.json").exists():
        sys.exit(f"eval_share: {args.data} is not a prepared dataset (scalerec data prepare DIR --format beauty)")
    command = f"python -m benchmarks.eval_share {' '.join(sys.argv[1:])}".strip()
    shape = argparse.Namespace(prefix_batches="one-pass", length_pool=0, epochs=args.epochs)
    fields = MODELS[args.model]
    variants = {
        "every epoch (today)": recipe_config(args.data, 0, fields, shape, "eval_share"),
        "lean": recipe_config(
            args.data, 0, {**fields, "train": {**fields.get("train", {}), **LEAN}}, shape, "eval_share lean"
        ),
    }
    store = RunStore(args.work)
    for cfg in variants.values():
        train_run(cfg, store, threads=args.threads)

    metric = f"test_ndcg_at_{variants['lean'].train.eval_ks[0]}"
    trained_at = sorted({store.read_config(c.run_id)["provenance"]["git_commit"][:12] for c in variants.values()})
    lines = [
        f"# Evaluation's share of a run: {args.model} on `{args.data}`, {args.epochs} epochs",
        "",
        f"Written by `{command}` {written_at()}"
        f": the reference recipe as Table 1 runs it (protocols {', '.join(PROTOCOLS)}, "
        "one-pass prefixes), one thread, seed 0. Share = evaluation seconds / run seconds at the last row "
        "(`eval_time_s` / `wall_time_s`). Each protocol's selected checkpoint is the best validation NDCG@5 under "
        f"it; test never chooses. Runs trained at commit {', '.join(trained_at)}.",
        "",
        "| evaluation | run s | evaluation s | share | test passes | "
        + " | ".join(f"selected epoch, {metric} ({p})" for p in PROTOCOLS)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(PROTOCOLS),
    ]
    for name, cfg in variants.items():
        rows = store.read_rows(cfg.run_id)
        last = rows.iloc[-1]
        cells = []
        for protocol in PROTOCOLS:
            suffix = "" if protocol == PROTOCOLS[0] else protocol_suffix(protocol)
            chosen = best_checkpoints(rows, f"valid_ndcg_at_5{suffix}").iloc[0]
            cells.append(f"{chosen.epoch:g}, {chosen[metric + suffix]:.4f}")
        lines.append(
            f"| {name} | {last.wall_time_s:.0f} | {last.eval_time_s:.0f} | "
            f"{last.eval_time_s / last.wall_time_s:.1%} | {int(rows[metric].notna().sum())} of {len(rows)} | "
            + " | ".join(cells)
            + " |"
        )
    write_table(args.out, lines)


if __name__ == "__main__":
    main()
