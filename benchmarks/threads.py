"""How to spend a machine's cores on a grid: one run with every core, or one run per core? Side by side in one run.

    python -m benchmarks.threads --work /work/t1               # about 5 minutes on 2 CPU cores

For the batchings a Beauty run uses (epoch_speed.py's (b) all targets, length-aware, and (d) prefix samples in one
pass; SRT reference recipe, 1,000 negatives), times `--steps` training steps (after a warm-up pass over the same
batches) in three settings: one run alone with 1 torch thread; one run alone with all the cores' threads; and one
run per core at once, 1 thread each (processes started together: they meet at a barrier before the warm-up). The
grid's throughput is training targets per second summed over the runs at once. `scalerec grid` shares the cores as
`--workers` runs of cores / workers threads (scalerec/machine.py); this says which split to choose. Writes
benchmarks/results/threads.md.
"""

from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from benchmarks.results_file import write_table
from scalerec.machine import available_cores

HERE = Path(__file__).resolve().parent

BATCHINGS = ("(b) all, length-aware", "(d) prefix, one-pass")


def timed(name: str, data: str, negatives: int, steps: int, threads: int, barrier=None) -> dict:
    """One process: `threads` torch threads, `steps` timed steps of batching `name` (waits at `barrier` first)."""
    import torch

    from benchmarks.epoch_speed import MODES, epoch_seconds, mode_config

    torch.set_num_threads(threads)
    wait = (lambda _: barrier.wait()) if barrier else (lambda _: None)
    result = epoch_seconds(mode_config(data, name, negatives), MODES[name][1], steps, prepare=wait)
    return {**result, "targets_per_s": result["targets_per_batch"] / result["seconds_per_step"]}


def main() -> None:
    from benchmarks.epoch_speed import step_parser
    from benchmarks.table1 import prepared_beauty

    args = step_parser(__doc__, "threads.md", threads=False).parse_args()

    data = str(prepared_beauty(Path(args.work), Path(args.shared_data)))
    cores = available_cores()
    context = multiprocessing.get_context("spawn")  # fresh processes: no thread pool inherited from this one
    rows = []
    for name in BATCHINGS:
        common = (name, data, args.negatives, args.steps)
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            alone = [pool.submit(timed, *common, threads).result() for threads in sorted({1, cores})]
        with multiprocessing.Manager() as manager, ProcessPoolExecutor(cores, mp_context=context) as pool:
            barrier = manager.Barrier(cores)
            together = [f.result() for f in [pool.submit(timed, *common, 1, barrier) for _ in range(cores)]]
        settings = [
            ("1 run, 1 thread", [alone[0]]),
            (f"1 run, {cores} threads", [alone[-1]]),
            (f"{cores} runs at once, 1 thread each", together),
        ]
        base = alone[0]["targets_per_s"]
        for setting, results in settings:
            total = sum(r["targets_per_s"] for r in results)
            step = sum(r["seconds_per_step"] for r in results) / len(results)
            rows.append(f"| {name} | {setting} | {step:.4f} | {total:,.0f} | {total / base:.2f}x |")
        print(rows[-1], file=sys.stderr, flush=True)
    from scalerec.store.provenance import git_state

    command = f"python -m benchmarks.threads {' '.join(sys.argv[1:])}".strip()
    lines = [
        "# Cores per run: one run with all the threads, or one run per core",
        "",
        f"Written by `{command}` at commit {(git_state()[0] or 'unknown')[:12]}: recipe `srt-reference`, "
        f"{args.negatives} negatives per target, 5-core Beauty; {args.steps} timed steps per run after a warm-up "
        f"pass; {cores} cores available. Targets/s: summed over the runs training at once.",
        "",
        "| batches | setting | s/step (mean over runs) | targets/s | vs 1 run, 1 thread |",
        "|---|---|---|---|---|",
        *rows,
    ]
    write_table(args.out, lines)


if __name__ == "__main__":
    main()
