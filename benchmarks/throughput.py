"""Training throughput for every shape of the paper's Table 3, against this machine's fp32 matmul peak measured in the
same run.

    python -m benchmarks.throughput                 # about 5 minutes on 2 CPU cores
    python -m benchmarks.throughput --shapes 2x2x64,4x2x128 --steps 10

Per shape, on the built-in synthetic data with the paper's settings (batch 128, 1,000 popularity negatives, max
length 50): training targets/s in `last` mode (every prefix predicts its last item, the paper's; computed in one
causal pass per sequence, batches of 128 targets) and in `all` mode (every position predicts the next item), both
length-aware (windows bucketed by length in pools of 64 batches), and FLOP/s of `all` two ways (prefix samples in
one pass do so little matmul work per target that their step is sampling and encoding, not FLOPs):
- counted: train_flops per second as the run store counts them (6 x the nominal forward MACs, every window item and
  every negative encoded), the number the scaling laws use;
- actual: 6 x fvcore's MACs of the forward the trainer really runs (each distinct item of a batch encoded once),
  the work the hardware did.
Also: the time fvcore's count takes (once per batch shape, cached), and evaluation's share of a run that evaluates
every epoch on data of mean length 20 (10,000 sampled negatives, capped by the catalog).
Writes benchmarks/results/throughput.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import torch

from benchmarks.results_file import write_table
from scalerec.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from scalerec.shapes import PAPER_SHAPES

HERE = Path(__file__).resolve().parent


def matmul_peak(seconds: float = 3.0, n: int = 2048) -> float:
    """fp32 GFLOP/s of square matmuls with all threads: the best of repeated timings."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - started))
    return best / 1e9


def measure(cfg: RunConfig, steps: int, store_root: Path) -> dict:
    """Targets/s, counted and actual FLOP/s, FLOP-count time, for `steps` timed training steps of `cfg`."""
    from scalerec.store import RunStore
    from scalerec.train.flops import count_forward_macs
    from scalerec.train.trainer import Trainer, resolve_device

    trainer = Trainer(cfg, RunStore(store_root), resolve_device(), progress=False)
    generator = torch.Generator().manual_seed(0)
    batches = iter(list(trainer.epoch_batches(generator))[: steps + 1])
    counted = actual = targets = 0.0
    elapsed = count_seconds = 0.0
    for i, batch in enumerate(batches):
        if i == 0:
            started = time.perf_counter()
            trainer.flops(batch)  # the trainer's own counter: nominal forward, once per batch shape
            count_seconds = time.perf_counter() - started
        macs_before = trainer.counters.macs
        state = generator.get_state()
        started = time.perf_counter()
        trainer.step(batch, generator)  # the trainer's own step: sampling, clipping, schedule included
        step_seconds = time.perf_counter() - started
        if i == 0:
            continue  # warm-up
        elapsed += step_seconds
        targets += batch.n_targets
        counted += 6 * (trainer.counters.macs - macs_before)
        generator.set_state(state)  # the same negatives as the step drew, counted as executed (shortcuts on)
        negatives = trainer.sampler.for_batch(batch, cfg.train.negatives, cfg.train.negatives_per_target, generator)
        actual += 6 * count_forward_macs(trainer.step_module, (batch.seq, batch.targets, negatives), nominal=False)[0]
    started = time.perf_counter()
    trainer.evaluator.evaluate(trainer.model, "valid", trainer.device)
    eval_s = time.perf_counter() - started
    batches = trainer.windows.batches_per_epoch(cfg.train.batch_size, cfg.train.batch_targets)
    return {
        "targets_per_s": targets / elapsed,
        "counted": counted / elapsed,
        "actual": actual / elapsed,
        "step_s": elapsed / steps,
        "count_s": count_seconds,
        "eval_s": eval_s,
        "epoch_s": batches * elapsed / steps,
        "n": trainer.model.param_counts()["non_embedding_params"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default=",".join("x".join(map(str, s)) for s in PAPER_SHAPES))
    parser.add_argument("--steps", type=int, default=6, help="timed steps per shape and mode (after one warm-up)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", default=str(HERE / "results" / "throughput.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import tempfile

    peak = matmul_peak()
    rows = []
    data = DataConfig(n_users=400, n_items=2000, mean_length=20)
    with tempfile.TemporaryDirectory() as tmp:
        for shape in args.shapes.split(","):
            layers, heads, hidden = map(int, shape.split("x"))
            base = RunConfig(
                data,
                ModelConfig(n_layers=layers, n_heads=heads, hidden=hidden, dropout=0.5),
                TrainConfig(
                    batch_size=128, n_negatives=1000, targets="last", prefix_batches="one-pass", length_pool=64
                ),
            )
            last = measure(base, args.steps, Path(tmp))
            every = measure(
                dataclasses.replace(
                    base, train=dataclasses.replace(base.train, targets="all", prefix_batches="padded")
                ),
                args.steps,
                Path(tmp),
            )
            eval_share = last["eval_s"] / (last["eval_s"] + last["epoch_s"])  # evaluating every epoch (last mode)
            rows.append(
                {
                    "shape": shape,
                    "N": last["n"],
                    "last_targets_s": last["targets_per_s"],
                    "all_targets_s": every["targets_per_s"],
                    "counted": every["counted"] / 1e9,
                    "actual": every["actual"] / 1e9,
                    "count_steps": every["count_s"] / every["step_s"],
                    "eval_share": eval_share,
                }
            )
            print(rows[-1], flush=True)
    from scalerec.store.provenance import git_state

    commit = git_state()[0] or "unknown"
    lines = [
        "# Training throughput on this machine",
        "",
        f"Command: `python -m benchmarks.throughput {' '.join(sys.argv[1:])}` at commit {commit[:12]}; "
        f"{os.cpu_count()} CPU cores, "
        f"{args.threads} threads, torch {torch.__version__}. fp32 matmul peak measured in the same run "
        f"(2048x2048 `torch.mm`, best of 3 s): **{peak:.0f} GFLOP/s**. Batch 128, 1,000 popularity negatives, "
        "max length 50, dropout 0.5, text encoder, length-aware batches, `last` as prefix samples in one pass; "
        "counted FLOP/s = the run store's train_flops per second "
        "(nominal: every window item and negative encoded); actual = fvcore's count of the forward the trainer runs "
        "(each distinct item once), x 6.",
        "",
        "| shape | N | targets/s `last` | targets/s `all` | `all` gain | `all`: counted GFLOP/s (% of peak) | "
        "`all`: actual GFLOP/s (% of peak) | FLOP count, in steps | evaluation share |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['shape']} | {r['N']:,} | {r['last_targets_s']:,.0f} | {r['all_targets_s']:,.0f} | "
            f"{r['all_targets_s'] / r['last_targets_s']:.0f}x | {r['counted']:.1f} ({r['counted'] / peak:.0%}) | "
            f"{r['actual']:.1f} ({r['actual'] / peak:.0%}) | {r['count_steps']:.1f} | {r['eval_share']:.1%} |"
        )
    lines += [
        "",
        "FLOP count, in steps: fvcore's count of one batch shape costs this many `all` training steps, once "
        "per batch shape per run, so it is below 1% of any run longer than "
        "~200 x that many steps. Evaluation share: evaluation time / (evaluation + one epoch of `last`-mode "
        "training) for users of mean length 20, evaluating every epoch.",
    ]
    write_table(args.out, lines)


if __name__ == "__main__":
    main()
