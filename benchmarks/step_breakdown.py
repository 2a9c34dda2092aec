"""Where a training step's time goes on 5-core Beauty, and so how far removing padding can speed it up at best.

    python -m benchmarks.step_breakdown --threads 1          # about 3 minutes on 2 CPU cores

For the four batchings of benchmarks/epoch_speed.py ((a) all padded, (b) all length-aware, (c) prefix padded, (d)
prefix one-pass; the SRT reference recipe at SRT-1K, 2x2x64), one run times, over the same `--steps` batches of each:
  step         the trainer's whole optimizer step (negatives drawn, encoding, transformer, scoring, loss, backward,
               Adam);
  transformer  the causal transformer's forward and backward alone on a batch of that shape (dropout on): the only
               part whose work grows with padding;
  catalog      the text encoder's whole-catalog encoding, forward and backward (the step encodes the catalog once
               per batch, whatever its padding);
  Adam         one fused Adam update of every parameter.
The rest of the step (scoring each target against its negatives, the loss, sampling, indexing) is step minus the
transformer, catalog and Adam. (b) and (d) keep the batches of (a) and (c) (the same targets per batch, the same
number of batches an epoch) and change only the windows the transformer reads, so step / (step - transformer) of
(a) and of (c) bounds what any batching can gain on them (Amdahl's law); the table prints that bound beside the
speed-ups measured in the same run. The table goes to benchmarks/results/step_breakdown.md.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.epoch_speed import MODES, mode_config, padded, step_parser
from benchmarks.results_file import write_table
from benchmarks.table1 import prepared_beauty

HERE = Path(__file__).resolve().parent

TIMED = list(MODES)[:4]  # (a)-(d): the two speed-ups the issue sets goals for


def _seconds(work, runs) -> float:
    """Mean seconds of `work(i)` over `runs` calls, after one warm-up call."""
    work(0)
    started = time.perf_counter()
    for i in range(runs):
        work(i)
    return (time.perf_counter() - started) / runs


def breakdown(cfg, pad: bool, steps: int) -> dict:
    """Seconds per step of the whole step and of its parts, over `steps` batches spread over a shuffled epoch."""
    from scalerec.store import RunStore
    from scalerec.train.trainer import Trainer, resolve_device

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, RunStore(tmp), resolve_device(), progress=False)
        generator = torch.Generator().manual_seed(0)
        epoch = list(trainer.epoch_batches(generator))
        picked = torch.linspace(0, len(epoch) - 1, steps + 1).round().long().unique().tolist()
        batches = [padded(epoch[i], cfg.model.max_len) if pad else epoch[i] for i in picked]
        for batch in batches:  # fvcore's count (once per batch shape in a run) is not timed
            trainer.flops(batch)
        model, hidden = trainer.model, cfg.model.hidden
        step = _seconds(lambda i: trainer.step(batches[i], generator), len(batches) - 1)
        inputs = [torch.randn(b.seq.shape[0], b.seq.shape[1] - 1, hidden, requires_grad=True) for b in batches]

        def transformer(i: int) -> None:
            out = model.transformer(inputs[i])
            out.backward(torch.ones_like(out))

        def catalog(_: int) -> None:
            table = model.item_encoder.catalog()
            table.backward(torch.ones_like(table))

        parts = {
            "transformer": _seconds(transformer, len(batches) - 1),
            "catalog": _seconds(catalog, len(batches) - 1) if hasattr(model.item_encoder, "catalog") else 0.0,
            "adam": _seconds(lambda _: trainer.optimizer.step(), len(batches) - 1),
        }
    positions = sum(b.seq[:, 1:].numel() for b in batches[1:])
    real = sum(int((b.seq[:, 1:] != 0).sum()) for b in batches[1:])
    return {
        "step": step,
        **parts,
        "rest": step - sum(parts.values()),
        "padding_share": 1 - real / positions,
        "bound": step / max(step - parts["transformer"], 1e-12),
    }


def main() -> None:
    args = step_parser(__doc__, "step_breakdown.md").parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = prepared_beauty(Path(args.work), Path(args.shared_data))
    rows = {}
    for name in TIMED:
        _, pad, _ = MODES[name]
        rows[name] = breakdown(mode_config(data, name, args.negatives), pad, args.steps)
        print(f"{name}: {rows[name]['step'] * 1000:.1f} ms/step", file=sys.stderr, flush=True)
    a, b, c, d = (rows[name] for name in TIMED)
    command = f"python -m benchmarks.step_breakdown {' '.join(sys.argv[1:])}".strip()
    from scalerec.store.provenance import git_state

    def ms(x: float, step: float) -> str:
        return f"{x * 1000:.1f} ({x / step:.0%})"

    lines = [
        "# Where a training step's time goes on 5-core Beauty",
        "",
        f"Written by `{command}` at commit {(git_state()[0] or 'unknown')[:12]}: recipe `srt-reference`, "
        f"2x2x64, {args.negatives} negatives per target, batch 128, max_len 50; {args.steps} steps per mode; "
        f"{os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads. Milliseconds per step (share of "
        "the step). Batching changes only the transformer's work (the targets per batch, and so the catalog "
        "encoding, scoring and Adam per batch, stay): `bound` = step / (step − transformer) is the most any "
        "batching of those targets could gain.",
        "",
        "| mode | padding share | step | transformer | catalog encoding | Adam | rest (scoring, loss, sampling) "
        "| bound |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {name} | {r['padding_share']:.0%} | {r['step'] * 1000:.1f} | {ms(r['transformer'], r['step'])} | "
        f"{ms(r['catalog'], r['step'])} | {ms(r['adam'], r['step'])} | {ms(r['rest'], r['step'])} | "
        f"{r['bound']:.2f}x |"
        for name, r in rows.items()
    ]
    lines += [
        "",
        f"Measured in this run: all targets (a)/(b) {a['step'] / b['step']:.2f}x a step (bound "
        f"{a['bound']:.2f}x; issue goal 4x); prefix samples (c)/(d) {c['step'] / d['step']:.2f}x a step "
        f"(bound {c['bound']:.2f}x; issue goal 8x). A bound assumes the rest costs the same in both modes; a "
        "ratio above its bound means the rest itself differed between the two timings.",
    ]
    write_table(args.out, lines)


if __name__ == "__main__":
    main()
