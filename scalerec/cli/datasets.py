"""Data commands: import-table, import-mlflow and the data group (prepare, stats, subsample)."""

from __future__ import annotations

import click

from .. import jsonio
from .common import emit, show_progress
from .group import main


@main.command("import-mlflow")
@click.argument("source")
@click.option(
    "--mapping",
    default="srt",
    show_default=True,
    help="Which MLflow params/metrics give which run-store columns: a built-in name or a TOML file.",
)
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
    from ..store.mlflow_import import import_mlflow
    from ..store.mlflow_mapping import load_mapping

    summaries = import_mlflow(source, load_mapping(mapping), out, tuple(experiments))
    emit(summaries, as_json, f"imported {len(summaries)} MLflow runs into {out}")


@main.command("import-table")
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--out", default="runs", show_default=True, type=click.Path(file_okay=False), help="Run store to write.")
@click.option(
    "--mapping",
    "mapping_path",
    type=click.Path(dir_okay=False),
    help="A TOML file: [columns] N = ..., "
    'T = ..., metric = ... (and run, step, D, flops, layers), optionally direction = "lower". Flags given '
    "beside it override it.",
)
@click.option("--N", "n", help="Column of the parameter count N.")
@click.option("--T", "t", help="Column of the training data seen T (interactions, tokens, samples).")
@click.option("--metric", help="Column of the metric to fit (any numeric column; the others come along too).")
@click.option(
    "--run", help="Column whose value names a run: its rows are that run's checkpoints [default: each row is a run]."
)
@click.option("--step", help="Column ordering a run's rows [default: T].")
@click.option("--D", "d", help="Column of the unique data a run trains on [default: the run's largest T, seen once].")
@click.option("--flops", help="Column of training compute C [default: C = 6 N T].")
@click.option("--layers", help="Column of the layer count (the depth-aware candidate law reads it).")
@click.option(
    "--lower-is-better",
    "direction",
    flag_value="lower",
    help="The metric improves as it falls [default: "
    "from its name: loss, ppl, perplexity, bpb, error, ... fall; ndcg, hit, recall, accuracy, ... rise].",
)
@click.option("--higher-is-better", "direction", flag_value="higher", help="The metric improves as it rises.")
@click.option("--strict", is_flag=True, help="Stop on a row with an empty (NaN) metric instead of leaving it out.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
def import_table_command(
    files, out, mapping_path, n, t, metric, run, step, d, flops, layers, direction, strict, as_json
):
    """Import runs from tables (CSV, TSV, Parquet, JSON lines; .gz too) into a run store that fit-laws, predict and
    runs read like a trained one.

    \b
    One checkpoint per row; rows with the same --run value are one run, ordered by --step (or T).
    Imported runs are marked as such in their config.json (no training provenance).
      scalerec import-table runs.csv --N params --T tokens --metric val_loss --out runs-llm
      scalerec fit-laws runs-llm --out analysis-llm
      scalerec predict --laws analysis-llm/laws.json --N 1e9 --T 2e10
    """
    from ..errors import ScalerecError
    from ..store.imported import TableMapping, import_table

    flags = {
        "N": n,
        "T": t,
        "metric": metric,
        "run": run,
        "step": step,
        "D": d,
        "flops": flops,
        "layers": layers,
        "direction": direction,
    }
    if mapping_path:
        mapping = TableMapping.from_toml(mapping_path, **flags)
    else:
        missing = [f"--{k}" for k in ("N", "T", "metric") if not flags[k]]
        if missing:
            raise ScalerecError(f"import-table needs {', '.join(missing)} (or --mapping FILE)")
        mapping = TableMapping(**{k: v for k, v in flags.items() if v is not None})
    if not files:
        raise click.UsageError("give at least one table file")
    summary = import_table(list(files), mapping, out, strict)
    if as_json:
        click.echo(jsonio.dumps(summary, indent=2))
        return
    click.echo(
        f"imported {summary['runs']} runs ({summary['checkpoints']} checkpoints) into {out}; metric "
        f"{summary['metric']} (better {summary['direction']}); {summary['flops_convention']}"
    )
    if summary["left_out_nan_metric"]:
        click.echo(
            f"warning: {summary['left_out_nan_metric']} rows with an empty {summary['metric']} were left out", err=True
        )


@main.group()
def data():
    """Prepare real datasets: raw files -> a prepared directory -> a nested ladder of sizes.

    \b
      scalerec data prepare reviews_Beauty_5.json.gz --meta meta_Beauty.json.gz --format amazon2014 --out data/beauty
      scalerec data prepare DIR --format beauty --out data/beauty   (the 5-core Beauty files in DIR)
      scalerec data stats data/beauty
      scalerec data subsample data/beauty --interactions 20K,50K,100K --out data/beauty-ladder
    A run or grid names a prepared directory with [data] name = "prepared", path = "DIR".
    """


def _stats_row(directory, info: dict) -> dict:
    stats = info["stats"]
    q = stats["seq_len_quantiles"]
    return {
        "dataset": str(directory),
        "users": stats["users"],
        "items": stats["items"],
        "interactions": stats["interactions"],
        "seq_mean": round(stats["seq_len_mean"], 2),
        "seq_p50": q["p50"],
        "seq_p90": q["p90"],
        "seq_max": q["max"],
        "gini": round(stats["item_popularity_gini"], 3),
        "fingerprint": info["fingerprint"],
    }


@data.command("prepare")
@click.argument("source", type=click.Path())
@click.option(
    "--format",
    "fmt",
    required=True,
    type=click.Choice(["amazon2014", "amazon2018", "recbole", "table", "beauty"]),
    help="amazon2014/2018: reviews JSON lines (+ --meta); recbole: a .inter file or its directory; "
    "table: CSV/TSV/Parquet with --user/--item/--time/--text; beauty: the shared 5-core Beauty "
    "(SOURCE = its directory, or the word beauty for $SCALEREC_BEAUTY).",
)
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
    from ..data.datasets import prepare_dataset
    from ..data.prepare import dataset_info
    from ..data.tabular import ColumnMapping

    mapping = ColumnMapping(user, item, time, tuple(c for c in text.split(",") if c))
    _, report = prepare_dataset(
        source,
        fmt,
        out,
        name=name,
        kcore=kcore,
        force=force,
        meta=meta,
        items=items,
        mapping=mapping,
        skip_bad_lines=skip_bad_lines,
        progress=show_progress(as_json),
    )
    info = dataset_info(out)
    if as_json:
        click.echo(jsonio.dumps(info, indent=2))
        return
    for step in report["cleaning"]:
        click.echo("  " + ", ".join(f"{k} {v}" for k, v in step.items() if k != "step") + f"  <- {step['step']}")
    if report["bad_lines"]["skipped_lines"]:
        click.echo(f"  skipped {report['bad_lines']['skipped_lines']} bad lines: {report['bad_lines']['by_reason']}")
    emit([_stats_row(out, info)], False, f"wrote {out}")


@data.command("stats")
@click.argument("directories", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
def data_stats(directories, as_json):
    """Statistics of prepared datasets: users, items, interactions, sequence lengths, popularity Gini."""
    from ..data.prepare import dataset_info

    infos = [dataset_info(d) for d in directories]
    if as_json:
        click.echo(jsonio.dumps([{"dataset": d, **i["stats"]} for d, i in zip(directories, infos)], indent=2))
        return
    emit([_stats_row(d, i) for d, i in zip(directories, infos)], False, f"{len(infos)} datasets")


@data.command("subsample")
@click.argument("directory", type=click.Path(file_okay=False))
@click.option(
    "--interactions",
    "targets",
    required=True,
    help="Target interaction counts, comma-separated: 80K,400K,800K; `all` adds the whole dataset as "
    "OUT/all/ (the top rung of a grid's ladder).",
)
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Writes OUT/<target>/ per subset.")
@click.option("--seed", default=0, show_default=True, help="Seed of the user order.")
@click.option("--force", is_flag=True, help="Replace subsets that exist.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output on stdout.")
def data_subsample(directory, targets, out, seed, force, as_json):
    """Nested user-sampled subsets of a prepared dataset (each smaller one inside the larger), one per target."""
    from ..data.prepare import dataset_info
    from ..data.subsample import parse_targets, write_ladder

    wanted = parse_targets(targets)
    rows = [_stats_row(path, dataset_info(path)) for path in write_ladder(directory, wanted, out, seed, force)]
    if "all" not in wanted:  # for comparison: the whole dataset the subsets come from
        rows.append(_stats_row(directory, dataset_info(directory)) | {"dataset": f"{directory} (all)"})
    if as_json:
        click.echo(jsonio.dumps(rows, indent=2))
        return
    emit(rows, False, f"{len(wanted)} nested subsets of {directory} (seed {seed})")
