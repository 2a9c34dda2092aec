"""Epoch time on real data (5-core Beauty): padded batches against length-aware ones, side by side in one run.

    python -m benchmarks.epoch_speed                 # about 10 minutes on 2 CPU cores
    python -m benchmarks.epoch_speed --steps 10 --json

Four ways to batch one epoch of the SRT reference recipe (scalerec/recipes/srt-reference.toml) on Beauty, whose
sequences are short (mean 8.9 items) against max_len 50:
  (a) all, padded      every position a target, every window padded to max_len + 1 (scalerec 0.1)
  (b) all, length-aware windows trimmed to the longest of their batch, bucketed by length (train.length_pool)
  (c) prefix, padded   every prefix its own window with its last item as the target, padded to max_len + 1 (the
                       reference code's RecBole batching)
  (d) prefix, one-pass the same prefix samples from one causal pass per sequence, batches of batch_size targets
                       (train.prefix_batches = "one-pass"), bucketed by length
  (d') as (d), but the text encoder encodes each batch's distinct items with its EmbeddingBags instead of the whole
                       catalog as fixed sparse poolings (TextItemEncoder.catalog, which the step takes when the
                       negatives are expected to cover enough of the catalog: the same vectors and gradients)
  (d'') as (d), without bucketing windows by length (train.length_pool = 0, the default, as Table 1, the ablation
                       and the Beauty study train): the same samples, batches of mixed lengths
(a)/(b) and (c)/(d) compute the same samples (tests/test_flops.py checks the losses are equal), so an epoch's time is
the speed-up. Each timing is `--steps` training steps (after one warm-up) spread evenly over a shuffled epoch,
scaled to the epoch's batch count; fvcore's FLOP count (once per batch shape in a run) and evaluation are not
timed. `--json` prints {"speedup_all", "speedup_prefix", "speedup_whole_catalog", "speedup_length_buckets",
"rows"}; the table goes to benchmarks/results/epoch_speed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmarks.results_file import write_table
from benchmarks.table1 import prepared_beauty
from scalerec.config import RunConfig
from scalerec.data.batches import Batch
from scalerec.data.datasets import resolve_data

HERE = Path(__file__).resolve().parent

ONE_PASS = {"targets": "last", "prefix_batches": "one-pass", "length_pool": 64}
MODES = {  # name -> (train fields, pad to max_len + 1, whole-catalog encoding: None = the step's own choice)
    "(a) all, padded": ({"targets": "all", "prefix_batches": "padded", "length_pool": 0}, True, None),
    "(b) all, length-aware": ({"targets": "all", "prefix_batches": "padded", "length_pool": 64}, False, None),
    "(c) prefix, padded": ({"targets": "last", "prefix_batches": "padded", "length_pool": 0}, True, None),
    "(d) prefix, one-pass": (ONE_PASS, False, None),
    "(d') prefix, one-pass, distinct items": (ONE_PASS, False, False),
    "(d'') prefix, one-pass, no length buckets": ({**ONE_PASS, "length_pool": 0}, False, None),
}


def step_parser(doc: str, out: str, threads: bool = True) -> argparse.ArgumentParser:
    """The options of the Beauty step benchmarks (this one, compile_speed.py, threads.py)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared-data", default=str(HERE.parent.parent / "shared" / "data" / "amazon-beauty-5core"))
    parser.add_argument("--work", default=str(HERE / "work"), help="where the prepared data goes")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per row")
    parser.add_argument("--negatives", type=int, default=1000, help="train.n_negatives (SRT-1K: 1000)")
    if threads:
        parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--out", default=str(HERE / "results" / out))
    return parser


def mode_config(data: str | Path, mode: str, negatives: int) -> RunConfig:
    """The reference recipe on prepared Beauty at `data`, batched as MODES[mode], with `negatives` per target."""
    mapping = {
        "recipe": "srt-reference",
        "data": {"name": "prepared", "path": str(data)},
        "train": {**MODES[mode][0], "n_negatives": negatives},
    }
    return resolve_data(RunConfig.from_dict(mapping, f"Beauty step, {mode}"))


def padded(batch: Batch, max_len: int) -> Batch:
    """The batch as 0.1 and RecBole build it: every window right-padded to max_len + 1 items."""
    extra = max_len + 1 - batch.seq.shape[1]
    return Batch(F.pad(batch.seq, (0, extra)), F.pad(batch.targets, (0, extra)), batch.n_targets)


