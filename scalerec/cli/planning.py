"""`scalerec plan`: which runs of a grid to train next for the prediction the user needs (analysis/planner.py)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..errors import ScalerecError
from ..numbers import parse_number
from .common import NUMBER, grid_configs, grid_data_option, show_progress
from .group import main


def _pair(text: str) -> tuple[float, float]:
    parts = text.split(",")
    if len(parts) != 2:
        raise ScalerecError(f"--target {text!r}: expected N,T (two numbers, e.g. 200K,5M)")
    n, t = (parse_number(v.strip(), name=f"--target {name}") for v, name in zip(parts, "NT"))
    return n, t


@main.command()
@click.argument("spec", required=False, type=click.Path(dir_okay=False))
@click.option("--preset", help="A built-in grid instead of SPEC: its runs are the candidates.")
@click.option(
    "--runs",
    "runs_dir",
    default="runs",
    show_default=True,
    type=click.Path(file_okay=False),
    help="The run store: its finished runs (and WSD cooldown branches) fit the law; the grid's runs not finished "
    "there are the candidates.",
)
@grid_data_option
@click.option(
    "--target-flops",
    type=NUMBER,
    help="Plan for the compute-optimal run at this training compute C (N and T from the N,T law's optimum).",
)
@click.option("--target", "target_nt", help="Plan for the prediction at N,T instead (e.g. 200K,5M).")
@click.option(
    "--budget-hours",
    required=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Run-hours to spend (summed over runs, estimated by the cost probe).",
)
@click.option("--metric", default="valid_ndcg_at_5", show_default=True, help="The metric the law predicts.")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 256),
    help="As grid --workers (the cost probe's threads per run).",
)
@click.option("--out", type=click.Path(dir_okay=False), help="Write the plan here (JSON) for `grid --plan`.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
def plan(spec, preset, runs_dir, data_dir, target_flops, target_nt, budget_hours, metric, workers, out, as_json):
    """Choose the runs of a grid that most narrow the law's prediction at a target, per hour, within a budget.

    The N,T law is fitted on the store's finished runs; each candidate (a run of the grid not finished yet) is
    valued by how much its annealed points (a WSD run's cooldown branches too) would shrink the 90% interval of
    the prediction at the target, per hour the cost probe says it takes. Prints the runs in the order chosen and
    the interval to expect; `--out plan.json` and then `scalerec grid SPEC --plan plan.json` trains them.
    """
    from ..analysis import laws
    from ..analysis.planner import Candidate, fit_runs, plan_for_target
    from ..grid.cost import estimate_costs
    from ..metric_direction import resolve_direction
    from ..store.runstore import RunStore, atomic_write_bytes, read_checkpoints

    if (target_flops is None) == (target_nt is None):
        raise click.UsageError("give --target-flops C or --target N,T (one of them)")
    configs, where = grid_configs(spec, preset, data_dir)
    store = RunStore(runs_dir)
    if not Path(runs_dir).is_dir() or not store.run_ids():
        raise ScalerecError(f"plan: {runs_dir} holds no runs to fit a law on (train some of the grid first)")
    fitted = fit_runs(read_checkpoints(runs_dir), metric, resolve_direction(metric))
    if target_nt is not None:
        target, how = _pair(target_nt), "the target given"
    else:
        # the law's closed-form optimum under C = k·N·T; a NaN or sub-1 N, T is refused by plan_for_target
        n, t = laws.risk_optimum(target_flops, fitted.flops_per_param_target, *fitted.law.theta())
        target, how = (float(n), float(t)), f"compute-optimal at C = {target_flops:.3g} by the N,T law"
    todo = [c for c in configs if store.status(c.run_id) != "done"]
    if not todo:
        raise ScalerecError(f"plan: every run of {where} is finished in {runs_dir}: nothing left to choose")
    try:
        costs = estimate_costs(todo, workers=workers, progress=show_progress(as_json))
    except (ScalerecError, OSError) as exc:
        raise ScalerecError(f"plan: cannot estimate what the grid's runs cost ({exc})") from None
    by_id = {c.run_id: c for c in todo}
    candidates = []
    for cost in costs:
        cfg = by_id[cost.run_id]
        t_end = fitted.targets_per_interaction_epoch * cost.dataset_interactions * cfg.train.epochs
        points = tuple((float(cost.non_embedding_params), f * t_end) for f in (*cfg.train.branches, 1.0))
        label = f"{cost.n_layers}x{cost.n_heads}x{cost.hidden} D={cost.dataset_interactions} {cfg.train.epochs} ep"
        if cfg.train.branches:
            label += f" + {len(cfg.train.branches)} cooldowns"
        candidates.append(Candidate(cost.run_id, points, cost.hours, label))
    result = plan_for_target(fitted.law, fitted.points, fitted.sigma, target, candidates, budget_hours)
    if not result.chosen:
        cheapest = min(c.hours for c in candidates)
        raise ScalerecError(f"plan: no run fits in {budget_hours:g} h (the cheapest needs {cheapest:.3g} h)")
    summary = result.as_dict() | {
        "spec": where,
        "runs": str(runs_dir),
        "metric": metric,
        "target_how": how,
        "budget_hours": budget_hours,
        "law": {"name": fitted.law.name, "params": fitted.law.params_, "sigma": fitted.sigma},
        "chosen": [{"run_id": c.run_id, "run": c.label, "hours": c.hours} for c in result.chosen],
    }
    if out:
        from .. import jsonio

        atomic_write_bytes(Path(out), jsonio.dumps(summary, indent=2).encode())
    if as_json:
        click.echo(json.dumps(summary))
        return
    click.echo(
        f"target: N = {target[0]:.3g}, T = {target[1]:.3g} ({how}); {metric} predicted {result.predicted:.4g}\n"
        f"expected 90% half-width there: ±{result.half_width_now:.3g} now -> ±{result.half_width_after:.3g} after "
        f"{len(result.chosen)} run(s), {result.hours:.3g} of {budget_hours:g} h (parameter uncertainty of the law, "
        "linearised; a wrong law form is the backtest's to show)"
    )
    click.echo(f"{'run_id':<14}{'run':<44}{'hours':>8}{'half-width after':>18}")
    for chosen, step in zip(result.chosen, result.steps):
        click.echo(f"{chosen.run_id:<14}{chosen.label:<44}{chosen.hours:>8.3g}{step['half_width_90']:>18.3g}")
    if out:
        source = f"--preset {preset}" if preset else spec
        click.echo(f"train them: scalerec grid {source} --runs {runs_dir} --plan {out}")
