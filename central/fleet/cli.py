"""``roadside fleet``: see and change what every box runs, from the station.

``fleet status`` lists every box: online, its software version and update state, its config
(reported against desired) and the last error. ``fleet config get|set`` reads and changes a
box's config (docs/fleet.md). ``fleet update VERSION`` sends the signed release
``<data_dir>/releases/roadside-VERSION.release`` (made by ``roadside provision release --out
<data_dir>/releases``) to the boxes named, a canary group first, and waits until each has its
final word. Every command reads the central config and runs under an officer's account
(``--officer NAME`` or $ROADSIDE_OFFICER): ``status`` needs a viewer, ``config get`` an
investigator, ``config set`` and ``update`` an admin; each is audited.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from roadside.central import views
from roadside.central.accounts import Role
from roadside.central.cli import (
    DURATION,
    config_option,
    json_option,
    officer_account,
    officer_option,
    open_store,
)
from roadside.central.store import Store
from roadside.config.document import to_toml
from roadside.errors import ExitCode, UsageError

VIEW_SETTLE_S = 2.0  # retained messages of every box arrive within this after subscribing


@click.group("fleet")
def fleet() -> None:
    """Every box: status, config get/set, software updates."""


def _release_file(data_dir: str, version: str, given: Path | None) -> Path:
    path = given or Path(data_dir) / "releases" / f"roadside-{version}.release"
    if not path.is_file():
        raise UsageError(
            f"no release file {path}: make it with `roadside provision release --out "
            f"{Path(data_dir) / 'releases'}`"
        )
    return path


def _known_devices(store: Store) -> list[str]:
    from roadside.central.store import queries

    with store.connect() as conn:
        return [row["device"] for row in queries.devices(conn)]


@fleet.command("update")
@click.argument("version")
@click.option("--devices", "devices", default=None, help="Comma-separated boxes to update.")
@click.option("--all", "everyone", is_flag=True, help="Every box the station knows.")
@click.option(
    "--canary",
    type=click.IntRange(0, 1000),
    default=0,
    show_default=True,
    help="Update this many boxes first; the rest only when all of them are healthy.",
)
@click.option(
    "--release",
    "release_path",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The release file (default <data_dir>/releases/roadside-VERSION.release).",
)
@click.option("--kbps", type=click.FloatRange(min=0), default=0.0, help="Cap per box, kbit/s.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=1),
    default=6 * 3600.0,
    show_default=True,
    help="Seconds a wave may take (download, install, health) before its boxes count as timed out.",
)
@config_option
@officer_option
@json_option
def update_cmd(
    version: str,
    devices: str | None,
    everyone: bool,
    canary: int,
    release_path: Path | None,
    kbps: float,
    timeout: float,
    config_path: Path | None,
    officer: str | None,
    as_json: bool,
) -> None:
    """Roll release VERSION out: download, install, restart, health check, or rollback."""
    from roadside.central.fleet.rollout import FleetView, Rollout
    from roadside.central.fleet.sender import ReleaseSender, SendSettings

    if bool(devices) == everyone:
        raise UsageError("name the boxes: --devices a,b,... or --all")
    cfg, store = open_store(config_path)
    who = officer_account(store, officer, Role.ADMIN)
    path = _release_file(cfg.data_dir, version, release_path)
    targets = [d.strip() for d in devices.split(",") if d.strip()] if devices else []
    if everyone:
        targets = _known_devices(store)
    if not targets:
        store.close()
        raise UsageError("no boxes to update")
    view = FleetView(cfg.broker).start()
    sender = ReleaseSender(cfg.broker, SendSettings(kbps=kbps)).start()
    try:
        time.sleep(VIEW_SETTLE_S)
        rollout = Rollout(
            sender,
            view,
            path,
            version,
            targets,
            canary,
            timeout,
            progress=lambda line: click.echo(line, err=True),
        )
        results = rollout.run()
    finally:
        sender.stop()
        view.stop()
    summary = {d: {"state": r.state, "detail": r.detail} for d, r in results.items()}
    store.audit.record(
        who, "fleet update", {"version": version, "devices": targets, "canary": canary}, summary
    )
    store.close()
    if as_json:
        views.print_json(summary)
    else:
        for device, r in results.items():
            click.echo(f"{device}: {r.state}" + (f" ({r.detail})" if r.detail else ""))
    if any(r.state != "healthy" for r in results.values()):
        sys.exit(ExitCode.FAILED)


@fleet.command("status")
@config_option
@officer_option
@json_option
def status_cmd(config_path: Path | None, officer: str | None, as_json: bool) -> None:
    """Every box: online, software version and update, config reported against desired,
    how the last change ended."""
    from roadside.central.fleet.rollout import FleetView
    from roadside.central.fleet.status import fleet_json, fleet_rows, fleet_table, with_updates

    cfg, store = open_store(config_path)
    who = officer_account(store, officer, Role.VIEWER)
    with store.connect() as conn:
        rows = fleet_rows(conn)
    view = FleetView(cfg.broker).start()
    try:
        time.sleep(VIEW_SETTLE_S)
    finally:
        view.stop()
    rows = with_updates(rows, view)
    store.audit.record(who, "fleet status", {}, {"rows": len(rows)})
    store.close()
    if as_json:
        views.print_json(fleet_json(rows, cfg.zone))
    else:
        views.out_console().print(fleet_table(rows))


@fleet.group("config")
def config_group() -> None:
    """A box's config: what it runs (get), what it should run (set)."""


