"""Analysis commands: runs, fit-laws, predict."""

from __future__ import annotations

import warnings
from pathlib import Path

import click

from .. import jsonio
from ..analysis.fit_options import FLOPS_COLUMNS, N_COLUMNS, POINT_POLICIES, FitOptions, cooldowns_as_runs
from ..errors import ScalerecError
from ..numbers import format_number
from .common import NUMBER, NUMBERS, emit, show_progress
from .group import main

# The N,T laws `predict --law` may name: the paper's Eq. 4 and the candidates of analysis/candidates.py (a test
# checks the two lists agree; importing that module here would load scipy for every --help).
NT_LAWS = ["risk", "risk_depth", "risk_repeat", "risk_schedule", "risk_negatives", "power_nt"]
FIT = FitOptions()  # fit-laws' option defaults are the dataclass's


@main.command()
@click.argument("runs_dir", default="runs", required=False, type=click.Path())
@click.option(
    "--archive",
    "archive_dir",
    type=click.Path(file_okay=False),
    help="Also copy every finished run's record (config.json, checkpoints.parquet, DONE; not the weights in "
    "state.pt) into this store, unless it holds it already: a store small enough to commit or share, "
    "which scalerec runs, fit-laws and a rerun of the grid (it skips those runs) read like any other.",
)
@click.option(
    "--verify",
    is_flag=True,
    help="Check every run instead: its config hashes to its run id, its rows carry that id, every checkpoints file "
    "reads under the schema, rows in step order without duplicates, DONE only with a final row, state.pt readable "
    "where the run is unfinished. Prints whole / unfinished / altered / damaged per run and exits 1 when any run is "
    "altered or damaged. Changes nothing.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
@click.pass_context
def runs(ctx, runs_dir, archive_dir, verify, as_json):
    """Table of the runs in a run store: status, shape, data size, last checkpoint, and the training semantics of
    the code that started each run (0: before scalerec recorded it). A run whose record no longer matches its id
    (its config.json edited, say) shows as `altered`, and every command leaves it out or refuses it."""
    from ..store.runstore import RunStore
    from ..store.summary import run_summary

    if verify:
        _verify(ctx, runs_dir, as_json)
        return
    store = RunStore(runs_dir)
    if not Path(runs_dir).is_dir():
        raise ScalerecError(f"{runs_dir}: no such run store")
    if archive_dir:
        copied = store.archive_finished(RunStore(archive_dir))
        click.echo(f"archived {len(copied)} finished run(s) into {archive_dir}", err=True)
    rows = [run_summary(store, run_id) for run_id in store.run_ids()]
    for row in rows:
        if not as_json and len(row.get("reason", "")) > 70:  # the table keeps one line per run
            row["reason"] = row["reason"][:67] + "..."
    rows.sort(key=lambda r: (r.get("N", 0), r["D"] or 0, r["run_id"]))
    emit(rows, as_json, f"{len(rows)} runs in {runs_dir}")


def _verify(ctx: click.Context, runs_dir: str, as_json: bool) -> None:
    from ..store.verify import ALTERED, DAMAGED, verify_store

    try:
        verdicts = verify_store(runs_dir)
    except ScalerecError as exc:  # not a store: a usage error, like a bad argument
        raise click.UsageError(str(exc), ctx) from None
    counts = {kind: sum(v["verdict"] == kind for v in verdicts) for kind in ("whole", "unfinished", ALTERED, DAMAGED)}
    if as_json:
        click.echo(jsonio.dumps({"store": runs_dir, "counts": counts, "runs": verdicts}, indent=2))
    else:
        emit(
            verdicts, False, f"{len(verdicts)} runs in {runs_dir}: " + ", ".join(f"{n} {k}" for k, n in counts.items())
        )
    if counts[ALTERED] or counts[DAMAGED]:
        ctx.exit(1)


@main.command("fit-laws")
@click.argument("runs_dirs", nargs=-1, type=click.Path())
@click.option(
    "--out",
    default="analysis",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where laws.json, report.md and figures/ go.",
)
@click.option(
    "--metric",
    help="Checkpoint column to model  [default: valid_ndcg_at_5, or the metric an "
    "import-table store was imported with].",
)
@click.option(
    "--lower-is-better",
    "direction",
    flag_value="lower",
    help="The metric improves as it falls (a loss, "
    "perplexity, an error rate). Default: from its name (loss, ppl, bpb, error, ... fall; ndcg, hit, mrr, "
    "recall, accuracy, ... rise), else from what import-table recorded.",
)
@click.option("--higher-is-better", "direction", flag_value="higher", help="The metric improves as it rises.")
@click.option(
    "--flops",
    "flops_column",
    default=FIT.flops,
    show_default=True,
    type=click.Choice(FLOPS_COLUMNS),
    help="Compute column; forward_macs is the SRT paper's own convention.",
)
@click.option(
    "--points",
    default=FIT.points,
    show_default=True,
    type=click.Choice(POINT_POLICIES),
    help="Checkpoints the N,T law is fitted on: final; tail (the last fifth of each schedule, annealed); "
    "all (the schedule-aware candidate risk_schedule then sees every position); envelope; best-per-run.",
)
@click.option(
    "--n-column",
    default=FIT.n_column,
    show_default=True,
    type=click.Choice(list(N_COLUMNS)),
    help="Which parameter count is N.",
)
@click.option(
    "--bootstrap",
    default=FIT.bootstrap,
    show_default=True,
    type=click.IntRange(0, 100000),
    help="Resamples of whole runs for 90% intervals (0: none).",
)
@click.option(
    "--huber-delta",
    default=FIT.huber_delta,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Huber loss threshold, in metric units.",
)
@click.option("--seed", default=FIT.seed, show_default=True, help="Bootstrap seed.")
@click.option(
    "--holdout-largest",
    type=click.IntRange(1),
    help="Also refit without the K largest runs and report how well the laws predict them.",
)
@click.option(
    "--holdout-by",
    default="N",
    show_default=True,
    type=click.Choice(["N", "C"]),
    help="With --holdout-largest: largest by parameters N or by final compute C.",
)
@click.option(
    "--by",
    "by_column",
    metavar="COLUMN",
    help="Also fit every law per family of runs, the groups sharing a value of COLUMN (block, item_encoder, "
    "loss, ...), and compare them: exponents side by side, and the compute where one family's envelope overtakes "
    "another's (laws.json `by`, a report section and figure; `predict --family` answers for one). With "
    "--holdout-largest, `--by N` and `--by C` still mean --holdout-by.",
)
@click.option(
    "--holdout-flops-above",
    type=NUMBER,
    help="Also refit on checkpoints with at most this compute and report the error on the envelope above it.",
)
@click.option(
    "--backtest/--no-backtest",
    default=True,
    show_default=True,
    help="Rolling-origin hold-outs (largest "
    "runs by N, C and D) that measure each law's extrapolation error and calibrate the 90% intervals "
    "`predict` gives.",
)
@click.option(
    "--slices/--no-slices",
    default=True,
    show_default=True,
    help="Also fit the envelope and the N,T "
    "law of each evaluation slice of the metric (cold-start users, long-tail items, noisy histories, "
    "items further ahead), when the store has them, and compare their exponents.",
)
@click.option(
    "--min-slice-users",
    default=FIT.min_slice_users,
    show_default=True,
    type=click.IntRange(1),
    help="Checkpoints whose slice holds fewer users are left out of that slice's fits (and of --metric "
    "<slice column>'s).",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Stop on checkpoints with a NaN/inf metric, or on an altered run (a config that no longer hashes to its run "
    "id), instead of leaving them out with a warning.",
)
@click.option("--json", "as_json", is_flag=True, help="Print laws.json to stdout as well.")
def fit_laws_command(
    runs_dirs,
    out,
    metric,
    direction,
    flops_column,
    points,
    n_column,
    bootstrap,
    huber_delta,
    seed,
    holdout_largest,
    holdout_by,
    by_column,
    holdout_flops_above,
    backtest,
    slices,
    min_slice_users,
    strict,
    as_json,
):
    """Fit the scaling laws to the checkpoints of one or more run stores (default: runs/).

    \b
    Fits, for a metric that rises (NDCG, HIT, MRR): the compute-optimal envelope with the saturating law (SRT
    paper Eq. 3) and a linear one; the law m(N, T) = E - A/N^alpha - B/T^beta (Eq. 4) and its candidates (depth,
    repetition, schedule, negatives terms; k N^a T^b without a ceiling), the backtest choosing among them; N*(C)
    and T*(C) power laws along the envelope; loss laws on valid_loss beside; per evaluation slice, Eq. 3 and 4.
    For a metric that falls (a loss, perplexity, bits per byte, an error rate): the lower envelope with Eq. 3
    mirrored, L(N, T) = E + A/N^alpha + B/T^beta (Huber on log residuals) with the same candidates, and
    L(N) = E + (N0/N)^alpha. A law the runs cannot fit is left out; a fit that failed (a parameter at a bound,
    an exponent outside its own interval, no move from its start) is reported without numbers.
    Writes OUT/laws.json, OUT/report.md and OUT/figures/*.png.
    """
    from dataclasses import replace

    from ..analysis.fit_laws import FitOptions, fit_laws
    from ..analysis.report import write_analysis
    from ..metric_direction import infer_direction
    from ..store.imported import recorded_metric
    from ..store.runstore import AlteredRunWarning, read_checkpoints

    stores = runs_dirs or ("runs",)
    with warnings.catch_warnings():  # an altered run is named in the output's warnings below
        warnings.simplefilter("ignore", AlteredRunWarning)
        checkpoints = read_checkpoints(*stores, strict=strict)
    altered = checkpoints.attrs.get("altered", {})
    checkpoints = cooldowns_as_runs(checkpoints)  # hold-outs and families see each branch as the run it stands for
    # what an import-table store recorded (its configs are read only when the metric or its direction is unknown)
    if metric is None:
        recorded = recorded_metric(stores) if "valid_ndcg_at_5" not in checkpoints else None
        metric = recorded[0] if recorded else "valid_ndcg_at_5"
    if direction is None and infer_direction(metric) is None:
        recorded = recorded_metric(stores)
        direction = recorded[1] if recorded and recorded[0] == metric else None
    options = FitOptions(
        metric=metric,
        flops=flops_column,
        points=points,
        n_column=n_column,
        bootstrap=bootstrap,
        huber_delta=huber_delta,
        seed=seed,
        backtest=backtest,
        slices=slices,
        min_slice_users=min_slice_users,
        direction=direction,
    )
    data = fit_laws(checkpoints, options, progress=show_progress(as_json), strict=strict)
    options = replace(options, direction=data["options"]["direction"])  # as fit_laws resolved it
    if by_column in ("N", "C") and holdout_largest:  # the hold-out axis, as --by meant before families
        holdout_by, by_column = by_column, None
    if by_column:
        from ..analysis.families import fit_families

        data["by"] = fit_families(checkpoints, options, by_column, lambda rows, o: fit_laws(rows, o, strict=strict))
    data["data"]["altered_runs_left_out"] = altered
    data["warnings"][:0] = [f"run {run_id} left out: altered: {why}" for run_id, why in altered.items()]
    if holdout_largest or holdout_flops_above:
        from ..analysis.holdout import holdout_flops_above as above
        from ..analysis.holdout import holdout_largest as largest

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
    click.echo(
        f"{data['data']['runs']} runs, {data['data']['checkpoints']} checkpoints; {metric} is better "
        f"{options.direction}"
    )
    if data["data"]["dropped_non_finite_rows"]:
        click.echo(
            f"warning: {data['data']['dropped_non_finite_rows']} checkpoints with a NaN/inf {metric} were left out",
            err=True,
        )
    click.echo(
        "envelope  "
        + _law_line(
            data,
            "saturating",
            metric,
            lambda p: (
                (
                    f"{metric}(C) = {p['a']:.4g} / (1 + exp(-{p['b']:.4g} (ln C - {p['c']:.4g}))) {-p['d']:+.4g}"
                    if laws["saturating"]["law"] == "saturating"
                    else f"{metric}(C) = {p['d']:.4g} - {p['a']:.4g} / (1 + exp(-{p['b']:.4g} (ln C - {p['c']:.4g})))"
                )
                + f"   asymptote {extra['asymptote']:.4g}"
            ),
        )
    )
    sign = "+" if options.direction == "lower" else "-"
    click.echo(
        "N,T law   "
        + _law_line(
            data,
            "risk",
            metric,
            lambda p: (
                f"{metric} = {p['E']:.4g} {sign} {p['A']:.4g}/N^{p['alpha']:.3g} {sign} {p['B']:.4g}/T^{p['beta']:.3g}"
            ),
        )
    )
    if "n_opt" in laws and "t_opt" in laws:
        click.echo(
            f"optimal   N* ∝ C^{laws['n_opt']['params']['exponent']:.3g}, "
            f"T* ∝ C^{laws['t_opt']['params']['exponent']:.3g}"
        )
    selected = (data.get("backtest") or {}).get("selection") or {}
    if selected:
        click.echo(
            f"predict   answers --N/--T with the N,T law {selected['selected']}"
            if selected.get("selected")
            else f"predict   has no N,T law to answer with: {selected['why']}"
        )
    for kind, check in data.get("holdout", {}).items():
        for law in ("risk_law", "loss_n_law", "envelope_law"):
            if (check.get(law) or {}).get("refused"):
                click.echo(f"held out ({kind}) {law.replace('_', ' ')}: no prediction, {check[law]['refused']}")
            elif check.get(law):
                c = check[law]
                coverage = "–" if c["coverage_90"] is None else f"{c['coverage_90']:.0%}"
                click.echo(
                    f"held out ({kind}) {law.replace('_', ' ')}: {c['n']} points, MAE {c['mae']:.4f}, "
                    f"MAPE {c['mape']:.1%}, inside the 90% interval {coverage} ({c['interval']})"
                    if c["mape"] is not None
                    else f"held out ({kind}) {law}: {c['n']} points, MAE {c['mae']:.4f}"
                )
    for name, entry in ((data.get("backtest") or {}).get("laws") or {}).items():
        if entry.get("n"):
            cal = entry["calibration"]
            click.echo(
                f"backtest  {name}: {entry['n']} held-out points, MAE {entry['mae']:.4f}, "
                + (f"MAPE {entry['mape']:.1%}, " if entry["mape"] is not None else "")
                + (
                    f"inside the calibrated 90% interval {entry['coverage_calibrated_cv']:.0%} (cross-validated)"
                    if cal["calibrated"]
                    else f"not calibrated: {cal['why']}"
                )
            )
    for row in data.get("slices", []):
        click.echo(
            f"slice     {row['slice']:<16} "
            + (
                f"left out: {row['left_out']}"
                if row["left_out"]
                else f"users {'all' if row['slice'] == 'all' else row['users']}, "
                + ", ".join(
                    f"{p} failed"
                    if row[p] is None
                    else f"{p} {row[p]:.3g} [{row[p + '_interval_90'][0]:.3g}, {row[p + '_interval_90'][1]:.3g}]"
                    for p in ("alpha", "beta", "b")
                )
                + (" (flagged: see the warnings)" if row.get("flags") else "")
            )
        )
    for name, law in laws.items():
        for flag in law["flags"]:
            click.echo(f"warning: {name}: {flag}", err=True)
    for name, why in (data.get("not_fitted") or {}).items():
        click.echo(f"warning: {name} not fitted: {why}", err=True)
    for row in data.get("slices", []):  # the "all" row's flags are the main laws', printed just above
        if row["slice"] != "all" and row.get("flags"):
            click.echo(f"warning: slice {row['slice']}: {'; '.join(row['flags'])}", err=True)
    for warning in data["warnings"]:
        click.echo(f"warning: {warning}", err=True)
    if data.get("by"):
        _print_families(data["by"])
    click.echo(
        f"wrote {paths['laws']}, {paths['report']} and {len([k for k in paths if k.startswith('figure')])} "
        f"figures in {Path(out) / 'figures'}"
    )


def _read_laws(path: str, family: str | None) -> dict:
    """laws.json, checked; with `family`, that family's laws from a file `fit-laws --by` wrote."""
    from ..analysis.families import family_laws
    from ..analysis.predict import load_laws

    data = load_laws(path)
    return family_laws(data, family) if family else data


def _print_families(by: dict) -> None:
    """One line per family (its exponents with intervals), one per pair compared, one per family left out."""
    from ..analysis.families import EXPONENT_COLUMNS, crossover_text, exponent_cells

    for family, exps in by["comparison"]["exponents"].items():
        named = (f"{heading} {cell}" for heading, cell in zip(EXPONENT_COLUMNS.values(), exponent_cells(exps)))
        click.echo(f"{by['column']} = {family}: " + ", ".join(named))
    for pair in by["comparison"]["crossovers"]:
        click.echo(crossover_text(pair))
    for family, why in by["left_out"].items():
        click.echo(f"warning: {by['column']} = {family} left out: {why}", err=True)


def _law_line(data: dict, name: str, metric: str, text) -> str:
    """A law's one-line summary, or why it has none (not fitted, or failed: no number is printed)."""
    law = data["laws"].get(name)
    if law is None:
        return f"not fitted: {(data.get('not_fitted') or {}).get(name, 'nothing to fit')}"
    if law.get("status") == "failed":
        return f"failed, not used: {'; '.join(law['why'])}"
    return text(law["params"])


@main.command()
@click.option(
    "--N",
    "n",
    type=NUMBERS,
    help="Parameters (the N of laws.json: non-embedding by default); several values, comma-separated, give a table.",
)
@click.option("--T", "t", type=NUMBERS, help="Training interactions seen (targets); comma-separated for a table.")
@click.option("--flops", type=NUMBERS, help="Training budgets in FLOPs (the compute column of laws.json).")
@click.option(
    "--dataset-interactions",
    "d",
    type=NUMBER,
    help="Your data size D: with --flops, to get epochs; with "
    "--N/--T, the input of the repetition-aware law risk_repeat.",
)
@click.option(
    "--layers",
    type=click.IntRange(1),
    help="With --N/--T: transformer layers, the input of the shape-aware law risk_depth.",
)
@click.option(
    "--schedule-fraction",
    type=click.FloatRange(0, 1, min_open=True),
    help="With --N/--T: how much of "
    "the learning-rate schedule is done, the input of the schedule-aware law risk_schedule (default 1: a "
    "finished run).",
)
@click.option(
    "--negatives",
    type=click.IntRange(1),
    help="With --N/--T: sampled negatives per target (the catalog "
    "size for full softmax), the input of the law risk_negatives.",
)
@click.option(
    "--law",
    type=click.Choice([*NT_LAWS, "loss_n"]),
    help="With --N/--T: the N,T law to answer with "
    "(default: the one fit-laws' backtest selected; risk is the paper's Eq. 4, mirrored for a loss; "
    "power_nt is k N^a T^b). Naming a law whose fit failed forces an answer from it, with a warning. "
    "loss_n, for a loss: L(N) = E + (N0/N)^alpha of single-pass runs, with --N alone.",
)
@click.option(
    "--shapes",
    "shapes_path",
    type=click.Path(dir_okay=False),
    help="With --flops: the shapes you can "
    "train, TOML `shapes = [[n_layers, n_heads, hidden], ...]` (default: the runs' and the paper's Table 3).",
)
@click.option(
    "--laws",
    "laws_path",
    default="analysis/laws.json",
    show_default=True,
    type=click.Path(),
    help="The laws.json that `scalerec fit-laws` wrote.",
)
@click.option(
    "--family",
    help="Answer with one family's laws, from a laws.json that `fit-laws --by COLUMN` wrote (e.g. --family hstu).",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
def predict(n, t, flops, d, layers, schedule_fraction, negatives, law, shapes_path, laws_path, family, as_json):
    """What a run will reach (--N and --T), or what to train for a budget (--flops).

    \b
    Examples:
      scalerec predict --N 1e5 --T 2M
      scalerec predict --N 10K,50K,100K --T 1M,3M          (a table: every N with every T)
      scalerec predict --flops 1e15 --dataset-interactions 400K
    """
    from ..analysis.predict import predict_budget, predict_n, predict_nt
    from ..shapes import load_shape_catalog

    if law == "loss_n":
        if n is None or t is not None or flops is not None:
            raise click.UsageError("--law loss_n takes --N alone (the law of single-pass runs has no T)")
        data = _read_laws(laws_path, family)
        results = [predict_n(data, one_n) for one_n in n]
        if len(results) > 1:
            _prediction_table(results, as_json)
        elif as_json:
            click.echo(jsonio.dumps(results[0], indent=2))
        else:
            click.echo(
                f"{results[0]['metric']} at N = {format_number(n[0])}: {_with_ci(results[0]['prediction'])} (law L(N))"
            )
            _print_warnings(results[0])
        return
    if flops is None and (n is None or t is None):
        raise click.UsageError("give --N and --T, or --flops")
    if flops is not None and (n is not None or t is not None):
        raise click.UsageError("--flops cannot be combined with --N/--T")
    if shapes_path and flops is None:
        raise click.UsageError("--shapes goes with --flops")
    if flops is not None and (layers or law or schedule_fraction or negatives):
        raise click.UsageError("--layers, --schedule-fraction, --negatives and --law go with --N/--T")
    if shapes_path:
        load_shape_catalog(shapes_path)  # a bad shapes file is named before the laws are read
    data = _read_laws(laws_path, family)
    if shapes_path and data["data"].get("n_column", "non_embedding_params") != "non_embedding_params":
        raise ScalerecError(
            f"{laws_path} uses N = {data['data']['n_column']} (fit-laws --n-column total), but "
            "--shapes gives non-embedding N: refit with --n-column non_embedding, or leave out "
            "--shapes to choose among the runs' own shapes"
        )
    shapes = load_shape_catalog(shapes_path, data["data"].get("item_encoder", "text")) if shapes_path else None
    results = (
        [predict_budget(data, c, d, shapes) for c in flops]
        if flops is not None
        else [
            predict_nt(
                data,
                one_n,
                one_t,
                law=law,
                inputs={"layers": layers, "D": d, "schedule_fraction": schedule_fraction, "negatives": negatives},
            )
            for one_n in n
            for one_t in t
        ]
    )
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
        click.echo(
            f"{metric} at N = {format_number(n)}, T = {format_number(t)}: "
            f"{_with_ci(result['prediction'])} (N,T law {result['law']})"
        )
    else:
        alloc, risk_alloc, shape = result["envelope_allocation"], result["risk_law_allocation"], result["nearest_shape"]
        fixed = result.get("fixed_dataset") or {}
        data_limited = fixed.get("answer") in ("repeat", None) and "answer" in fixed
        click.echo(f"budget {flops:.3g} FLOPs")
        click.echo(f"  best {metric} (envelope law):  {_with_ci(result['best_metric'])}")
        if not data_limited:  # with too little data, the unconstrained T is no advice
            click.echo(
                f"  train N = {_with_ci(alloc['N'], big=True)} parameters on T = "
                f"{_with_ci(alloc['T'], big=True)} interactions (envelope power laws)"
            )
        if risk_alloc.get("metric") is not None and not data_limited:
            n_ci, t_ci = risk_alloc.get("N_interval_90"), risk_alloc.get("T_interval_90")
            click.echo(
                f"  the N,T law's optimum: N = {format_number(risk_alloc['N'])}"
                + (f" ({format_number(n_ci[0])}–{format_number(n_ci[1])})" if n_ci and None not in n_ci else "")
                + f", T = {format_number(risk_alloc['T'])}"
                + (f" ({format_number(t_ci[0])}–{format_number(t_ci[1])})" if t_ci and None not in t_ci else "")
                + f" -> {metric} {_with_ci(risk_alloc['metric_prediction'])}"
            )
        if shape and not data_limited:
            click.echo(
                f"  nearest shape: {shape['n_layers']} layers, {shape['n_heads']} heads, hidden "
                f"{shape['hidden']} (N = {format_number(shape['n'])}, {shape['source']})"
            )
        if "epochs" in result:
            click.echo(f"  epochs over {format_number(d)} interactions: {result['epochs']:.3g}")
        if fixed.get("answer") == "repeat":
            click.echo(
                f"  with D = {format_number(d)} fixed: train N = {format_number(fixed['N'])} for "
                f"{fixed['epochs']:.3g} epochs (T = {format_number(fixed['T'])}) -> {metric} "
                f"{_with_ci(fixed['metric'])}"
            )
            if fixed["repetition_cost"] is not None:
                click.echo(
                    f"  repeating costs {fixed['repetition_cost']:.4g} {metric} against the same run on fresh "
                    f"data ({fixed['metric_on_fresh_data']:.4f}); a further epoch at this N (more compute) "
                    f"would gain {fixed['next_epoch_gain']:.3g}; epochs past "
                    f"{fixed['epochs_worth_paying']:.3g} are worth less than 10% of fresh data"
                )
        elif fixed.get("answer") is None and fixed:
            click.echo(f"  with D = {format_number(d)} fixed: {fixed['why']}")
            if fixed.get("one_pass"):
                click.echo(f"  one pass over D: N = {format_number(fixed['one_pass']['N'])}, T = {format_number(d)}")
        for refusal in result.get("refusals", []):
            click.echo(f"  no answer: {refusal}")
    _print_warnings(result)


def _print_warnings(result: dict) -> None:
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
            rows.append(
                {
                    "flops": f"{r['flops']:.3g}",
                    r["metric"]: _with_ci(r["best_metric"]),
                    "N": _with_ci(r["envelope_allocation"]["N"], big=True).split(" (")[0],
                    "T": _with_ci(r["envelope_allocation"]["T"], big=True).split(" (")[0],
                    "shape": "{n_layers}x{n_heads}x{hidden}".format(**r["nearest_shape"])
                    if r["nearest_shape"]
                    else "-",
                    **({"epochs": f"{r['epochs']:.3g}"} if "epochs" in r else {}),
                }
            )
        else:
            rows.append(
                {
                    "N": format_number(r["N"]),
                    **({"T": format_number(r["T"])} if "T" in r else {}),
                    r["metric"]: _with_ci(r["prediction"]),
                }
            )
    emit(rows, False, f"{len(rows)} predictions")
    for warning in dict.fromkeys(w for r in results for w in r["warnings"]):
        click.echo(f"warning: {warning}", err=True)
    for law, flags in results[0]["flags"].items():
        for flag in flags:
            click.echo(f"warning: the {law} fit is flagged: {flag}", err=True)


def _with_ci(entry: dict, big: bool = False) -> str:
    """A predicted value with its 90% interval, or why there is none (out of what the quantity can be)."""
    show = format_number if big else (lambda v: f"{v:.4f}")
    if entry.get("refused"):
        return "none (see below)"
    if entry["value"] is None:
        return f"none (the law gives {show(entry['law_value'])}, out of range)"
    text = show(entry["value"])
    if entry.get("interval_90"):
        low, high = entry["interval_90"]
        how = entry.get("calibration") or {}
        how = (
            f", calibrated on {how['backtest_points']} backtest points"
            if "backtest_points" in how
            else ", bootstrap only: not calibrated"
            if how
            else ""
        )
        text += f" (90% interval {show(low)}–{show(high)}{', clipped' if entry.get('interval_clipped') else ''}{how})"
    return text
