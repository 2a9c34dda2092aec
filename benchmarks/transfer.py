"""Transfer, the SRT paper's Table 4 on data that runs here: pre-train on a large synthetic domain, fine-tune on a
small related one (another catalog: other items, brands and users, the same category transitions), against training
from scratch on the small one for the same number of epochs.

    python -m benchmarks.transfer            # about 10 minutes on 2 CPU cores; resumable (run store)

Every model is selected on validation (the checkpoint with the best valid NDCG@5 reports its test metrics).
Writes benchmarks/results/transfer.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from benchmarks.results_file import write_table
from scalerec.analysis.envelope import best_checkpoints
from scalerec.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from scalerec.store import RunStore, read_checkpoints

HERE = Path(__file__).resolve().parent


def selected(rows) -> dict:
    best = best_checkpoints(rows).iloc[0]
    return {
        "epoch": best.epoch,
        "valid": best.valid_ndcg_at_5,
        "ndcg": best.test_ndcg_at_5,
        "hit": best.test_hit_at_5,
        "flops": best.train_flops,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=str(HERE / "work" / "transfer"))
    parser.add_argument("--pretrain-users", type=int, default=8000)
    parser.add_argument("--target-users", type=int, default=300)
    parser.add_argument("--layer-epochs", type=int, default=10)
    parser.add_argument("--embedding-epochs", type=int, default=50)
    parser.add_argument("--finetune-lr", type=float, default=1e-4, help="the paper's 1e-4 by default")
    parser.add_argument("--scratch-lr", type=float, default=3e-3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", default=str(HERE / "results" / "transfer.md"))
    args = parser.parse_args()
    from scalerec.train.finetune import FinetuneConfig, finetune_run
    from scalerec.train.trainer import train_run

    work = Path(args.work)
    model = ModelConfig(n_layers=2, n_heads=2, hidden=64, dropout=0.1)
    source = DataConfig(n_users=args.pretrain_users, n_items=2000, seed=0)
    target = DataConfig(n_users=args.target_users, n_items=800, seed=1, transitions_seed=0)
    epochs = 2 * args.layer_epochs + args.embedding_epochs
    train = dict(batch_size=64, n_negatives=200, targets="all", eval_every=5, test_every_checkpoint=True)
    pretrain = RunConfig(source, model, TrainConfig(epochs=20, lr=3e-3, **train))
    scratch = RunConfig(target, model, TrainConfig(epochs=epochs, lr=args.scratch_lr, **train))
    timings = {}
    for name, cfg, store in (
        ("pre-train", pretrain, RunStore(work / "pretrain")),
        ("from scratch", scratch, RunStore(work / "scratch")),
    ):
        started = time.perf_counter()
        train_run(cfg, store, threads=args.threads, progress=sys.stderr.isatty())
        timings[name] = time.perf_counter() - started
    tuned = {}
    for lr in sorted({args.finetune_lr, args.scratch_lr}):
        ft = FinetuneConfig(
            parent_run_id=pretrain.run_id,
            data=target,
            layer_epochs=args.layer_epochs,
            embedding_epochs=args.embedding_epochs,
            lr=lr,
            eval_every=5,
        )
        started = time.perf_counter()
        finetune_run(
            ft,
            RunStore(work / "pretrain"),
            RunStore(work / "finetune"),
            threads=args.threads,
            progress=sys.stderr.isatty(),
        )
        timings[f"fine-tuned, lr {lr:g}"] = time.perf_counter() - started
        tuned[lr] = ft.run_id

    pre_rows = read_checkpoints(RunStore(work / "pretrain").run_dir(pretrain.run_id))
    scratch_pick = selected(read_checkpoints(RunStore(work / "scratch").run_dir(scratch.run_id)))
    lines = [
        "# Transfer (SRT paper Table 4 style) on the built-in synthetic data",
        "",
        f"Command: `python -m benchmarks.transfer {' '.join(sys.argv[1:])}`. Pre-training domain: synthetic seed 0, "
        f"2,000 items, {args.pretrain_users:,} users, D = {int(pre_rows.dataset_interactions.iloc[0]):,}; "
        "shape 2x2x64, "
        f"20 epochs at lr 3e-3 (valid NDCG@5 {pre_rows.valid_ndcg_at_5.iloc[-1]:.4f} there). Target domain: seed 1 "
        f"(another catalog of 800 items, other brands and users) with seed 0's category transitions, "
        f"{args.target_users} users. Fine-tuning: progressive unfreezing, {args.layer_epochs} epochs per layer from "
        f"the top, then {args.embedding_epochs} with everything, EWC lambda 100; from scratch: the same model and "
        f"{epochs} epochs. Test metrics at the checkpoint with the best valid NDCG@5.",
        "",
        "| target domain | test NDCG@5 | test HIT@5 | selected epoch | wall time |",
        "|---|---|---|---|---|",
        f"| trained from scratch (lr {args.scratch_lr:g}) | {scratch_pick['ndcg']:.4f} | {scratch_pick['hit']:.4f} | "
        f"{scratch_pick['epoch']:.0f} | {timings['from scratch']:.0f} s |",
    ]
    for lr, run_id in tuned.items():
        pick = selected(read_checkpoints(RunStore(work / "finetune").run_dir(run_id)))
        lines.append(
            f"| pre-trained, fine-tuned (lr {lr:g}) | {pick['ndcg']:.4f} | {pick['hit']:.4f} | "
            f"{pick['epoch']:.0f} | {timings[f'fine-tuned, lr {lr:g}']:.0f} s |"
        )
    lines += [
        "",
        f"Paper (Beauty): from scratch 0.0360, fine-tuned 0.0405 (HIT@5 0.0645). Pre-training took "
        f"{timings['pre-train']:.0f} s here (0 s when already in the run store).",
    ]
    write_table(args.out, lines)


if __name__ == "__main__":
    main()
