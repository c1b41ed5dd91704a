"""``roadside fleet``: see and change what every box runs, from the station.

Every command reads the central config (``--config``, or $ROADSIDE_CENTRAL_CONFIG) and runs
under an officer's account (``--officer NAME`` or $ROADSIDE_OFFICER); each is audited.
``status`` needs a viewer, ``config get`` an investigator, ``config set`` an admin. Commands
hang off ``fleet``: ``status`` and ``config`` here, software updates beside them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from roadside.central.accounts import Role
from roadside.central.cli import (
    DURATION,
    config_option,
    json_option,
    officer_account,
    officer_option,
    open_store,
)
from roadside.config.document import to_toml
from roadside.errors import ExitCode


@click.group("fleet")
def fleet() -> None:
    """Every box's config and software: status, config get/set."""


@fleet.command("status")
@config_option
@officer_option
@json_option
def status_cmd(config_path: Path | None, officer: str | None, as_json: bool) -> None:
    """Every box: online or not, software version and update, config reported against
    desired, how the last change ended."""
    from roadside.central import views
    from roadside.central.fleet.status import fleet_json, fleet_rows, fleet_table

    cfg, store = open_store(config_path)
    who = officer_account(store, officer, Role.VIEWER)
    with store.connect() as conn:
        rows = fleet_rows(conn)
    store.audit.record(who, "fleet-status", {}, {"rows": len(rows)})
    if as_json:
        views.print_json(fleet_json(rows, cfg.zone))
    else:
        views.out_console().print(fleet_table(rows))
    store.close()


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
    from roadside.central import views
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
    from roadside.central import views
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
