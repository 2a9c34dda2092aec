"""Which details of the SRT reference recipe matter (issue 14): from SRT-1K with the reference recipe on 5-core Beauty,
switch one detail at a time to the alternative scalerec had before, and report Δ test NDCG@5 against the run-to-run
spread of the reference over seeds.

    python -m benchmarks.ablation                       # every variant (resumable: rerun to continue)
    python -m benchmarks.ablation --variants pre-LN,clip-1.0 --seeds 0,1

Runs share Table 1's run store (--work), so the reference at seed 0 is Table 1's SRT-1K run. Each run's test metrics
are read at its best validation NDCG@5 checkpoint under the `full` protocol (test never chooses). Writes
benchmarks/results/ablation.{json,md}; variants still training are listed as such.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from benchmarks.table1 import PROTOCOLS, carried_rows, minutes, prepared_beauty, recipe_config, selected, train
from scalerec.config import RunConfig
from scalerec.store import RunStore, read_checkpoints
from scalerec.store.provenance import git_state
from scalerec.store.summary import run_seconds

HERE = Path(__file__).resolve().parent

# name -> (what it switches, the fields that differ from the reference recipe at SRT-1K)
VARIANTS = {
    "pre-LN": ("pre-LN blocks with a final LayerNorm", {"model": {"block_norm": "pre", "layer_norm_eps": 1e-5}}),
    "mean-pooling": ("mean instead of sum pooling of a field's tokens", {"model": {"pooling": "mean"}}),
    "default-init": ("PyTorch's default initialisation", {"model": {"init": "default"}}),
    "cosine-to-0": ("linear warm-up and cosine to zero instead of OneCycleLR", {"train": {"schedule": "one-cycle"}}),
    "clip-1.0": ("gradient clipping at norm 1.0", {"train": {"clip_norm": 1.0}}),
    "unigram": ("a unigram SentencePiece tokenizer instead of BPE", {"model": {"tokenizer": "unigram"}}),
    "shared-tokens": ("one token table for both fields", {"model": {"token_tables": "shared"}}),
    "shared-negatives": (
        "one set of negatives per window, shared by the prefix samples it holds (0.1's sharing), "
        "instead of one per sample",
        {"train": {"negatives_per": "window"}},
    ),
    "all-targets": (
        "`all` targets (every position of max_len windows) for the same epochs, negatives shared per window",
        {"train": {"targets": "all", "negatives_per": "sequence"}},
    ),
}
REFERENCE = {"train": {"n_negatives": 1000}}  # SRT-1K
# The ablation reads test NDCG@5 under `full` only: its own runs skip the slices and the sampled protocol (four of a
# checkpoint's five evaluation passes and the sampled ranking; evaluation only, no other number changes:
# tests/test_trainer.py). The reference at seed 0 is Table 1's SRT-1K run as it is, with them.
LEAN_EVALUATION = {"eval_slices": False, "extra_eval_protocols": []}


def config(data: Path, name: str, seed: int, args: argparse.Namespace) -> RunConfig:
    """SRT-1K with variant `name`'s fields (the reference: none), built as Table 1 builds its runs."""
    fields = VARIANTS[name][1] if name != "reference" else {}
    lean = {} if (name, seed) == ("reference", 0) else LEAN_EVALUATION
    fields = {"model": fields.get("model", {}), "train": {**REFERENCE["train"], **lean, **fields.get("train", {})}}
    return recipe_config(data, seed, fields, args, f"ablation {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared-data", default=str(HERE.parent.parent / "shared" / "data" / "amazon-beauty-5core"))
    parser.add_argument("--work", default=str(HERE / "work"), help="Table 1's work folder (data and run store)")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seeds", default="0,1", help="seeds of the reference (the variants run at the first)")
    parser.add_argument("--prefix-batches", default="one-pass", choices=["one-pass", "padded"])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads-per-run", type=int)
    parser.add_argument("--report-only", action="store_true", help="write the table from the runs there are")
    parser.add_argument("--out", default=str(HERE / "results" / "ablation"))
    parser.add_argument(
        "--keep",
        default=str(HERE / "results" / "table1-runs"),
        help="Table 1's store of finished runs' records (committed), shared with table1.py",
    )
    parser.add_argument(
        "--table1",
        default=str(HERE / "results" / "table1.json"),
        help="Table 1's results: a run it carries as 'not kept' (the reference at seed 0) is read "
        "from there rather than trained again",
    )
    args = parser.parse_args()
    work = Path(args.work)
    data = prepared_beauty(work, Path(args.shared_data))
    store, kept = RunStore(work / "table1-runs"), RunStore(args.keep)
    kept.archive_finished(store)
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {', '.join(sorted(unknown))} (known: {', '.join(VARIANTS)})")
    seeds = [int(s) for s in args.seeds.split(",")]
    runs = {("reference", seed): config(data, "reference", seed, args) for seed in seeds}
    runs |= {(name, seeds[0]): config(data, name, seeds[0], args) for name in args.variants.split(",")}
    carried = {run_id: row for run_id, row in carried_rows(Path(args.table1)).items() if store.status(run_id) != "done"}
    if not args.report_only:
        train([cfg for cfg in runs.values() if cfg.run_id not in carried], store, args)
    store.archive_finished(kept, [cfg.run_id for cfg in runs.values()])
    results = []
    for (name, seed), cfg in runs.items():
        row = {"variant": name, "seed": seed, "run_id": cfg.run_id, "status": store.status(cfg.run_id)}
        if cfg.run_id in carried:
            old = carried[cfg.run_id]
            row |= {
                "status": "done",
                "store": "not kept",
                "epochs_trained": old["epochs_trained"],
                **old["protocols"][PROTOCOLS[0]],
                "wall_time_s": old["wall_time_s"],
                "cpu_time_s": old["cpu_time_s"],
                "commit": old["commit"],
            }
        elif (store.run_dir(cfg.run_id) / "checkpoints.parquet").exists():
            rows = read_checkpoints(store.run_dir(cfg.run_id))
            row |= {
                "epochs_trained": int(rows.epoch.max()),
                **selected(rows, PROTOCOLS[0]),
                **run_seconds(rows.iloc[-1]),
                "commit": (store.read_config(cfg.run_id).get("provenance") or {}).get("git_commit"),
            }
        results.append(row)
    write(results, args)


