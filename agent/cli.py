"""``roadside agent``: run the box, check it, and (later stages) its recordings."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from roadside import logs
from roadside.agent.cli_options import config_option
from roadside.cli_base import LazyGroup
from roadside.config.agent import load_config
from roadside.errors import ExitCode

log = logging.getLogger(__name__)


@click.group(
    cls=LazyGroup,
    lazy={
        "recordings": "roadside.agent.recording.cli:recordings",
        "clip": "roadside.agent.recording.cli:clip",
    },
)
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
    """Run the pipeline; events go to the configured sinks (JSON lines on stdout by default).

    Exits with 75 when it must be started again to apply (or undo) a config change from the
    station or a release; systemd starts it again (docs/fleet.md)."""
    from roadside.agent.assembly import assemble
    from roadside.agent.fleet.local import LocalConfig

    local = LocalConfig(config_path)
    local.at_start()  # a config change an earlier run left: count, finish or undo it
    cfg = load_config(config_path)
    logs.apply(cfg.logging)
    log.info(
        "starting %s: source %s, model %s, events to %s, recording %s",
        cfg.device,
        cfg.source.kind,
        cfg.detector.model,
        ", ".join(cfg.events.sinks) or "nowhere",
        cfg.recording.mode,
    )
    try:
        agent = assemble(cfg, local)
        stats = agent.run(duration)
    except Exception as exc:
        if not local.trying:
            raise
        log.exception("the agent failed with the config on trial")
        local.roll_back(f"the agent failed with it: {exc}")
        sys.exit(ExitCode.RESTART)
    click.echo(
        f"{logs.line_prefix(logging.INFO)}stopped: {stats.frames} frames, "
        f"{agent.pipeline.feed.dropped} dropped while detection was behind, "
        f"{stats.detections_run} detector runs, "
        f"{stats.events} event messages",
        err=True,
    )
    if agent.restart_asked:  # a config change or a release to apply or undo
        sys.exit(ExitCode.RESTART)  # systemd starts the agent again


@agent.command("update-guard")
@config_option
def update_guard(config_path: Path) -> None:
    """systemd's ExecStartPre, from the stable slot: count the starts of a release on trial,
    roll it back when it has had its chances. Never fails the start."""
    from roadside.agent.update.service import UPDATE_DIR
    from roadside.agent.update.slots import Slots
    from roadside.agent.update.trial import TrialBook, guard

    cfg = load_config(config_path)
    logs.apply(cfg.logging)
    book = TrialBook(Path(cfg.data_dir) / UPDATE_DIR)
    try:
        said = guard(Slots(cfg.update.root), book, cfg.update.max_starts)
    except OSError as exc:
        said = f"cannot look at the release slots: {exc}"
    log.warning("update guard: %s", said)


@agent.command("update-exited")
@config_option
def update_exited(config_path: Path) -> None:
    """systemd's ExecStopPost, from the stable slot: note how a release on trial ended."""
    import os

    from roadside.agent.update.service import UPDATE_DIR
    from roadside.agent.update.trial import TrialBook, note_exit

    cfg = load_config(config_path)
    logs.apply(cfg.logging)
    said = note_exit(TrialBook(Path(cfg.data_dir) / UPDATE_DIR), dict(os.environ))
    if said:
        log.warning("release on trial: the agent %s", said)


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
        sys.exit(ExitCode.FAILED)


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
        sys.exit(ExitCode.FAILED)
