"""torch.compile on the training step, side by side with eager in one run (issue 15: is it worth adopting?).

    python -m benchmarks.compile_speed --work /work/t1 --threads 1

For the two batchings a run uses on 5-core Beauty with the SRT reference recipe (epoch_speed.py's (b) all targets,
length-aware, and (d) prefix samples in one pass), times `--steps` training steps with the model's causal
transformer eager and compiled (`torch.compile(dynamic=True)`: length-aware batches change width every step, and a
static compile would recompile for each). The item encoder is left eager: its whole-catalog path holds sparse
tensors, which the compiler does not take. Every timed batch is stepped through once before the timing (the warm-up,
which holds the compilation of each width; its seconds are reported apart), in both rows.
Writes benchmarks/results/compile_speed.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from benchmarks.epoch_speed import MODES, epoch_seconds, mode_config, step_parser
from benchmarks.results_file import write_table
from benchmarks.table1 import prepared_beauty

HERE = Path(__file__).resolve().parent


def keep_eager(trainer) -> None:
    """Nothing changed; passing it gives eager the same warm-up as the compiled run."""


def compile_transformer(trainer) -> None:
    torch._dynamo.reset()  # no graph reused from the previous row
    trainer.model.transformer = torch.compile(trainer.model.transformer, dynamic=True)


def main() -> None:
    args = step_parser(__doc__, "compile_speed.md").parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = prepared_beauty(Path(args.work), Path(args.shared_data))
    rows = []
    for name in ("(b) all, length-aware", "(d) prefix, one-pass"):
        cfg, pad = mode_config(data, name, args.negatives), MODES[name][1]
        for how, prepare in (("eager", keep_eager), ("compiled", compile_transformer)):
            rows.append({"mode": name, "how": how, **epoch_seconds(cfg, pad, args.steps, prepare=prepare)})
            print(f"{name}, {how}: {rows[-1]['seconds_per_step']:.4f} s/step", file=sys.stderr, flush=True)
    from scalerec.store.provenance import git_state

    command = f"python -m benchmarks.compile_speed {' '.join(sys.argv[1:])}".strip()
    lines = [
        "# torch.compile of the causal transformer against eager, one training step",
        "",
        f"Written by `{command}` at commit {(git_state()[0] or 'unknown')[:12]} with torch {torch.__version__}: "
        f"recipe `srt-reference`, {args.negatives} negatives per target, 5-core Beauty; {args.steps} timed steps "
        f"per row after a warm-up pass over the same batches (which holds the compilation); "
        f"{os.cpu_count()} CPU cores, "
        f"{torch.get_num_threads()} torch threads.",
        "",
        "| batches | transformer | s/step | warm-up s | min/epoch | speed-up over eager |",
        "|---|---|---|---|---|---|",
    ]
    for eager, compiled in zip(rows[::2], rows[1::2]):
        for r in (eager, compiled):
            ratio = eager["seconds_per_step"] / r["seconds_per_step"]
            lines.append(
                f"| {r['mode']} | {r['how']} | {r['seconds_per_step']:.4f} | {r['warmup_seconds']:.1f} | "
                f"{r['epoch_minutes']:.2f} | {ratio:.2f}x |"
            )
    write_table(args.out, lines)


if __name__ == "__main__":
    main()
