"""The `scalerec` group: global options (--debug, --progress/--quiet, --version)."""

from __future__ import annotations

import sys

import click

from .. import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="scalerec")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.option(
    "--progress/--quiet",
    default=None,
    help="Force progress bars on (--progress) or off (--quiet); by "
    "default they are drawn only when stderr is a terminal (never into a redirected log), and never with "
    "--json.",
)
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
