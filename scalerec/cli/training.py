"""Training commands: grid, train, finetune."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .. import jsonio
from ..errors import ScalerecError
from ..numbers import format_number
from .common import (
    check_device,
    device_option,
    emit,
    grid_configs,
    grid_data_option,
    show_progress,
    stale_options,
    stale_policy,
)
from .group import main


@main.command()
@click.argument("spec", required=False, type=click.Path(dir_okay=False))
@click.option("--preset", help="A built-in grid instead of SPEC (see --list-presets).")
@click.option(
    "--runs",
    "runs_dir",
    default="runs",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Run store directory.",
)
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    help="Runs trained at once; each gets cores/workers threads. On CPU, one run per core trains the most "
    "targets/s when memory allows (benchmarks/threads.py).",
)
@device_option
@click.option(
    "--executor",
    default="local",
    show_default=True,
    type=click.Choice(["local", "dask"]),
    help="local: worker processes on this machine; dask: one Dask task per run.",
)
@click.option(
    "--scheduler",
    help="With --executor dask: a running scheduler (tcp://host:8786); without it a "
    "LocalCluster of --workers processes is started for the call.",
)
@click.option(
    "--threads-per-run",
    type=click.IntRange(1),
    help="Torch threads per run (default: the cores this "
    "process may use / --workers; with dask, the worker host's cores / its task slots). Set it when "
    "other work shares the machine: more threads than free cores slows every run several times.",
)
@grid_data_option
@click.option(
    "--dry-run", is_flag=True, help="List the runs, their status and estimated FLOPs and hours; train nothing."
)
@click.option(
    "--cost/--no-cost",
    default=True,
    show_default=True,
    help="With --dry-run: probe this machine to "
    "estimate each run's FLOPs and hours (a few training steps per distinct setup).",
)
@click.option(
    "--budget-hours",
    type=click.FloatRange(min=0, min_open=True),
    help="Train only the runs that cover the "
    "compute range best within H run-hours (summed over runs, estimated by the probe; wall time is about "
    "that / --workers).",
)
@click.option(
    "--plan",
    "plan_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Train only the runs of a plan written by `scalerec plan --out FILE` for this grid.",
)
@click.option("--list-presets", is_flag=True, help="Print the built-in presets and exit.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
@stale_options
def grid(
    spec,
    preset,
    runs_dir,
    workers,
    device,
    executor,
    scheduler,
    threads_per_run,
    data_dir,
    dry_run,
    cost,
    budget_hours,
    plan_file,
    list_presets,
    as_json,
    accept_stale,
    retrain_stale,
):
    """Train every run of a grid SPEC.toml (or --preset) that is not finished yet.

    Finished runs (DONE) are skipped, interrupted ones resume from their last checkpoint, so rerunning the same
    command after a crash or a kill continues the grid without losing or duplicating a row.

    \b
    On a Dask cluster (pip install 'scalerec[dask]'): --executor dask [--scheduler tcp://host:8786]. Runs are the
    same (same run ids, same rows); a run whose worker dies is rescheduled and resumes from its last checkpoint.
    The run store must be on a filesystem every worker sees. Start workers with one task slot per run, e.g.
    `dask worker tcp://host:8786 --nthreads 1 --nworkers 4`, or `--resources GPU=1` per GPU; dask-jobqueue
    (SLURMCluster, PBSCluster) and dask-kubernetes clusters work through their scheduler address.
    """
    from ..grid.spec import preset_names
    from ..store.runstore import RunStore

    if list_presets:
        click.echo("\n".join(preset_names()))
        return
    if scheduler and executor != "dask":
        raise click.UsageError("--scheduler goes with --executor dask")
    stale = stale_policy(accept_stale, retrain_stale)
    check_device(device, here=executor == "local" or scheduler is None)  # a remote cluster has its own devices
    configs, where = grid_configs(spec, preset, data_dir)
    if plan_file:
        configs, where = _planned(configs, plan_file), f"{where}, the runs of plan {plan_file}"
    store = RunStore(runs_dir)
    costs = None
    if budget_hours or (dry_run and cost):
        from ..grid.cost import estimate_costs, select_within_budget

        costs = {c.run_id: c for c in estimate_costs(configs, workers=workers, progress=show_progress(as_json))}
        if budget_hours:
            chosen = set(select_within_budget(list(costs.values()), budget_hours))
            if not chosen:
                cheapest = min(c.hours for c in costs.values())
                raise ScalerecError(f"no run fits in {budget_hours:g} h (the cheapest needs {cheapest:.3g} h)")
            configs = [c for c in configs if c.run_id in chosen]
            where += f", the {len(configs)} runs covering the compute range best within {budget_hours:g} h"
    if dry_run:
        _grid_plan(configs, store, costs, workers, where, as_json)
        return
    from ..grid.executors import run_dask, run_local

    if executor == "dask":
        report = run_dask(
            configs,
            store,
            scheduler=scheduler,
            workers=workers,
            device=device,
            threads_per_run=threads_per_run,
            progress=show_progress(as_json),
            stale=stale,
        )
    else:
        report = run_local(
            configs,
            store,
            workers=workers,
            device=device,
            threads_per_run=threads_per_run,
            progress=show_progress(as_json),
            stale=stale,
        )
    summary = {
        "runs": len(configs),
        "done": len(report.done),
        "skipped": len(report.skipped),
        "failed": report.failed,
        "run_store": str(store.root),
    }
    if as_json:
        click.echo(jsonio.dumps(summary, indent=2))
    else:
        click.echo(
            f"{len(report.done)} runs trained, {len(report.skipped)} already done, "
            f"{len(report.failed)} failed; run store: {store.root}"
        )
        for run_id, message in report.failed.items():
            click.echo(f"  {run_id}: {message}", err=True)
    if report.failed:
        raise ScalerecError(
            f"{len(report.failed)} of {len(configs)} runs failed (listed above); fix and rerun to resume"
        )


def _planned(configs: list, plan_file: str) -> list:
    """The grid's runs a plan (scalerec plan --out) names, in the plan's order."""
    try:
        run_ids = json.loads(Path(plan_file).read_text())["run_ids"]
        if not isinstance(run_ids, list) or not all(isinstance(r, str) for r in run_ids):
            raise TypeError
    except (ValueError, KeyError, TypeError, OSError):
        raise ScalerecError(f"{plan_file}: not a plan written by `scalerec plan --out`") from None
    by_id = {c.run_id: c for c in configs}
    missing = [r for r in run_ids if r not in by_id]
    if missing:
        raise ScalerecError(
            f"{plan_file} names {len(missing)} run(s) this grid does not have ({', '.join(missing[:3])}): "
            "plan and train with the same grid"
        )
    return [by_id[r] for r in run_ids]


def _grid_plan(configs, store, costs, workers: int, where: str, as_json: bool) -> None:
    """The dry-run table: every run, its status and (with the probe) FLOPs and estimated hours, with totals."""
    rows = []
    for c in configs:
        row = {
            "run_id": c.run_id,
            "status": store.status(c.run_id),
            "shape": f"{c.model.n_layers}x{c.model.n_heads}x{c.model.hidden}",
            "encoder": c.model.item_encoder,
            "data": c.data.n_users if c.data.name == "synthetic" else c.data.path,
            "epochs": c.train.epochs,
        }
        if costs:
            cost = costs[c.run_id]
            row |= {
                "N": cost.non_embedding_params,
                "D": cost.dataset_interactions,
                "train_flops": cost.train_flops,
                "hours": cost.hours,
                "probe_cpu_share": cost.probe_cpu_share,
            }
        rows.append(row)
    if as_json:
        click.echo(jsonio.dumps(rows, indent=2))
        return
    for row in rows:
        row.pop("probe_cpu_share", None)  # the warning below says it when it matters
        if "hours" in row:
            row.update(
                N=format_number(row["N"]),
                D=format_number(row["D"]),
                train_flops=f"{row['train_flops']:.3g}",
                hours=f"{row['hours']:.3g}",
            )
    emit(rows, False, f"{len(configs)} runs in {where}")
    if costs:
        todo = [costs[c.run_id] for c in configs if store.status(c.run_id) != "done"]
        hours = sum(c.hours for c in todo)
        click.echo(
            f"to train: {len(todo)} runs, {sum(c.train_flops for c in todo):.3g} FLOPs, {hours:.3g} run-hours "
            f"= about {hours / workers:.3g} h with --workers {workers} on this machine (estimated from a "
            "throughput probe; evaluation included)"
        )
        from ..grid.cost import BUSY

        share = min(c.probe_cpu_share for c in costs.values())
        if share < BUSY:
            click.echo(
                f"warning: the probe's main thread got {share:.0%} of a core: other work shares this machine, "
                "so these hours are too high; probe again when it is idle",
                err=True,
            )


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option(
    "--runs",
    "runs_dir",
    default="runs",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Run store directory; the run goes to RUNS/<run id>/.",
)
@device_option
@stale_options
def train(config, runs_dir, device, accept_stale, retrain_stale):
    """Train one run described by CONFIG.toml ([data], [model], [train], seed); resumes if interrupted."""
    from ..config import load_run_config
    from ..data.datasets import resolve_data
    from ..grid.executors import apply_stale_policy
    from ..store.runstore import RunStore
    from ..train.trainer import train_run

    stale = stale_policy(accept_stale, retrain_stale)
    check_device(device)
    cfg = resolve_data(load_run_config(config))
    store = RunStore(runs_dir)
    apply_stale_policy([cfg], store, stale)
    status = train_run(cfg, store, device=device, accept_stale=stale == "accept", progress=show_progress())
    click.echo(f"run {cfg.run_id}: {'already done' if status == 'skipped' else status} ({Path(runs_dir) / cfg.run_id})")


@main.command()
@click.option("--from", "parent", required=True, help="The pre-trained run: its id in --parent-runs, or its directory.")
@click.option(
    "--data",
    "data_spec",
    required=True,
    type=click.Path(exists=True),
    help="The new domain: a prepared dataset directory, or a TOML file with a [data] table.",
)
@click.option(
    "--parent-runs",
    default="runs",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Run store of the pre-trained run (when --from is an id).",
)
@click.option(
    "--runs",
    "runs_dir",
    default="runs",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Run store the fine-tuning run goes to.",
)
@click.option(
    "--layer-epochs",
    default=10,
    show_default=True,
    type=click.IntRange(0),
    help="Epochs per transformer layer, unfrozen one at a time from the top.",
)
@click.option(
    "--embedding-epochs",
    default=50,
    show_default=True,
    type=click.IntRange(0),
    help="Then epochs with everything trainable, token embeddings included.",
)
@click.option(
    "--lr",
    default=1e-4,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True, max=1),
    help="Adam's peak learning rate in every stage (one-cycle schedule).",
)
@click.option(
    "--negatives",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Training negatives (0: the pre-trained run's; must be below the new catalog's size).",
)
@click.option(
    "--ewc-lambda",
    default=100.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Elastic Weight Consolidation strength (0: off).",
)
@click.option(
    "--fisher-batches",
    default=20,
    show_default=True,
    type=click.IntRange(1),
    help="Pre-training batches for the diagonal Fisher.",
)
@click.option(
    "--eval-every",
    default=5,
    show_default=True,
    type=click.IntRange(1),
    help="Evaluate and write a checkpoint row every K epochs (and after the last one).",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the batches and negatives.")
@device_option
@click.option(
    "--accept-stale",
    is_flag=True,
    help="Resume or skip a fine-tuning run that code of other training "
    "semantics started (without it, such a run stops the command).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
def finetune(
    parent,
    data_spec,
    parent_runs,
    runs_dir,
    layer_epochs,
    embedding_epochs,
    lr,
    negatives,
    ewc_lambda,
    fisher_batches,
    eval_every,
    seed,
    device,
    accept_stale,
    as_json,
):
    """Fine-tune a pre-trained text-encoder run on a new domain (SRT paper Table 4).

    \b
    Progressive unfreezing: the top transformer layer for --layer-epochs, then the next one down as well, to the
    bottom; then everything, token embeddings included, for --embedding-epochs; Adam with a one-cycle schedule per
    stage; EWC against the pre-trained weights with a diagonal Fisher from the pre-training data. The new catalog is
    tokenized with the pre-trained run's SentencePiece model, so no parameter is added. Checkpoints go to the run
    store with parent_run_id, stage and parent_train_flops (train_flops counts the fine-tuning only).
      scalerec finetune --from 3318d1594609 --data data/beauty --runs runs-transfer
    """
    from ..config import DataConfig, data_config_from_dict, load_toml
    from ..data.datasets import resolve_data_config
    from ..store.runstore import RunStore
    from ..train.finetune import FinetuneConfig, finetune_run

    check_device(device)
    parent_path = Path(parent)
    if parent_path.is_dir():
        parent_runs, parent = str(parent_path.parent), parent_path.name
    if Path(data_spec).is_dir():
        data_cfg = DataConfig(name="prepared", path=str(data_spec))
    else:
        spec = load_toml(data_spec)
        if set(spec) - {"data"} or "data" not in spec:
            raise ScalerecError(f"{data_spec}: expected a [data] table only (or give a prepared dataset directory)")
        data_cfg = data_config_from_dict(spec["data"], f"{data_spec}: [data]")
    data_cfg = resolve_data_config(data_cfg)
    ft = FinetuneConfig(
        parent_run_id=parent,
        data=data_cfg,
        layer_epochs=layer_epochs,
        embedding_epochs=embedding_epochs,
        lr=lr,
        n_negatives=negatives,
        ewc_lambda=ewc_lambda,
        fisher_batches=fisher_batches,
        eval_every=eval_every,
        seed=seed,
    )
    status = finetune_run(
        ft,
        RunStore(parent_runs),
        RunStore(runs_dir),
        device=device,
        progress=show_progress(as_json),
        accept_stale=accept_stale,
    )
    rows = RunStore(runs_dir).read_rows(ft.run_id)
    from ..analysis.envelope import best_checkpoints

    best = best_checkpoints(rows).iloc[0] if len(rows) else None
    result = {
        "run_id": ft.run_id,
        "status": status,
        "parent_run_id": parent,
        "run_store": runs_dir,
        "checkpoints": len(rows),
    }
    if best is not None:
        final = rows.iloc[-1]
        result |= {
            "best_valid_ndcg_at_5": float(best.valid_ndcg_at_5),
            "best_epoch": float(best.epoch),
            "final_test_ndcg_at_5": float(final.test_ndcg_at_5),
            "final_test_hit_at_5": float(final.test_hit_at_5),
        }
    if as_json:
        click.echo(jsonio.dumps(result, indent=2))
    else:
        click.echo(
            f"run {ft.run_id}: {'already done' if status == 'skipped' else status} "
            f"({Path(runs_dir) / ft.run_id}), fine-tuned from {parent}"
        )
        if best is not None:
            click.echo(
                f"  best valid NDCG@5 {result['best_valid_ndcg_at_5']:.4f} at epoch {result['best_epoch']:.0f}; "
                f"final test NDCG@5 {result['final_test_ndcg_at_5']:.4f}, HIT@5 "
                f"{result['final_test_hit_at_5']:.4f}"
            )
