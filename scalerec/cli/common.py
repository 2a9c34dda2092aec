"""What the commands share: number types, the --device and stale-run options, progress, tables."""

from __future__ import annotations

import click

from .. import jsonio
from ..errors import ScalerecError
from ..numbers import format_number, parse_number


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
    return click.option(
        "--device",
        default="auto",
        show_default=True,
        metavar="DEVICE",
        help="auto (CUDA when present), cpu, cuda, cuda:N or mps; a device this machine does not "
        "have stops the command before anything is written.",
    )(command)


def grid_data_option(command):
    """--data: a grid trained (or planned) on prepared data instead of its spec's."""
    return click.option(
        "--data",
        "data_dir",
        type=click.Path(exists=True, file_okay=False),
        help="Train on prepared data instead: one dataset, or a ladder of them (scalerec data subsample), replacing "
        "the spec's data.",
    )(command)


def grid_configs(spec: str | None, preset: str | None, data_dir: str | None) -> tuple[list, str]:
    """The run configs of a grid spec file or preset (on `data_dir` when given) and a name for messages."""
    from ..grid.spec import expand, load_spec, with_data

    mapping, where = load_spec(spec, preset)
    if data_dir:
        mapping, where = with_data(mapping, data_dir), f"{where} on {data_dir}"
    return expand(mapping, where), where


def check_device(device: str, here: bool = True) -> None:
    from ..train.trainer import resolve_device

    resolve_device(device, here=here)


def stale_options(command):
    """--accept-stale / --retrain-stale: what to do with runs made by code of other training semantics."""
    command = click.option(
        "--retrain-stale",
        is_flag=True,
        help="Train such runs anew; their old folders are moved to RUNS/.stale/ (nothing is deleted).",
    )(command)
    return click.option(
        "--accept-stale",
        is_flag=True,
        help="Keep runs that code of other training semantics made "
        "(skip the finished ones, resume the others with this code); without it such runs stop the "
        "command. `scalerec runs` shows each run's semantics.",
    )(command)


def stale_policy(accept_stale: bool, retrain_stale: bool) -> str:
    if accept_stale and retrain_stale:
        raise click.UsageError("--accept-stale and --retrain-stale exclude each other")
    return "accept" if accept_stale else "retrain" if retrain_stale else "refuse"


def show_progress(as_json: bool = False) -> bool:
    """Whether the running command draws progress bars (see --progress/--quiet); never with --json."""
    return click.get_current_context().find_root().obj["progress"] and not as_json


def emit(rows: list[dict], as_json: bool, title: str) -> None:
    if as_json:
        click.echo(jsonio.dumps(rows, indent=2))
        return
    click.echo(title)
    if not rows:
        return
    columns = list(dict.fromkeys(k for r in rows for k in r))
    cells = [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths)))


def cell(value) -> str:
    if isinstance(value, float) and abs(value) >= 1e4:
        return format_number(value)
    return str(value)