def write(results: list[dict], args: argparse.Namespace) -> None:
    done = [r for r in results if r["status"] == "done"]
    by_seed = {r["seed"]: r["test_ndcg_at_5"] for r in done if r["variant"] == "reference"}
    reference = list(by_seed.values())
    base = statistics.mean(reference) if reference else None
    spread = max(reference) - min(reference) if len(reference) > 1 else None
    command = f"python -m benchmarks.ablation {' '.join(sys.argv[1:])}".strip()
    commit = git_state()[0] or "unknown"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(
        json.dumps(
            {
                "command": command,
                "commit": commit,
                "reference_mean": base,
                "reference_spread": spread,
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )
    lines = [
        "# Ablation of the SRT reference recipe at SRT-1K on 5-core Beauty",
        "",
        f"Written by `{command}` (commit {commit[:12]}). Test NDCG@5 under `full` at each run's best validation "
        "checkpoint. Δ is against the mean of the reference over its seeds; the spread is the reference's "
        "max − min over seeds: a |Δ| below it is not an effect. The variants run at the first seed, so the "
        "same-seed Δ compares runs that share their data order and, but for the switched detail, their "
        "initialisation; with two seeds the spread itself is a rough figure.",
        "",
        f"Reference: {_fmt(base)} (mean of {len(reference)} seeds), spread {_fmt(spread)}.",
        "",
        "| variant | what it switches | seed | status | epoch | test NDCG@5 | Δ vs reference "
        "| Δ vs reference, same seed | wall (CPU) | run |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        what = "the reference recipe" if r["variant"] == "reference" else VARIANTS[r["variant"]][0]
        value = r.get("test_ndcg_at_5") if r["status"] == "done" else None
        delta = None if value is None or base is None else value - base
        same_seed = "—"  # against the reference at the variant's seed, also as a share of it (the README's %)
        if value is not None and r["seed"] in by_seed and r["variant"] != "reference":
            paired = value - by_seed[r["seed"]]
            same_seed = f"{paired:+.4f} ({paired / by_seed[r['seed']]:+.0%})"
        run = f"`{r['run_id']}`" + (" (from table1.json, not kept)" if r.get("store") else "")
        lines.append(
            f"| {r['variant']} | {what} | {r['seed']} | {r['status']} | {r.get('epoch', '—')} | "
            f"{_fmt(value)} | {_fmt(delta, '+.4f')} | {same_seed} | "
            f"{minutes(r) if 'wall_time_s' in r else '—'} | {run} |"
        )
    lines += ["", ranked(done, base, spread)]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def ranked(done: list[dict], base: float | None, spread: float | None) -> str:
    """The variants' effects, largest |Δ| first, each against the reference's seed spread."""
    effects = (
        sorted(
            ((r["test_ndcg_at_5"] - base, r["variant"]) for r in done if r["variant"] != "reference"),
            key=lambda e: -abs(e[0]),
        )
        if base is not None
        else []
    )
    if not effects:
        return "No variant has finished yet."
    words = []
    for delta, name in effects:
        verdict = (
            ", the spread not measured yet (one seed)"
            if spread is None
            else f", {abs(delta) / spread:.1f}x the spread"
            if spread > 0 and abs(delta) > spread
            else ", within the spread: no effect measured"
        )
        words.append(f"{name} {delta:+.4f} ({delta / base:+.0%}{verdict})")
    return "Effects, largest first: " + "; ".join(words) + "."


def _fmt(value, spec: str = ".4f") -> str:
    return "—" if value is None else format(value, spec)


if __name__ == "__main__":
    main()
