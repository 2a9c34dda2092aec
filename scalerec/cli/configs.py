"""`scalerec config show`: what a run does, resolved."""

from __future__ import annotations

import click

from .. import jsonio
from .group import main


@main.group()
def config():
    """Inspect run configs: what a run does once recipes, defaults and normalisations are applied."""


@config.command("show")
@click.argument("target")
@click.option(
    "--runs", "runs_dir", default="runs", show_default=True, help="Run store in which TARGET may be a run id."
)
@click.option("--changed", is_flag=True, help="Only the fields that differ from scalerec's defaults.")
@click.option("--json", "as_json", is_flag=True, help="The resolved config, its run id and notes as JSON.")
def show(target: str, runs_dir: str, changed: bool, as_json: bool) -> None:
    """Print the resolved config of TARGET (a run config TOML, a run folder, or a run id in --runs) as the TOML
    that `scalerec train` would run, headed by its run id.

    \b
      scalerec config show my_run.toml
      scalerec config show 618e5ca8bc6a --runs runs --changed
    """
    from ..config_view import config_toml, differences, normalised, resolve_target

    cfg, written, where = resolve_target(target, runs_dir)
    notes = normalised(cfg, written)
    if as_json:
        config = differences(cfg) if changed else cfg.to_dict()
        click.echo(
            jsonio.dumps({"source": where, "run_id": cfg.run_id, "config": config, "normalised": notes}, indent=2)
        )
        return
    click.echo(f"# {where}: run id {cfg.run_id}")
    if changed:
        click.echo(
            "# only the fields that differ from scalerec's defaults (scalerec config show without --changed: all)"
        )
    for note in notes:
        click.echo(f"# normalised: {note}")
    click.echo(config_toml(cfg, only_changed=changed), nl=False)