@config_group.command("get")
@click.argument("device")
@config_option
@officer_option
@json_option
def config_get_cmd(
    device: str, config_path: Path | None, officer: str | None, as_json: bool
) -> None:
    """Print the config DEVICE runs (TOML, secrets redacted) and its hash."""
    from roadside.central.fleet.configs import ask_running

    cfg, store = open_store(config_path)
    who = officer_account(store, officer, Role.INVESTIGATOR)
    try:
        running = ask_running(cfg, store, device, who)
    finally:
        store.close()
    if as_json:
        views.print_json(
            {"device": device, "hash": running.hash, "trial": running.trial, "config": running.doc}
        )
        return
    head = f"# {device} runs config {running.hash}"
    if running.trial:
        head += f", on trial (it replaces {running.trial.get('prev')} once healthy)"
    sys.stdout.write(f"{head}; secrets are shown as <redacted>\n{to_toml(running.doc)}")


@config_group.command("set")
@click.argument("device")
@click.argument(
    "file", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set one key (TOML value: 0.3, true, '[\"mqtt\"]', text); repeatable. Without FILE, "
    "applied to the config the box runs.",
)
@click.option(
    "--allow-disconnect",
    is_flag=True,
    help="Allow a change that may cut the box off ([mqtt] host, port, TLS, credentials; the "
    "mqtt sink; commands): the box rolls it back by itself if it cannot reach the broker.",
)
@click.option(
    "--health",
    "health_s",
    type=DURATION,
    default=None,
    help="How long the new config must keep the box healthy (default: the box's fleet.health_s).",
)
@click.option("--dry-run", is_flag=True, help="Validate and show the diff; send nothing.")
@config_option
@officer_option
@json_option
def config_set_cmd(
    device: str,
    file: Path | None,
    assignments: tuple[str, ...],
    allow_disconnect: bool,
    health_s: float | None,
    dry_run: bool,
    config_path: Path | None,
    officer: str | None,
    as_json: bool,
) -> None:
    """Send DEVICE a desired config: FILE (TOML), and/or --set KEY=VALUE changes.

    \b
    roadside fleet config set junction-07 --set detector.score=0.25
    roadside fleet config set junction-07 junction-07.toml
    roadside fleet config set junction-07 --set mqtt.host=new-broker --allow-disconnect

    The station validates it as the box will, sends it, and waits while the box restarts
    with it and checks its health: 0 applied, 1 refused or rolled back (the box runs its
    previous config), 2 not valid (nothing sent), 3 no final answer yet.
    """
    from roadside.central.fleet.configs import ask_running, compose, plan, send

    if file is None and not assignments:
        raise click.UsageError("give a config FILE, or --set KEY=VALUE changes, or both")
    if health_s is not None and not 5 <= health_s <= 3600:
        raise click.UsageError("--health must be between 5 s and 1 h")
    cfg, store = open_store(config_path)
    try:
        who = officer_account(store, officer, Role.ADMIN)
        running = ask_running(cfg, store, device, who)
        change = plan(running, compose(running, file, list(assignments)), allow_disconnect)
        for line in change.changes:
            click.echo(str(line), err=True)
        if not change.changes:
            click.echo(f"{device} already runs this config ({running.hash}): nothing sent")
            return
        if dry_run:
            click.echo(f"dry run: config {change.hash} would replace {change.previous}")
            return
        outcome = send(
            cfg, store, change, who, allow_disconnect, health_s, lambda s: click.echo(s, err=True)
        )
    finally:
        store.close()
    if as_json:
        views.print_json(outcome.data)
    else:
        click.echo(outcome.text)
    if outcome.exit_code != ExitCode.OK:
        sys.exit(outcome.exit_code)
