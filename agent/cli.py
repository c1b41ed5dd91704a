"""``roadside agent``: run the box, check it, and (later stages) its recordings."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from roadside.agent.config import load_config

_config_option = click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Agent config file (TOML), e.g. /etc/roadside/agent.toml.",
)


@click.group()
def agent() -> None:
    """The on-box agent: run, check."""


@agent.command()
@_config_option
@click.option("--duration", type=click.FloatRange(min=0), default=None,
              help="Stop after this many seconds (default: until SIGINT/SIGTERM).")
def run(config_path: Path, duration: float | None) -> None:
    """Run the pipeline; events go to the configured sinks (JSON lines on stdout by default)."""
    from roadside.agent.app import Agent

    cfg = load_config(config_path)
    stats = Agent(cfg).run(duration)
    click.echo(
        f"stopped: {stats.frames} frames, {stats.detections_run} detector runs, "
        f"{stats.events} event messages",
        err=True,
    )


@agent.command()
@_config_option
def check(config_path: Path) -> None:
    """Validate the config, open the source, load the model, run one inference."""
    from roadside.agent.checks import run_checks

    results = run_checks(config_path)
    table = Table(title=f"roadside agent check: {config_path}")
    for col in ("check", "result", "detail"):
        table.add_column(col)
    for r in results:
        table.add_row(r.name, "[green]pass[/]" if r.ok else "[red]FAIL[/]", r.detail)
    Console(file=sys.stdout).print(table)
    if not all(r.ok for r in results):
        sys.exit(1)