def epoch_seconds(cfg: RunConfig, pad: bool, steps: int, whole_catalog: bool | None = None, prepare=None) -> dict:
    """Seconds per epoch, from `steps` timed steps scaled to the epoch's batches; and the share of padding.
    `prepare(trainer)`, if given, changes the trainer first and the warm-up then steps through every timed batch
    once (compile_speed.py compiles in it: each batch width compiled before the timing); the warm-up's seconds
    are returned as `warmup_seconds`."""
    from scalerec.store import RunStore
    from scalerec.train.trainer import Trainer, resolve_device

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, RunStore(tmp), resolve_device(), progress=False)
        if whole_catalog is not None:
            trainer.step_module.whole_catalog = whole_catalog
        generator = torch.Generator().manual_seed(0)
        epoch = list(trainer.epoch_batches(generator))
        n_batches = len(epoch)
        # batches spread evenly over the epoch: bucketed batches differ in width, a run of them would not be typical
        picked = torch.linspace(0, n_batches - 1, steps + 1).round().long().unique().tolist()
        batches = [padded(epoch[i], cfg.model.max_len) if pad else epoch[i] for i in picked]
        for batch in batches:  # fvcore's count (once per batch shape in a run) is not timed
            trainer.flops(batch)
        if prepare is not None:
            prepare(trainer)
        started = time.perf_counter()
        for batch in batches if prepare is not None else batches[:1]:  # warm-up: allocations (and compilation)
            trainer.step(batch, generator)
        warmup = time.perf_counter() - started
        started = time.perf_counter()
        for batch in batches[1:]:
            trainer.step(batch, generator)
        per_step = (time.perf_counter() - started) / (len(batches) - 1)
    positions = sum(b.seq[:, 1:].numel() for b in batches[1:])
    real = sum(int((b.seq[:, 1:] != 0).sum()) for b in batches[1:])
    return {
        "seconds_per_step": per_step,
        "batches_per_epoch": n_batches,
        "epoch_minutes": per_step * n_batches / 60,
        "targets_per_batch": sum(b.n_targets for b in batches[1:]) / (len(batches) - 1),
        "padding_share": 1 - real / positions,
        "warmup_seconds": warmup,
    }


def main() -> None:
    parser = step_parser(__doc__, "epoch_speed.md")
    parser.add_argument("--json", action="store_true", help="print the speed-ups as JSON")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = prepared_beauty(Path(args.work), Path(args.shared_data))
    rows = []
    for name, (_, pad, whole_catalog) in MODES.items():
        rows.append(
            {"mode": name, **epoch_seconds(mode_config(data, name, args.negatives), pad, args.steps, whole_catalog)}
        )
        print(f"{name}: {rows[-1]['epoch_minutes']:.2f} min/epoch", file=sys.stderr, flush=True)
    minutes = [r["epoch_minutes"] for r in rows]
    result = {
        "speedup_all": minutes[0] / minutes[1],
        "speedup_prefix": minutes[2] / minutes[3],
        "speedup_whole_catalog": minutes[4] / minutes[3],
        "speedup_length_buckets": minutes[5] / minutes[3],
        "rows": rows,
    }
    command = f"python -m benchmarks.epoch_speed {' '.join(sys.argv[1:])}".strip()
    from scalerec.store.provenance import git_state

    lines = [
        "# Epoch time on 5-core Beauty, padded against length-aware batches",
        "",
        f"Written by `{command}` at commit {(git_state()[0] or 'unknown')[:12]}: recipe `srt-reference`, "
        f"{args.negatives} negatives per target, batch 128, "
        f"max_len 50; {args.steps} timed steps per mode scaled to the epoch; {os.cpu_count()} CPU cores, "
        f"{torch.get_num_threads()} torch threads.",
        "",
        "| mode | s/step | targets/batch | padding share | batches/epoch | min/epoch |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['mode']} | {r['seconds_per_step']:.3f} | {r['targets_per_batch']:.0f} | "
        f"{r['padding_share']:.0%} | {r['batches_per_epoch']} | {r['epoch_minutes']:.2f} |"
        for r in rows
    ]
    lines += [
        "",
        f"Speed-up of an epoch: all targets {result['speedup_all']:.2f}x ((a)/(b)), prefix samples "
        f"{result['speedup_prefix']:.2f}x ((c)/(d)); whole-catalog encoding "
        f"{result['speedup_whole_catalog']:.2f}x ((d')/(d)); length buckets "
        f"{result['speedup_length_buckets']:.2f}x ((d'')/(d)).",
    ]
    write_table(args.out, lines, echo=not args.json)
    if args.json:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
