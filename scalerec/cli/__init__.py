"""The `scalerec` command: one thin Click command per verb over importable functions (DESIGN §7).

common.py holds what commands share, group.py the group, and training.py, analysis.py, datasets.py the
commands; `run` is the console entry point with its one-line errors."""

from __future__ import annotations

import sys

import click

from ..errors import ScalerecError
from . import analysis, configs, datasets, planning, training  # noqa: F401  (registers the commands on the group)
from .group import main

__all__ = ["main", "run"]


def run(argv: list[str] | None = None) -> None:
    """Console entry point. Every error is one line on stderr, `scalerec: error: ...`: exit 2 for usage errors,
    1 for the rest, 130 when interrupted. An exception scalerec did not foresee is an internal error, still one
    line; --debug shows the traceback instead."""
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    try:
        code = main.main(argv, prog_name="scalerec", standalone_mode=False)
        if isinstance(code, int) and code:  # ctx.exit(code): without standalone mode Click returns it
            sys.exit(code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:  # Click's form of Ctrl-C
        _fail("interrupted (rerun the same command to resume)", 130)
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
