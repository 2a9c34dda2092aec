"""scalerec against RecBole 1.2.1's SASRec: training targets per second on the same data, shape and loss.

    python3 -m venv .recbole && .recbole/bin/pip install torch==2.13.0 recbole==1.2.1    # once: RecBole's own venv
    python -m benchmarks.recbole_compare --recbole-python .recbole/bin/python

Same data (built-in synthetic, 2,000 users x 2,000 items, leave-one-out), same model (ID-embedding SASRec, full
cross-entropy over the catalog, dropout 0.5, batch 128, max length 50), same targets (every prefix predicts its next
item: RecBole's augmentation is scalerec's `last` mode, batched as RecBole does, each prefix its own padded window,
or as one causal pass per sequence in batches of 128 targets), same threads; one warm-up epoch, then one timed epoch
each, measured side by side in this run. Also scalerec's `all` mode (every position of a window is a target; other
samples, so a rate, not the same work) and the SRT (text encoder, 1,000 sampled negatives). Writes
benchmarks/results/recbole_compare.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.results_file import write_table
from scalerec.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from scalerec.data.synthetic import generate

HERE = Path(__file__).resolve().parent

DATA = DataConfig(n_users=2000, n_items=2000, mean_length=20)
BATCHINGS = {  # scalerec's ways to batch: the first two train on RecBole's samples (every prefix), `all` on others
    "last, prefixes padded": {"targets": "last", "prefix_batches": "padded"},
    "last, prefixes in one pass": {"targets": "last", "prefix_batches": "one-pass"},
    "all, length-aware": {"targets": "all", "length_pool": 64},
}


def write_atomic_file(directory: Path) -> None:
    """The synthetic interactions as RecBole's atomic .inter file (syn/syn.inter)."""
    interactions = generate(DATA).interactions
    (directory / "syn").mkdir(parents=True)
    interactions.rename(
        columns={"user_id": "user_id:token", "item_id": "item_id:token", "timestamp": "timestamp:float"}
    ).to_csv(directory / "syn" / "syn.inter", sep="\t", index=False)


def scalerec_epoch(cfg: RunConfig, threads: int) -> dict:
    """Targets/s of one timed training epoch (after a warm-up epoch) of scalerec's trainer."""
    import torch

    from scalerec.store import RunStore
    from scalerec.train.trainer import Trainer

    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, RunStore(tmp), torch.device("cpu"), progress=False)
        from tqdm.auto import tqdm

        bar = tqdm(disable=True)
        trainer._train_epoch(bar)
        trainer.counters.epoch += 1
        seen, started = trainer.counters.seen, time.perf_counter()
        trainer._train_epoch(bar)
        seconds = time.perf_counter() - started
        targets = trainer.counters.seen - seen
    return {"targets": targets, "seconds": seconds, "targets_per_s": targets / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recbole-python", required=True, help="python of a venv with recbole==1.2.1")
    parser.add_argument("--shape", default="2x2x64")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", default=str(HERE / "results" / "recbole_compare.md"))
    args = parser.parse_args()
    layers, heads, hidden = map(int, args.shape.split("x"))
    model = ModelConfig(item_encoder="id", n_layers=layers, n_heads=heads, hidden=hidden, dropout=0.5)
    train = TrainConfig(batch_size=128, loss="full_ce", targets="last")
    sasrec = RunConfig(DATA, model, train)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        write_atomic_file(Path(tmp))
        done = subprocess.run(
            [
                args.recbole_python,
                str(HERE / "recbole_sasrec.py"),
                tmp,
                str(args.threads),
                str(layers),
                str(heads),
                str(hidden),
            ],
            capture_output=True,
            text=True,
            cwd=tmp,
        )  # RecBole writes log/ and log_tensorboard/ into its working directory
        if done.returncode:
            sys.exit(f"RecBole failed:\n{done.stderr[-3000:]}")
        results["RecBole 1.2.1 SASRec (CE), last"] = json.loads(done.stdout.strip().splitlines()[-1])
    srt = dataclasses.replace(
        sasrec,
        model=dataclasses.replace(model, item_encoder="text"),
        train=dataclasses.replace(train, loss="sampled_softmax", n_negatives=1000),
    )
    for name, cfg in (("SASRec-CE", sasrec), ("SRT-1K", srt)):
        for batching, fields in BATCHINGS.items():
            results[f"scalerec {name}, {batching}"] = scalerec_epoch(
                dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **fields)), args.threads
            )
    base = results["RecBole 1.2.1 SASRec (CE), last"]["targets_per_s"]
    lines = [
        "# scalerec against RecBole's SASRec",
        "",
        f"Command: `python -m benchmarks.recbole_compare {' '.join(sys.argv[1:])}`; {os.cpu_count()} CPU cores, "
        f"{args.threads} threads; shape {args.shape}, batch 128, dropout 0.5, max length 50; synthetic data, "
        f"{DATA.n_users:,} users x {DATA.n_items:,} items. One timed epoch after a warm-up epoch, side by side.",
        "",
        "| trainer | targets per epoch | seconds | targets/s | vs RecBole |",
        "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['targets']:,} | {r['seconds']:.1f} | {r['targets_per_s']:,.0f} | "
            f"{r['targets_per_s'] / base:.1f}x |"
        )
    write_table(args.out, lines)


if __name__ == "__main__":
    main()
