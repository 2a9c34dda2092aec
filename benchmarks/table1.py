"""The SRT paper's Table 1 on 5-core Amazon Beauty with the reference code's recipe: SRT-10/100/300/1K, SASRec-CE
and SASRec, each under the `full` protocol (the reference's from-scratch evaluation) and `sampled-10000`.

    python -m benchmarks.table1                      # all six models (resumable: rerun to continue)
    python -m benchmarks.table1 --models SRT-1K --seeds 0,1
    python -m benchmarks.table1 --report-only        # the table from the runs so far (unfinished ones marked)

Every run uses `recipe = "srt-reference"` (scalerec/recipes/srt-reference.toml): post-LN, N(0, 0.02) init, a token
table per field with sum pooling, BPE, every prefix a sample with its own popularity+1 negatives, Adam with L2 on all
parameters, PyTorch's OneCycleLR, no clipping, evaluation every epoch and early stopping after 5 without improvement.
`--prefix-batches one-pass` (the default here, for time) computes the same prefix samples in one causal pass per
sequence, in batches of 128 targets (the reference's number of updates); `padded` is the reference's own batching.
Each protocol selects its own checkpoint: the best validation NDCG@5 under that protocol reports its test metrics;
test never chooses. Runs go to a run store (--work), the table to benchmarks/results/table1.{json,md}.

Finished runs' records (config and checkpoint rows, no weights) are archived into --keep, a store committed beside
the table (benchmarks/results/table1-runs/), and copied back into --work before training, so a fresh clone skips
them and rebuilds the table from them. A finished row whose run is in neither store (trained before runs were kept)
is carried from the previous OUT.json and marked so.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from scalerec.analysis.envelope import best_checkpoints
from scalerec.config import RunConfig, protocol_suffix
from scalerec.data.datasets import resolve_data
from scalerec.store import RunStore, read_checkpoints
from scalerec.store.provenance import git_state
from scalerec.store.runstore import CHECKPOINTS
from scalerec.store.summary import run_seconds

HERE = Path(__file__).resolve().parent

PAPER = {
    "SASRec": 0.0241,
    "SASRec-CE": 0.0314,
    "SRT-10": 0.0235,
    "SRT-100": 0.0318,
    "SRT-300": 0.0340,
    "SRT-1K": 0.0366,
}
MODELS = {  # name -> the fields that differ from the recipe
    "SRT-10": {"train": {"n_negatives": 10}},
    "SRT-100": {"train": {"n_negatives": 100}},
    "SRT-300": {"train": {"n_negatives": 300}},
    "SRT-1K": {"train": {"n_negatives": 1000}},
    "SASRec-CE": {"model": {"item_encoder": "id"}, "train": {"loss": "full_ce"}},
    "SASRec": {"model": {"item_encoder": "id"}, "train": {"loss": "bce", "n_negatives": 1}},
}
PROTOCOLS = ("full", "sampled-10000")


def prepared_beauty(work: Path, shared: Path) -> Path:
    """The shared 5-core Beauty as a prepared dataset (made once)."""
    out = work / "beauty"
    if not (out / "dataset.json").exists():
        from scalerec.data.datasets import prepare_dataset

        prepare_dataset(str(shared), "beauty", out, progress=True)
    return out


def recipe_config(data: Path, seed: int, fields: dict, args: argparse.Namespace, label: str) -> RunConfig:
    """A run of the reference recipe on `data` with `fields` ({"model": {...}, "train": {...}}) changed, evaluated
    under PROTOCOLS unless `fields` says otherwise; prefix samples batched as --prefix-batches (Table 1's and the
    ablation's runs)."""
    train = {
        "length_pool": getattr(args, "length_pool", 0),
        "eval_protocol": PROTOCOLS[0],
        "extra_eval_protocols": list(PROTOCOLS[1:]),
        **fields.get("train", {}),
    }
    if train.get("targets", "last") == "last":
        train["prefix_batches"] = args.prefix_batches
    if getattr(args, "epochs", 0):
        train["epochs"] = args.epochs
    mapping = {
        "recipe": "srt-reference",
        "seed": seed,
        "data": {"name": "prepared", "path": str(data)},
        "model": dict(fields.get("model", {})),
        "train": train,
    }
    return resolve_data(RunConfig.from_dict(mapping, label))


def configs(data: Path, args: argparse.Namespace) -> dict[tuple[str, int], RunConfig]:
    return {
        (name, seed): recipe_config(data, seed, MODELS[name], args, f"table1 {name}")
        for name in args.models.split(",")
        for seed in map(int, args.seeds.split(","))
    }


def train(runs: list[RunConfig], store: RunStore, args: argparse.Namespace) -> int:
    """Train the runs not yet done (resumable), one line of what happened; stop on a failed run. Returns the torch
    threads each run used."""
    from scalerec.grid.executors import run_local

    started = time.perf_counter()
    threads = run_threads(args)
    report = run_local(runs, store, workers=args.workers, threads_per_run=threads, progress=sys.stderr.isatty())
    print(
        f"trained {len(report.done)}, skipped {len(report.skipped)} (done before) in "
        f"{(time.perf_counter() - started) / 60:.1f} min",
        flush=True,
    )
    if report.failed:
        sys.exit("failed: " + "; ".join(f"{run_id}: {error}" for run_id, error in report.failed.items()))
    return threads


def run_threads(args: argparse.Namespace) -> int:
    """Torch threads per run: --threads-per-run, else the cores shared among --workers."""
    from scalerec.machine import threads_per_worker

    return args.threads_per_run or threads_per_worker(args.workers)


def carried_rows(previous: Path) -> dict[str, dict]:
    """The finished results of an earlier OUT.json by run id: rows whose runs were not kept."""
    if not previous.exists():
        return {}
    return {
        r["run_id"]: {**r, "store": "not kept"}
        for r in json.loads(previous.read_text())["results"]
        if r["status"] == "done"
    }


def selected(rows, protocol: str) -> dict:
    """The checkpoint with the best validation NDCG@5 under `protocol`, and its test metrics."""
    suffix = "" if protocol == PROTOCOLS[0] else protocol_suffix(protocol)
    best = best_checkpoints(rows, f"valid_ndcg_at_5{suffix}").iloc[0]
    return {
        "epoch": int(best.epoch),
        **{
            f"{which}_{m}_at_5": float(best[f"{which}_{m}_at_5{suffix}"])
            for which in ("valid", "test")
            for m in ("ndcg", "hit")
        },
    }


def minutes(result: dict) -> str:
    """'wall min (CPU min)' of a result row holding `run_seconds`' keys."""
    cpu = result.get("cpu_time_s")
    return f"{result['wall_time_s'] / 60:.1f} min" + ("" if cpu is None else f" ({cpu / 60:.1f})")


def ordering(results: list[dict], protocol: str, order=("SRT-1K", "SASRec-CE", "SASRec")) -> str:
    """Whether the paper's central ordering holds under `protocol` (seed-mean test NDCG@5 of the finished runs)."""
    scores = {}
    for name in order:
        done = [
            r["protocols"][protocol]["test_ndcg_at_5"] for r in results if r["model"] == name and r["status"] == "done"
        ]
        if done:
            scores[name] = sum(done) / len(done)
    said = " > ".join(order)
    if len(scores) < len(order):
        missing = ", ".join(n for n in order if n not in scores)
        return f"The paper's ordering {said} under `{protocol}`: not decided yet ({missing} not finished)."
    holds = all(scores[a] > scores[b] for a, b in zip(order, order[1:]))
    values = ", ".join(f"{n} {scores[n]:.4f}" for n in order)
    return f"The paper's ordering {said} under `{protocol}`: {'holds' if holds else 'does not hold'} ({values})."


def against_paper(results: list[dict]) -> str:
    """Our test NDCG@5 over the paper's, per protocol, over the finished SRT rows (the paper's SASRec rows come from
    another paper's evaluation): which protocol the paper's numbers fit."""
    done = [r for r in results if r["status"] == "done" and r["model"].startswith("SRT")]
    if not done:
        return "Against the paper: no SRT row has finished."
    parts = []
    for protocol in PROTOCOLS:
        ratios = [r["protocols"][protocol]["test_ndcg_at_5"] / r["paper_ndcg_at_5"] for r in done]
        parts.append(f"`{protocol}` {sum(ratios) / len(ratios):.2f} (from {min(ratios):.2f} to {max(ratios):.2f})")
    return (
        f"Test NDCG@5 over the paper's, mean over the {len(done)} finished SRT rows "
        f"({', '.join(r['model'] for r in done)}): " + "; ".join(parts) + "."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--shared-data",
        default=str(HERE.parent.parent / "shared" / "data" / "amazon-beauty-5core"),
        help="the 5-core Beauty folder",
    )
    parser.add_argument("--work", default=str(HERE / "work"), help="where the prepared data and runs go")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--epochs", type=int, default=0, help="0: the recipe's 50 (early stopping may end sooner)")
    parser.add_argument("--prefix-batches", default="one-pass", choices=["one-pass", "padded"])
    parser.add_argument("--length-pool", type=int, default=0, help="bucket windows by length in pools of K batches")
    parser.add_argument(
        "--workers", type=int, default=1, help="runs trained at a time, each with cores / workers threads"
    )
    parser.add_argument("--threads-per-run", type=int, help="torch threads per run (default: cores / workers)")
    parser.add_argument("--out", default=str(HERE / "results" / "table1"), help="writes OUT.json and OUT.md")
    parser.add_argument(
        "--keep",
        default=str(HERE / "results" / "table1-runs"),
        help="the store of finished runs' records (committed): copied into --work before training, "
        "finished runs archived into it after",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: the table from the runs so far, unfinished and missing ones marked",
    )
    args = parser.parse_args()
    work = Path(args.work)
    data = prepared_beauty(work, Path(args.shared_data))
    store, kept = RunStore(work / "table1-runs"), RunStore(args.keep)
    runs = configs(data, args)
    kept.archive_finished(store)  # finished in another clone or session: skipped, and reported from their record
    threads = run_threads(args) if args.report_only else train(list(runs.values()), store, args)
    store.archive_finished(kept, [cfg.run_id for cfg in runs.values()])
    carried = carried_rows(Path(args.out).with_suffix(".json"))
    commit = git_state()[0] or "unknown"
    results = []
    for (name, seed), cfg in runs.items():
        status = store.status(cfg.run_id)
        if status != "done" and cfg.run_id in carried:
            results.append(carried[cfg.run_id])
            continue
        if not (store.run_dir(cfg.run_id) / CHECKPOINTS).exists():  # not started, or no epoch finished yet
            results.append(
                {"model": name, "seed": seed, "run_id": cfg.run_id, "paper_ndcg_at_5": PAPER[name], "status": "not run"}
            )
            continue
        rows, config = read_checkpoints(store.run_dir(cfg.run_id)), store.read_config(cfg.run_id)
        results.append(
            {
                "model": name,
                "seed": seed,
                "run_id": cfg.run_id,
                "paper_ndcg_at_5": PAPER[name],
                "status": status,
                "epochs_trained": int(rows.epoch.max()),
                **run_seconds(rows.iloc[-1]),
                "commit": (config.get("provenance") or {}).get("git_commit"),
                "table_commit": commit,
                "protocols": {p: selected(rows, p) for p in PROTOCOLS},
                "valid_curve_full": [round(float(v), 5) for v in rows.valid_ndcg_at_5],
            }
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    command = f"python -m benchmarks.table1 {' '.join(sys.argv[1:])}".strip()
    out.with_suffix(".json").write_text(
        json.dumps(
            {
                "command": command,
                "machine": f"{os.cpu_count()} CPU cores",
                "threads_per_run": threads,
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    lines = [
        "# Table 1 on 5-core Beauty: scalerec with the SRT reference recipe against the paper",
        "",
        f"Written by `{command}` (commit {commit[:12]}). Recipe `srt-reference` with prefix batches "
        f"`{args.prefix_batches}`; test metrics at the checkpoint with the best validation NDCG@5 under the same "
        "protocol (test never selects). `full`: the whole catalog, history included (the reference's from-scratch "
        "evaluation); `sampled-10000`: 10,000 uniform negatives (the paper's stated protocol). Ties count against "
        f"the positive. Machine: {os.cpu_count()} CPU cores, {threads} thread(s) per run. Wall time includes time "
        "a run waited for a busy core or was paused; the CPU time (where recorded) does not. A run marked "
        "'not kept' was trained before finished runs' records were kept (its rows are carried from the previous "
        "table1.json); the others' records are in the --keep store.",
        "",
        "| model | seed | paper NDCG@5 | full: test NDCG@5 | full: test HIT@5 | full: epoch | sampled-10000: test "
        "NDCG@5 | sampled-10000: test HIT@5 | sampled-10000: epoch | epochs run | wall (CPU) | run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r["status"] == "not run":
            lines.append(
                f"| {r['model']} | {r['seed']} | {r['paper_ndcg_at_5']:.4f} | not run yet |"
                + " |" * 7
                + f" `{r['run_id']}` |"
            )
            continue
        full, sampled = r["protocols"]["full"], r["protocols"]["sampled-10000"]
        lines.append(
            f"| {r['model']} | {r['seed']} | {r['paper_ndcg_at_5']:.4f} | {full['test_ndcg_at_5']:.4f} | "
            f"{full['test_hit_at_5']:.4f} | {full['epoch']} | {sampled['test_ndcg_at_5']:.4f} | "
            f"{sampled['test_hit_at_5']:.4f} | {sampled['epoch']} | {r['epochs_trained']}"
            f"{'' if r['status'] == 'done' else ' (' + r['status'] + ', still training)'} | "
            f"{minutes(r)} | `{r['run_id']}`{' (not kept)' if r.get('store') else ''} |"
        )
    for protocol in PROTOCOLS:
        lines += ["", ordering(results, protocol)]
    lines += ["", against_paper(results)]
    lines += ["", "Validation NDCG@5 (full) by epoch:", ""]
    lines += [
        f"- {r['model']} (seed {r['seed']}): {', '.join(f'{v:.4f}' for v in r['valid_curve_full'])}"
        for r in results
        if "valid_curve_full" in r
    ]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
