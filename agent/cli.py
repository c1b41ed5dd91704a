"""``roadside agent``: run the box, check it, and (later stages) its recordings."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from roadside.agent.cli_options import config_option
from roadside.agent.config import load_config


@click.group()
def agent() -> None:
    """The on-box agent: run, check."""


@agent.command()
@config_option
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    default=None,
    help="Stop after this many seconds (default: until SIGINT/SIGTERM).",
)
def run(config_path: Path, duration: float | None) -> None:
    """Run the pipeline; events go to the configured sinks (JSON lines on stdout by default)."""
    from roadside.agent.app import Agent

    cfg = load_config(config_path)
    box = Agent(cfg)
    stats = box.run(duration)
    click.echo(
        f"stopped: {stats.frames} frames, {box.pipeline.feed.dropped} dropped while detection "
        f"was behind, {stats.detections_run} detector runs, {stats.events} event messages",
        err=True,
    )


@agent.command()
@config_option
def check(config_path: Path) -> None:
    """Validate the config, open the source, load the model, run one inference."""
    from roadside.agent.checks import run_checks

    results = run_checks(config_path)
    table = Table(title=f"roadside agent check: {config_path}")
    for col in ("check", "result", "detail"):
        table.add_column(col)
    for r in results:
        verdict = "[red]FAIL[/]" if not r.ok else "[yellow]warn[/]" if r.warn else "[green]pass[/]"
        table.add_row(r.name, verdict, r.detail)
    Console(file=sys.stdout).print(table)
    if not all(r.ok for r in results):
        sys.exit(1)


@agent.command()
@config_option
@click.argument(
    "path", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Give up waiting after this many seconds (the upload resumes next time).",
)
def upload(config_path: Path, path: Path | None, timeout: float | None) -> None:
    """Send PATH to the station over the resumable transfer; with no PATH, finish the uploads
    an earlier run or the agent left unfinished."""
    from roadside.agent.transfer.upload import upload as run_upload

    cfg = load_config(config_path)
    ended = run_upload(cfg, path, timeout)
    for rec in ended:
        outcome = "done" if rec.state == "done" else f"failed: {rec.code}: {rec.msg}"
        click.echo(f"{rec.xid} {rec.name} {rec.size} bytes sha256 {rec.sha256}: {outcome}")
    if not ended or any(rec.state != "done" for rec in ended):
        sys.exit(2)


def _add_recording_commands() -> None:
    from roadside.agent.recording.cli import clip, recordings

    agent.add_command(recordings)
    agent.add_command(clip)


_add_recording_commands()
