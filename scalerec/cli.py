"""The `scalerec` command: one thin Click command per verb over importable functions (DESIGN §7)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import __version__, jsonio
from .errors import ScalerecError
from .numbers import format_number, parse_number


class NumberType(click.ParamType):
    """Accepts 1e6, 2.5M, 80K; positive and finite."""

    name = "number"

    def convert(self, value, param, ctx):
        try:
            return parse_number(value, name=f"--{param.name}" if param else "value")
        except ScalerecError as exc:
            self.fail(str(exc).split(": ", 1)[-1], param, ctx)


NUMBER = NumberType()


class NumberListType(click.ParamType):
    """One number or several, comma-separated: 1e5 or 10K,100K,1M."""

    name = "numbers"

    def convert(self, value, param, ctx):
        if isinstance(value, list):
            return value
        name = f"--{param.name}" if param else "value"
        try:
            return [parse_number(v, name=name) for v in str(value).split(",")]
        except ScalerecError as exc:
            self.fail(str(exc).split(": ", 1)[-1], param, ctx)


NUMBERS = NumberListType()


def device_option(command):
    """--device, checked before anything is written (see scalerec.train.trainer.resolve_device)."""
    return click.option("--device", default="auto", show_default=True, metavar="DEVICE",
                        help="auto (CUDA when present), cpu, cuda, cuda:N or mps; a device this machine does not "
                        "have stops the command before anything is written.")(command)


def check_device(device: str, here: bool = True) -> None:
    from .train.trainer import resolve_device

    resolve_device(device, here=here)


def stale_options(command):
    """--accept-stale / --retrain-stale: what to do with runs made by code of other training semantics."""
    command = click.option("--retrain-stale", is_flag=True, help="Train such runs anew; their old folders are moved "
                           "to RUNS/.stale/ (nothing is deleted).")(command)
    return click.option("--accept-stale", is_flag=True, help="Keep runs that code of other training semantics made "
                        "(skip the finished ones, resume the others with this code); without it such runs stop the "
                        "command. `scalerec runs` shows each run's semantics.")(command)


def stale_policy(accept_stale: bool, retrain_stale: bool) -> str:
    if accept_stale and retrain_stale:
        raise click.UsageError("--accept-stale and --retrain-stale exclude each other")
    return "accept" if accept_stale else "retrain" if retrain_stale else "refuse"


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="scalerec")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.option("--progress/--quiet", default=None, help="Force progress bars on (--progress) or off (--quiet); by "
              "default they are drawn only when stderr is a terminal (never into a redirected log), and never with "
              "--json.")
@click.pass_context
def main(ctx: click.Context, debug: bool, progress: bool | None) -> None:
    """Measure, fit and use scaling laws for transformer sequential recommenders.

    \b
    Typical session:
      scalerec grid --preset demo            train a grid of runs into runs/
      scalerec runs                          what is in the run store
      scalerec fit-laws runs                 fit the laws -> analysis/laws.json, report.md, figures/
      scalerec predict --flops 1e14          what to train for a budget
    """
    ctx.obj = {"debug": debug, "progress": sys.stderr.isatty() if progress is None else progress}


def show_progress(as_json: bool = False) -> bool:
    """Whether the running command draws progress bars (see --progress/--quiet); never with --json."""
    return click.get_current_context().find_root().obj["progress"] and not as_json


@main.command()
@click.argument("spec", required=False, type=click.Path(dir_okay=False))
@click.option("--preset", help="A built-in grid instead of SPEC (see --list-presets).")
@click.option("--runs", "runs_dir", default="runs", show_default=True, type=click.Path(file_okay=False),
              help="Run store directory.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 256),
              help="Runs trained at once; each gets cores/workers threads.")
@device_option
@click.option("--executor", default="local", show_default=True, type=click.Choice(["local", "dask"]),
              help="local: worker processes on this machine; dask: one Dask task per run.")
@click.option("--scheduler", help="With --executor dask: a running scheduler (tcp://host:8786); without it a "
              "LocalCluster of --workers processes is started for the call.")
@click.option("--threads-per-run", type=click.IntRange(1), help="With --executor dask: torch threads per run "
              "(default: the worker host's cores / its Dask task slots).")
@click.option("--data", "data_dir", type=click.Path(exists=True, file_okay=False), help="Train on prepared data "
              "instead: one dataset, or a ladder of them (scalerec data subsample), replacing the spec's data.")
@click.option("--dry-run", is_flag=True,
              help="List the runs, their status and estimated FLOPs and hours; train nothing.")
@click.option("--cost/--no-cost", default=True, show_default=True, help="With --dry-run: probe this machine to "
              "estimate each run's FLOPs and hours (a few training steps per distinct setup).")
@click.option("--budget-hours", type=click.FloatRange(min=0, min_open=True), help="Train only the runs that cover the "
              "compute range best within H run-hours (summed over runs, estimated by the probe; wall time is about "
              "that / --workers).")
@click.option("--list-presets", is_flag=True, help="Print the built-in presets and exit.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
@stale_options
def grid(spec, preset, runs_dir, workers, device, executor, scheduler, threads_per_run, data_dir, dry_run, cost,
         budget_hours, list_presets, as_json, accept_stale, retrain_stale):
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
    from .grid.spec import expand, load_spec, preset_names, with_data
    from .store.runstore import RunStore

    if list_presets:
        click.echo("\n".join(preset_names()))
        return
    if scheduler and executor != "dask":
        raise click.UsageError("--scheduler goes with --executor dask")
    stale = stale_policy(accept_stale, retrain_stale)
    check_device(device, here=executor == "local" or scheduler is None)  # a remote cluster has its own devices
    mapping, where = load_spec(spec, preset)
    if data_dir:
        mapping, where = with_data(mapping, data_dir), f"{where} on {data_dir}"
    configs = expand(mapping, where)
    store = RunStore(runs_dir)
    costs = None
    if budget_hours or (dry_run and cost):
        from .grid.cost import estimate_costs, select_within_budget

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
    from .grid.executors import run_dask, run_local

    if executor == "dask":
        report = run_dask(configs, store, scheduler=scheduler, workers=workers, device=device,
                          threads_per_run=threads_per_run, progress=show_progress(as_json), stale=stale)
    else:
        report = run_local(configs, store, workers=workers, device=device, progress=show_progress(as_json), stale=stale)
    summary = {"runs": len(configs), "done": len(report.done), "skipped": len(report.skipped),
               "failed": report.failed, "run_store": str(store.root)}
    if as_json:
        click.echo(jsonio.dumps(summary, indent=2))
    else:
        click.echo(f"{len(report.done)} runs trained, {len(report.skipped)} already done, "
                   f"{len(report.failed)} failed; run store: {store.root}")
        for run_id, message in report.failed.items():
            click.echo(f"  {run_id}: {message}", err=True)
    if report.failed:
        raise ScalerecError(f"{len(report.failed)} of {len(configs)} runs failed (listed above); "
                            "fix and rerun to resume")


def _grid_plan(configs, store, costs, workers: int, where: str, as_json: bool) -> None:
    """The dry-run table: every run, its status and (with the probe) FLOPs and estimated hours, with totals."""
    rows = []
    for c in configs:
        row = {"run_id": c.run_id, "status": store.status(c.run_id), "shape": f"{c.model.n_layers}x{c.model.n_heads}x"
               f"{c.model.hidden}", "encoder": c.model.item_encoder,
               "data": c.data.n_users if c.data.name == "synthetic" else c.data.path, "epochs": c.train.epochs}
        if costs:
            cost = costs[c.run_id]
            row |= {"N": cost.non_embedding_params, "D": cost.dataset_interactions, "train_flops": cost.train_flops,
                    "hours": cost.hours}
        rows.append(row)
    if as_json:
        click.echo(jsonio.dumps(rows, indent=2))
        return
    for row in rows:
        if "hours" in row:
            row.update(N=format_number(row["N"]), D=format_number(row["D"]), train_flops=f"{row['train_flops']:.3g}",
                       hours=f"{row['hours']:.3g}")
    _emit(rows, False, f"{len(configs)} runs in {where}")
    if costs:
        todo = [costs[c.run_id] for c in configs if store.status(c.run_id) != "done"]
        hours = sum(c.hours for c in todo)
        click.echo(f"to train: {len(todo)} runs, {sum(c.train_flops for c in todo):.3g} FLOPs, {hours:.3g} run-hours "
                   f"= about {hours / workers:.3g} h with --workers {workers} on this machine (estimated from a "
                   "throughput probe; evaluation included)")


@main.command()
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--runs", "runs_dir", default="runs", show_default=True, type=click.Path(file_okay=False),
              help="Run store directory; the run goes to RUNS/<run id>/.")
@device_option
@stale_options
def train(config, runs_dir, device, accept_stale, retrain_stale):
    """Train one run described by CONFIG.toml ([data], [model], [train], seed); resumes if interrupted."""
    from .config import load_run_config
    from .data.datasets import resolve_data
    from .grid.executors import apply_stale_policy
    from .store.runstore import RunStore
    from .train.trainer import train_run

    stale = stale_policy(accept_stale, retrain_stale)
    check_device(device)
    cfg = resolve_data(load_run_config(config))
    store = RunStore(runs_dir)
    apply_stale_policy([cfg], store, stale)
    status = train_run(cfg, store, device=device, accept_stale=stale == "accept", progress=show_progress())
    click.echo(f"run {cfg.run_id}: {'already done' if status == 'skipped' else status} ({Path(runs_dir) / cfg.run_id})")


@main.command()
@click.argument("runs_dir", default="runs", required=False, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
def runs(runs_dir, as_json):
    """Table of the runs in a run store: status, shape, data size, last checkpoint, and the training semantics of
    the code that started each run (0: before scalerec recorded it)."""
    from .store.provenance import config_semantics
    from .store.runstore import RunStore

    store = RunStore(runs_dir)
    if not Path(runs_dir).is_dir():
        raise ScalerecError(f"{runs_dir}: no such run store")
    rows = []
    for run_id in store.run_ids():
        config, ckpt = store.read_config(run_id), store.read_rows(run_id)
        # trained runs have their config; imported ones (import-mlflow) only their rows
        model = config.get("config", {}).get("model") or (ckpt.iloc[-1] if len(ckpt) else {})
        row = {"run_id": run_id, "status": store.status(run_id),
               "shape": "x".join(str(model[k]) for k in ("n_layers", "n_heads", "hidden")) if len(model) else "?",
               "encoder": model.get("item_encoder", "?"), "D": config["dataset"].get("dataset_interactions"),
               "checkpoints": len(ckpt), "semantics": config_semantics(config)}
        if len(ckpt):
            last = ckpt.iloc[-1]
            metric = next((c for c in ("valid_ndcg_at_5", *ckpt.columns) if c.startswith("valid_ndcg_at_")), None)
            row |= {"N": int(last.non_embedding_params), "epoch": float(last.epoch),
                    "T": int(last.seen_interactions), "train_flops": float(last.train_flops)}
            if metric in ckpt:
                row[metric] = round(float(last[metric]), 4)
        if row["status"] == "failed":  # the reason it stopped, as the run recorded it
            reason = " ".join((store.failure(run_id) or "").split())
            row["reason"] = reason if as_json or len(reason) <= 70 else reason[:67] + "..."
        rows.append(row)
    rows.sort(key=lambda r: (r.get("N", 0), r["D"] or 0, r["run_id"]))
    _emit(rows, as_json, f"{len(rows)} runs in {runs_dir}")


@main.command("fit-laws")
@click.argument("runs_dirs", nargs=-1, type=click.Path())
@click.option("--out", default="analysis", show_default=True, type=click.Path(file_okay=False),
              help="Where laws.json, report.md and figures/ go.")
@click.option("--metric", default="valid_ndcg_at_5", show_default=True, help="Checkpoint column to model.")
@click.option("--flops", "flops_column", default="train_flops", show_default=True,
              type=click.Choice(["train_flops", "forward_macs", "analytic_flops"]),
              help="Compute column; forward_macs is the SRT paper's own convention.")
@click.option("--points", default="final", show_default=True,
              type=click.Choice(["final", "all", "envelope", "best-per-run"]),
              help="Checkpoints the N,T law is fitted on.")
@click.option("--n-column", default="non_embedding", show_default=True,
              type=click.Choice(["non_embedding", "total"]), help="Which parameter count is N.")
@click.option("--bootstrap", default=200, show_default=True, type=click.IntRange(0, 100000),
              help="Resamples of whole runs for 90% intervals (0: none).")
@click.option("--huber-delta", default=0.01, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Huber loss threshold, in metric units.")
@click.option("--seed", default=0, show_default=True, help="Bootstrap seed.")
@click.option("--holdout-largest", type=click.IntRange(1), help="Also refit without the K largest runs and report "
              "how well the laws predict them.")
@click.option("--by", "holdout_by", default="N", show_default=True, type=click.Choice(["N", "C"]),
              help="With --holdout-largest: largest by parameters N or by final compute C.")
@click.option("--holdout-flops-above", type=NUMBER, help="Also refit on checkpoints with at most this compute and "
              "report the error on the envelope above it.")
@click.option("--backtest/--no-backtest", default=True, show_default=True, help="Rolling-origin hold-outs (largest "
              "runs by N, C and D) that measure each law's extrapolation error and calibrate the 90% intervals "
              "`predict` gives.")
@click.option("--strict", is_flag=True, help="Stop on checkpoints with a NaN/inf metric instead of leaving them out.")
@click.option("--json", "as_json", is_flag=True, help="Print laws.json to stdout as well.")
def fit_laws_command(runs_dirs, out, metric, flops_column, points, n_column, bootstrap, huber_delta, seed,
                     holdout_largest, holdout_by, holdout_flops_above, backtest, strict, as_json):
    """Fit the scaling laws to the checkpoints of one or more run stores (default: runs/).

    \b
    Fits: the compute-optimal envelope with the saturating law (SRT paper Eq. 3) and a linear one;
    the law NDCG(N, T) = E - A/N^alpha - B/T^beta (Eq. 4); N*(C) and T*(C) power laws along the envelope;
    the loss laws L(N, T) = E + A/N^alpha + B/T^beta and L(N) = E + (N0/N)^alpha on valid_loss.
    Writes OUT/laws.json, OUT/report.md and OUT/figures/*.png.
    """
    from .analysis.fit_laws import FitOptions, fit_laws
    from .analysis.report import write_analysis
    from .store.runstore import read_checkpoints

    checkpoints = read_checkpoints(*(runs_dirs or ("runs",)))
    options = FitOptions(metric=metric, flops=flops_column, points=points, n_column=n_column, bootstrap=bootstrap,
                         huber_delta=huber_delta, seed=seed, backtest=backtest)
    data = fit_laws(checkpoints, options, progress=show_progress(as_json), strict=strict)
    if holdout_largest or holdout_flops_above:
        from .analysis.holdout import holdout_flops_above as above, holdout_largest as largest

        data["holdout"] = {}
        if holdout_largest:
            data["holdout"]["largest"] = largest(checkpoints, holdout_largest, holdout_by, options)
        if holdout_flops_above:
            data["holdout"]["flops_above"] = above(checkpoints, holdout_flops_above, options)
    paths = write_analysis(checkpoints, data, out)
    if as_json:
        click.echo(jsonio.dumps(data, indent=2))
        return
    laws, extra = data["laws"], data["saturating_extra"]
    sat, risk = laws["saturating"]["params"], laws["risk"]["params"]
    click.echo(f"{data['data']['runs']} runs, {data['data']['checkpoints']} checkpoints")
    if data["data"]["dropped_non_finite_rows"]:
        click.echo(f"warning: {data['data']['dropped_non_finite_rows']} checkpoints with a NaN/inf {metric} were "
                   "left out", err=True)
    click.echo(f"envelope  {metric}(C) = {sat['a']:.4g} / (1 + exp(-{sat['b']:.4g} (ln C - {sat['c']:.4g}))) "
               f"{-sat['d']:+.4g}   asymptote {extra['asymptote']:.4g}")
    click.echo(f"N,T law   {metric} = {risk['E']:.4g} - {risk['A']:.4g}/N^{risk['alpha']:.3g} "
               f"- {risk['B']:.4g}/T^{risk['beta']:.3g}")
    click.echo(f"optimal   N* ∝ C^{laws['n_opt']['params']['exponent']:.3g}, "
               f"T* ∝ C^{laws['t_opt']['params']['exponent']:.3g}")
    for kind, check in data.get("holdout", {}).items():
        for law in ("risk_law", "envelope_law"):
            if check.get(law):
                c = check[law]
                coverage = "–" if c["coverage_90"] is None else f"{c['coverage_90']:.0%}"
                click.echo(f"held out ({kind}) {law.replace('_', ' ')}: {c['n']} points, MAE {c['mae']:.4f}, "
                           f"MAPE {c['mape']:.1%}, inside the 90% interval {coverage} ({c['interval']})"
                           if c["mape"] is not None else f"held out ({kind}) {law}: {c['n']} points, MAE "
                           f"{c['mae']:.4f}")
    for name, entry in ((data.get("backtest") or {}).get("laws") or {}).items():
        if entry.get("n"):
            cal = entry["calibration"]
            click.echo(f"backtest  {name}: {entry['n']} held-out points, MAE {entry['mae']:.4f}, "
                       + (f"MAPE {entry['mape']:.1%}, " if entry["mape"] is not None else "")
                       + (f"inside the calibrated 90% interval {entry['coverage_calibrated_cv']:.0%} "
                          "(cross-validated)" if cal["calibrated"] else f"not calibrated: {cal['why']}"))
    for name, law in laws.items():
        for flag in law["flags"]:
            click.echo(f"warning: {name}: {flag}", err=True)
    for warning in data["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    click.echo(f"wrote {paths['laws']}, {paths['report']} and {len([k for k in paths if k.startswith('figure')])} "
               f"figures in {Path(out) / 'figures'}")


@main.command()
@click.option("--N", "n", type=NUMBERS, help="Parameters (the N of laws.json: non-embedding by default); "
              "several values, comma-separated, give a table.")
@click.option("--T", "t", type=NUMBERS, help="Training interactions seen (targets); comma-separated for a table.")
@click.option("--flops", type=NUMBERS, help="Training budgets in FLOPs (the compute column of laws.json).")
@click.option("--dataset-interactions", "d", type=NUMBER, help="Your data size D: with --flops, to get epochs; with "
              "--N/--T, the input of the repetition-aware law risk_repeat.")
@click.option("--layers", type=click.IntRange(1), help="With --N/--T: transformer layers, the input of the "
              "shape-aware law risk_depth.")
@click.option("--law", type=click.Choice(["risk", "risk_depth", "risk_repeat"]), help="With --N/--T: the N,T law "
              "to answer with (default: the one fit-laws' backtest selected; risk is the paper's Eq. 4).")
@click.option("--shapes", "shapes_path", type=click.Path(dir_okay=False), help="With --flops: the shapes you can "
              "train, TOML `shapes = [[n_layers, n_heads, hidden], ...]` (default: the runs' and the paper's Table 3).")
@click.option("--laws", "laws_path", default="analysis/laws.json", show_default=True, type=click.Path(),
              help="The laws.json that `scalerec fit-laws` wrote.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
def predict(n, t, flops, d, layers, law, shapes_path, laws_path, as_json):
    """What a run will reach (--N and --T), or what to train for a budget (--flops).

    \b
    Examples:
      scalerec predict --N 1e5 --T 2M
      scalerec predict --N 10K,50K,100K --T 1M,3M          (a table: every N with every T)
      scalerec predict --flops 1e15 --dataset-interactions 400K
    """
    from .analysis.predict import load_laws, predict_budget, predict_nt
    from .shapes import load_shape_catalog

    if flops is None and (n is None or t is None):
        raise click.UsageError("give --N and --T, or --flops")
    if flops is not None and (n is not None or t is not None):
        raise click.UsageError("--flops cannot be combined with --N/--T")
    if shapes_path and flops is None:
        raise click.UsageError("--shapes goes with --flops")
    if flops is not None and (layers or law):
        raise click.UsageError("--layers and --law go with --N/--T")
    if shapes_path:
        load_shape_catalog(shapes_path)  # a bad shapes file is named before the laws are read
    data = load_laws(laws_path)
    if shapes_path and data["data"].get("n_column", "non_embedding_params") != "non_embedding_params":
        raise ScalerecError(f"{laws_path} uses N = {data['data']['n_column']} (fit-laws --n-column total), but "
                            "--shapes gives non-embedding N: refit with --n-column non_embedding, or leave out "
                            "--shapes to choose among the runs' own shapes")
    shapes = load_shape_catalog(shapes_path, data["data"].get("item_encoder", "text")) if shapes_path else None
    results = ([predict_budget(data, c, d, shapes) for c in flops] if flops is not None
               else [predict_nt(data, one_n, one_t, law=law, inputs={"layers": layers, "D": d})
                     for one_n in n for one_t in t])
    if len(results) > 1:
        _prediction_table(results, as_json)
        return
    result = results[0]
    n, t, flops = (n or [None])[0], (t or [None])[0], (flops or [None])[0]
    if as_json:
        click.echo(jsonio.dumps(result, indent=2))
        return
    metric = result["metric"]
    if flops is None:
        click.echo(f"{metric} at N = {format_number(n)}, T = {format_number(t)}: "
                   f"{_with_ci(result['prediction'])} (N,T law {result['law']})")
    else:
        alloc, risk_alloc, shape = result["envelope_allocation"], result["risk_law_allocation"], result["nearest_shape"]
        click.echo(f"budget {flops:.3g} FLOPs")
        click.echo(f"  best {metric} (envelope law):  {_with_ci(result['best_metric'])}")
        click.echo(f"  train N = {_with_ci(alloc['N'], big=True)} parameters on T = {_with_ci(alloc['T'], big=True)}"
                   " interactions (envelope power laws)")
        if risk_alloc["metric"] is not None:
            click.echo(f"  the N,T law's optimum: N = {format_number(risk_alloc['N'])}, T = "
                       f"{format_number(risk_alloc['T'])} -> {metric} {risk_alloc['metric']:.4f}")
        if shape:
            click.echo(f"  nearest shape: {shape['n_layers']} layers, {shape['n_heads']} heads, hidden "
                       f"{shape['hidden']} (N = {format_number(shape['n'])}, {shape['source']})")
        if "epochs" in result:
            click.echo(f"  epochs over {format_number(d)} interactions: {result['epochs']:.3g}")
    for warning in result["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    for law, flags in result["flags"].items():
        for flag in flags:
            click.echo(f"warning: the {law} fit is flagged: {flag}", err=True)


def _prediction_table(results: list[dict], as_json: bool) -> None:
    """Several predictions: one row each (warnings once, below the table)."""
    if as_json:
        click.echo(jsonio.dumps(results, indent=2))
        return
    rows = []
    for r in results:
        if "flops" in r:
            rows.append({"flops": f"{r['flops']:.3g}", r["metric"]: _with_ci(r["best_metric"]),
                         "N": _with_ci(r["envelope_allocation"]["N"], big=True).split(" (")[0],
                         "T": _with_ci(r["envelope_allocation"]["T"], big=True).split(" (")[0],
                         "shape": "{n_layers}x{n_heads}x{hidden}".format(**r["nearest_shape"])
                         if r["nearest_shape"] else "-",
                         **({"epochs": f"{r['epochs']:.3g}"} if "epochs" in r else {})})
        else:
            rows.append({"N": format_number(r["N"]), "T": format_number(r["T"]),
                         r["metric"]: _with_ci(r["prediction"])})
    _emit(rows, False, f"{len(rows)} predictions")
    for warning in dict.fromkeys(w for r in results for w in r["warnings"]):
        click.echo(f"warning: {warning}", err=True)
    for law, flags in results[0]["flags"].items():
        for flag in flags:
            click.echo(f"warning: the {law} fit is flagged: {flag}", err=True)


def _with_ci(entry: dict, big: bool = False) -> str:
    """A predicted value with its 90% interval, or why there is none (out of what the quantity can be)."""
    show = format_number if big else (lambda v: f"{v:.4f}")
    if entry["value"] is None:
        return f"none (the law gives {show(entry['law_value'])}, out of range)"
    text = show(entry["value"])
    if entry.get("interval_90"):
        low, high = entry["interval_90"]
        how = entry.get("calibration") or {}
        how = (f", calibrated on {how['backtest_points']} backtest points" if "backtest_points" in how
               else ", bootstrap only: not calibrated" if how else "")
        text += (f" (90% interval {show(low)}–{show(high)}{', clipped' if entry.get('interval_clipped') else ''}"
                 f"{how})")
    return text


@main.command()
@click.option("--from", "parent", required=True, help="The pre-trained run: its id in --parent-runs, or its directory.")
@click.option("--data", "data_spec", required=True, type=click.Path(exists=True),
              help="The new domain: a prepared dataset directory, or a TOML file with a [data] table.")
@click.option("--parent-runs", default="runs", show_default=True, type=click.Path(file_okay=False),
              help="Run store of the pre-trained run (when --from is an id).")
@click.option("--runs", "runs_dir", default="runs", show_default=True, type=click.Path(file_okay=False),
              help="Run store the fine-tuning run goes to.")
@click.option("--layer-epochs", default=10, show_default=True, type=click.IntRange(0),
              help="Epochs per transformer layer, unfrozen one at a time from the top.")
@click.option("--embedding-epochs", default=50, show_default=True, type=click.IntRange(0),
              help="Then epochs with everything trainable, token embeddings included.")
@click.option("--lr", default=1e-4, show_default=True, type=click.FloatRange(min=0, min_open=True, max=1),
              help="Adam's peak learning rate in every stage (one-cycle schedule).")
@click.option("--negatives", default=0, show_default=True, type=click.IntRange(0),
              help="Training negatives (0: the pre-trained run's; must be below the new catalog's size).")
@click.option("--ewc-lambda", default=100.0, show_default=True, type=click.FloatRange(min=0),
              help="Elastic Weight Consolidation strength (0: off).")
@click.option("--fisher-batches", default=20, show_default=True, type=click.IntRange(1),
              help="Pre-training batches for the diagonal Fisher.")
@click.option("--eval-every", default=5, show_default=True, type=click.IntRange(1),
              help="Evaluate and write a checkpoint row every K epochs (and after the last one).")
@click.option("--seed", default=0, show_default=True, help="Seed of the batches and negatives.")
@device_option
@click.option("--accept-stale", is_flag=True, help="Resume or skip a fine-tuning run that code of other training "
              "semantics started (without it, such a run stops the command).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
def finetune(parent, data_spec, parent_runs, runs_dir, layer_epochs, embedding_epochs, lr, negatives, ewc_lambda,
             fisher_batches, eval_every, seed, device, accept_stale, as_json):
    """Fine-tune a pre-trained text-encoder run on a new domain (SRT paper Table 4).

    \b
    Progressive unfreezing: the top transformer layer for --layer-epochs, then the next one down as well, to the
    bottom; then everything, token embeddings included, for --embedding-epochs; Adam with a one-cycle schedule per
    stage; EWC against the pre-trained weights with a diagonal Fisher from the pre-training data. The new catalog is
    tokenized with the pre-trained run's SentencePiece model, so no parameter is added. Checkpoints go to the run
    store with parent_run_id, stage and parent_train_flops (train_flops counts the fine-tuning only).
      scalerec finetune --from 3318d1594609 --data data/beauty --runs runs-transfer
    """
    from .config import DataConfig, data_config_from_dict, load_toml
    from .data.datasets import resolve_data_config
    from .store.runstore import RunStore
    from .train.finetune import FinetuneConfig, finetune_run

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
    ft = FinetuneConfig(parent_run_id=parent, data=data_cfg, layer_epochs=layer_epochs,
                        embedding_epochs=embedding_epochs, lr=lr, n_negatives=negatives, ewc_lambda=ewc_lambda,
                        fisher_batches=fisher_batches, eval_every=eval_every, seed=seed)
    status = finetune_run(ft, RunStore(parent_runs), RunStore(runs_dir), device=device, progress=show_progress(as_json),
                          accept_stale=accept_stale)
    rows = RunStore(runs_dir).read_rows(ft.run_id)
    best = rows.loc[rows.valid_ndcg_at_5.idxmax()] if len(rows) else None
    result = {"run_id": ft.run_id, "status": status, "parent_run_id": parent, "run_store": runs_dir,
              "checkpoints": len(rows)}
    if best is not None:
        final = rows.iloc[-1]
        result |= {"best_valid_ndcg_at_5": float(best.valid_ndcg_at_5), "best_epoch": float(best.epoch),
                   "final_test_ndcg_at_5": float(final.test_ndcg_at_5),
                   "final_test_hit_at_5": float(final.test_hit_at_5)}
    if as_json:
        click.echo(jsonio.dumps(result, indent=2))
    else:
        click.echo(f"run {ft.run_id}: {'already done' if status == 'skipped' else status} "
                   f"({Path(runs_dir) / ft.run_id}), fine-tuned from {parent}")
        if best is not None:
            click.echo(f"  best valid NDCG@5 {result['best_valid_ndcg_at_5']:.4f} at epoch {result['best_epoch']:.0f}; "
                       f"final test NDCG@5 {result['final_test_ndcg_at_5']:.4f}, HIT@5 "
                       f"{result['final_test_hit_at_5']:.4f}")


@main.command("import-mlflow")
@click.argument("source")
@click.option("--mapping", default="srt", show_default=True,
              help="Which MLflow params/metrics give which run-store columns: a built-in name or a TOML file.")
@click.option("--experiment", "experiments", multiple=True, help="Import only this experiment (repeatable).")
@click.option("--out", default="runs", show_default=True, type=click.Path(file_okay=False), help="Run store to write.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
def import_mlflow_command(source, mapping, experiments, out, as_json):
    """Turn runs tracked in MLflow into run-store folders, so `fit-laws` can analyse an existing grid.

    \b
    SOURCE is an MLflow SQLite database (mlflow.db or sqlite:///path/mlflow.db) or an mlruns/ directory. It is only
    read: databases of older MLflow versions import as they are, with no `mlflow db upgrade`. Each MLflow run becomes
    one run; importing again replaces its rows. The built-in mapping `srt` reads the SRT reference code's names:
      params  n_layers n_heads hidden_size inner_size nce_num_negatives train_batch_size n_inters total_flops
              model_non_emb_params model_total_params
      metrics valid/ndcg_at_5 valid/hit_at_5 valid/eval_loss (step = epoch - 1)
    with forward_macs = epoch x total_flops x n_inters / train_batch_size and T = epoch x n_inters.
    A mapping file has the same sections: see scalerec/store/mappings/srt.toml.

    \b
      scalerec import-mlflow mlflow.db --out runs && scalerec fit-laws runs --flops forward_macs
    """
    from .store.mlflow_import import import_mlflow, load_mapping

    summaries = import_mlflow(source, load_mapping(mapping), out, tuple(experiments))
    _emit(summaries, as_json, f"imported {len(summaries)} MLflow runs into {out}")


@main.group()
def data():
    """Prepare real datasets: raw files -> a prepared directory -> a nested ladder of sizes.

    \b
      scalerec data prepare reviews_Beauty_5.json.gz --meta meta_Beauty.json.gz --format amazon2014 --out data/beauty
      scalerec data prepare beauty --format beauty --out data/beauty      (the shared 5-core Beauty)
      scalerec data stats data/beauty
      scalerec data subsample data/beauty --interactions 20K,50K,100K --out data/beauty-ladder
    A run or grid names a prepared directory with [data] name = "prepared", path = "DIR".
    """


def _stats_row(directory, info: dict) -> dict:
    stats = info["stats"]
    q = stats["seq_len_quantiles"]
    return {"dataset": str(directory), "users": stats["users"], "items": stats["items"],
            "interactions": stats["interactions"], "seq_mean": round(stats["seq_len_mean"], 2),
            "seq_p50": q["p50"], "seq_p90": q["p90"], "seq_max": q["max"],
            "gini": round(stats["item_popularity_gini"], 3), "fingerprint": info["fingerprint"]}


@data.command("prepare")
@click.argument("source", type=click.Path())
@click.option("--format", "fmt", required=True,
              type=click.Choice(["amazon2014", "amazon2018", "recbole", "table", "beauty"]),
              help="amazon2014/2018: reviews JSON lines (+ --meta); recbole: a .inter file or its directory; "
                   "table: CSV/TSV/Parquet with --user/--item/--time/--text; beauty: the shared 5-core Beauty "
                   "(SOURCE = its directory, or the word beauty to find ../shared/data).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="The dataset directory to write.")
@click.option("--meta", type=click.Path(dir_okay=False), help="Amazon metadata file (titles, brands).")
@click.option("--items", type=click.Path(dir_okay=False), help="table: a separate items table with the text.")
@click.option("--user", default="user_id", show_default=True, help="table: user column.")
@click.option("--item", default="item_id", show_default=True, help="table: item column.")
@click.option("--time", default="timestamp", show_default=True, help="table: time or order column.")
@click.option("--text", default="title,brand", show_default=True, help="table: title column, brand column.")
@click.option("--kcore", default=0, show_default=True, type=click.IntRange(0), help="Keep the k-core (0: off).")
@click.option("--skip-bad-lines", is_flag=True, help="Count and skip unparseable lines instead of stopping.")
@click.option("--name", help="Dataset name (default: the directory name).")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
def data_prepare(source, fmt, out, meta, items, user, item, time, text, kcore, skip_bad_lines, name, force, as_json):
    """Read SOURCE, clean it (duplicates, optional k-core) and write a prepared dataset directory."""
    from .data.datasets import prepare_dataset
    from .data.prepare import dataset_info
    from .data.tabular import ColumnMapping

    mapping = ColumnMapping(user, item, time, tuple(c for c in text.split(",") if c))
    _, report = prepare_dataset(source, fmt, out, name=name, kcore=kcore, force=force, meta=meta, items=items,
                                mapping=mapping, skip_bad_lines=skip_bad_lines, progress=show_progress(as_json))
    info = dataset_info(out)
    if as_json:
        click.echo(jsonio.dumps(info, indent=2))
        return
    for step in report["cleaning"]:
        click.echo("  " + ", ".join(f"{k} {v}" for k, v in step.items() if k != "step") + f"  <- {step['step']}")
    if report["bad_lines"]["skipped_lines"]:
        click.echo(f"  skipped {report['bad_lines']['skipped_lines']} bad lines: {report['bad_lines']['by_reason']}")
    _emit([_stats_row(out, info)], False, f"wrote {out}")


@data.command("stats")
@click.argument("directories", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
def data_stats(directories, as_json):
    """Statistics of prepared datasets: users, items, interactions, sequence lengths, popularity Gini."""
    from .data.prepare import dataset_info

    infos = [dataset_info(d) for d in directories]
    if as_json:
        click.echo(jsonio.dumps([{"dataset": d, **i["stats"]} for d, i in zip(directories, infos)], indent=2))
        return
    _emit([_stats_row(d, i) for d, i in zip(directories, infos)], False, f"{len(infos)} datasets")


@data.command("subsample")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--interactions", "targets", required=True,
              help="Target interaction counts, comma-separated: 80K,400K,800K.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Writes OUT/<target>/ per subset.")
@click.option("--seed", default=0, show_default=True, help="Seed of the user order.")
@click.option("--force", is_flag=True, help="Replace subsets that exist.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
def data_subsample(directory, targets, out, seed, force, as_json):
    """Nested user-sampled subsets of a prepared dataset (each smaller one inside the larger), one per target."""
    from .data.prepare import dataset_info
    from .data.subsample import parse_targets, write_ladder

    wanted = parse_targets(targets)
    rows = [_stats_row(path, dataset_info(path)) for path in write_ladder(directory, wanted, out, seed, force)]
    rows.append(_stats_row(directory, dataset_info(directory)) | {"dataset": f"{directory} (all)"})
    if as_json:
        click.echo(jsonio.dumps(rows, indent=2))
        return
    _emit(rows, False, f"{len(wanted)} nested subsets of {directory} (seed {seed})")


def _emit(rows: list[dict], as_json: bool, title: str) -> None:
    if as_json:
        click.echo(jsonio.dumps(rows, indent=2))
        return
    click.echo(title)
    if not rows:
        return
    columns = list(dict.fromkeys(k for r in rows for k in r))
    cells = [[_cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def _cell(value) -> str:
    if isinstance(value, float) and abs(value) >= 1e4:
        return format_number(value)
    return str(value)


def run(argv: list[str] | None = None) -> None:
    """Console entry point. Every error is one line on stderr, `scalerec: error: ...`: exit 2 for usage errors,
    1 for the rest, 130 when interrupted. An exception scalerec did not foresee is an internal error, still one
    line; --debug shows the traceback instead."""
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        main.main(argv, prog_name="scalerec", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        _fail("aborted", 130)
    except KeyboardInterrupt:
        _fail("interrupted (rerun the same command to resume)", 130)
    except Exception as exc:
        if debug:
            raise
        if isinstance(exc, click.UsageError):
            where = exc.ctx.command_path if exc.ctx else _command_path(argv)
            _fail(f"{exc.format_message()} (see '{where} --help')", 2)
        if isinstance(exc, (ScalerecError, click.ClickException)):
            _fail(exc.format_message() if isinstance(exc, click.ClickException) else str(exc), 1)
        _fail(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", 1)


def _command_path(argv: list[str]) -> str:
    """`scalerec data prepare` from the arguments, for usage errors Click raises without a context."""
    path, command = ["scalerec"], main
    for arg in argv:
        if isinstance(command, click.Group) and arg in command.commands:
            path.append(arg)
            command = command.commands[arg]
        elif not arg.startswith("-"):
            break
    return " ".join(path)


def _fail(message: str, code: int) -> None:
    """One line on stderr, on a line of its own (a progress bar may have been drawn), then exit."""
    message = " ".join(str(message).split())  # one line, whatever the message held
    click.echo(f"scalerec: {'' if code == 130 else 'error: '}{message}", err=True)
    sys.exit(code)


if __name__ == "__main__":
    run()
