"""The SRT paper's Table 1 on 5-core Amazon Beauty: SRT-10/100/300/1K, SASRec-CE and SASRec, side by side with the
paper's NDCG@5.

    python benchmarks/table1.py           # all six models, 20 epochs, 2 at a time (resumable: rerun to continue)
    python benchmarks/table1.py --epochs 50 --eval-every 5 --models SRT-1K,SASRec-CE,SASRec \
        --out benchmarks/results/table1-50-epochs.md
    python benchmarks/table1.py --epochs 50 --eval-every 5 --lr 1e-4 --models SRT-1K \
        --out benchmarks/results/table1-50-epochs-lr1e-4.md     # the paper's learning rate

Protocol (the paper's): leave-one-out on each user's order, every positive ranked against 10,000 uniformly sampled
negatives, NDCG@5 and HIT@5 on test; the model is selected on validation (the checkpoint with the best valid NDCG@5
reports its test metrics), never on test. The runs go to a run store (benchmarks/work/table1-runs by default), so the
learning curves are there to read, and the table to benchmarks/results/table1.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from scalerec.config import DataConfig, ModelConfig, RunConfig, TrainConfig  # noqa: E402
from scalerec.data.datasets import resolve_data  # noqa: E402
from scalerec.store import RunStore, read_checkpoints  # noqa: E402

PAPER = {"SASRec": 0.0241, "SASRec-CE": 0.0314, "SRT-10": 0.0235, "SRT-100": 0.0318, "SRT-300": 0.0340,
         "SRT-1K": 0.0366}
MODELS = {  # name -> (item encoder, loss, negatives)
    "SRT-10": ("text", "sampled_softmax", 10), "SRT-100": ("text", "sampled_softmax", 100),
    "SRT-300": ("text", "sampled_softmax", 300), "SRT-1K": ("text", "sampled_softmax", 1000),
    "SASRec-CE": ("id", "full_ce", 0), "SASRec": ("id", "bce", 1)}


def prepared_beauty(work: Path) -> Path:
    """The shared 5-core Beauty as a prepared dataset (made once)."""
    out = work / "beauty"
    if not (out / "dataset.json").exists():
        from scalerec.data.datasets import prepare_dataset

        prepare_dataset("beauty", "beauty", out, progress=True)
    return out


def configs(data: Path, args: argparse.Namespace) -> dict[str, RunConfig]:
    out = {}
    for name in args.models.split(","):
        encoder, loss, negatives = MODELS[name]
        out[name] = resolve_data(RunConfig(
            DataConfig(name="prepared", path=str(data)),
            ModelConfig(item_encoder=encoder, n_layers=args.layers, n_heads=args.heads, hidden=args.hidden,
                        dropout=args.dropout, max_len=50),
            TrainConfig(epochs=args.epochs, batch_size=128, lr=args.lr, n_negatives=max(negatives, 1), loss=loss,
                        targets=args.targets, eval_every=args.eval_every, eval_negatives=10000, eval_ks=(5, 10),
                        test_every_checkpoint=True),
            seed=0))
    return out


def selected(rows) -> dict[str, float]:
    """Test metrics at the checkpoint with the best validation NDCG@5."""
    best = rows.loc[rows.valid_ndcg_at_5.idxmax()]
    return {"epoch": best.epoch, "valid_ndcg_at_5": best.valid_ndcg_at_5, "test_ndcg_at_5": best.test_ndcg_at_5,
            "test_hit_at_5": best.test_hit_at_5}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", default=str(HERE / "work"), help="where the prepared data and runs go")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--eval-every", type=int, default=4)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--dropout", type=float, default=0.5)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--targets", default="all", choices=["all", "last"])
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="runs trained at a time, each with cores / workers threads")
    parser.add_argument("--out", default=str(HERE / "results" / "table1.md"))
    args = parser.parse_args()
    from scalerec.grid.executors import run_local, threads_per_worker

    work = Path(args.work)
    data = prepared_beauty(work)
    store = RunStore(work / "table1-runs")
    runs = configs(data, args)
    started = time.perf_counter()
    report = run_local(list(runs.values()), store, workers=args.workers, progress=sys.stderr.isatty())
    print(f"trained {len(report.done)}, skipped {len(report.skipped)} (done before) in "
          f"{(time.perf_counter() - started) / 60:.1f} min", flush=True)
    if report.failed:
        sys.exit("failed: " + "; ".join(f"{run_id}: {error}" for run_id, error in report.failed.items()))
    threads = threads_per_worker(args.workers)
    lines = [
        "# Table 1 on 5-core Beauty: scalerec against the SRT paper",
        "",
        f"Command: `python benchmarks/table1.py {' '.join(sys.argv[1:])}`. Shape {args.layers} layers x {args.heads} "
        f"heads x hidden {args.hidden}, dropout {args.dropout}, Adam lr {args.lr} one-cycle, batch 128, "
        f"{args.epochs} epochs, targets `{args.targets}`, max length 50; 10,000 sampled evaluation negatives; the "
        "checkpoint with the best validation NDCG@5 (every "
        f"{args.eval_every} epochs) reports its test metrics. Machine: {os.cpu_count()} CPU cores, {args.workers} "
        f"run(s) at a time with {threads} thread(s) each; wall time is each run's own.",
        "",
        "| model | paper NDCG@5 | test NDCG@5 | test HIT@5 | valid NDCG@5 | selected epoch | wall time | run |",
        "|---|---|---|---|---|---|---|---|"]
    for name, cfg in runs.items():
        rows = read_checkpoints(store.run_dir(cfg.run_id))
        pick = selected(rows)
        lines.append(f"| {name} | {PAPER[name]:.4f} | {pick['test_ndcg_at_5']:.4f} | {pick['test_hit_at_5']:.4f} | "
                     f"{pick['valid_ndcg_at_5']:.4f} | {pick['epoch']:.0f} | {rows.wall_time_s.iloc[-1] / 60:.1f} min "
                     f"| `{cfg.run_id}` |")
    lines += ["", "Learning curves (valid NDCG@5 by epoch):", ""]
    for name, cfg in runs.items():
        rows = read_checkpoints(store.run_dir(cfg.run_id))
        curve = ", ".join(f"{e:.0f}: {v:.4f}" for e, v in zip(rows.epoch, rows.valid_ndcg_at_5))
        lines.append(f"- {name}: {curve}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
