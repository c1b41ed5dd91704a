"""``roadside fleet``: what every box runs, and software updates rolled out from the station.

``fleet update VERSION`` sends the signed release ``<data_dir>/releases/roadside-VERSION.release``
(made by ``roadside provision release --out <data_dir>/releases``) to the boxes named, a
canary group first, and waits until each has its final word; ``fleet status`` shows every
box's version, update state and last error. Both read the central config and need an admin
account (``--officer``); updates are recorded in the audit log.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from roadside.central import views
from roadside.central.accounts import Role
from roadside.central.cli import _officer, _open, config_option, json_option, officer_option
from roadside.central.store import Store
from roadside.errors import ExitCode, UsageError

VIEW_SETTLE_S = 2.0  # retained messages of every box arrive within this after subscribing


@click.group("fleet")
def fleet() -> None:
    """Every box at once: software updates and what each box runs."""


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
    cfg, store = _open(config_path)
    who = _officer(store, officer, Role.ADMIN)
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
    """Every box: online, the version it runs, its update state and last error."""
    from roadside.central.fleet.rollout import FleetView

    cfg, store = _open(config_path)
    who = _officer(store, officer, Role.VIEWER)
    known = _known_devices(store)
    view = FleetView(cfg.broker).start()
    try:
        time.sleep(VIEW_SETTLE_S)
    finally:
        view.stop()
    rows: list[dict[str, Any]] = []
    for device in sorted(set(known) | set(view.boxes)):
        box = view.box(device)
        u = box.update
        rows.append(
            {
                "device": device,
                "online": box.online,
                "version": box.version,
                "update": u.state.value if u else None,
                "release": u.release if u else None,
                "last_error": box.last_error,
            }
        )
    store.audit.record(who, "fleet status", {}, {"rows": len(rows)})
    store.close()
    if as_json:
        views.print_json(rows)
        return
    table = Table(title="fleet")
    for col in ("device", "online", "version", "update", "release", "last error"):
        table.add_column(col)
    for r in rows:
        online = "?" if r["online"] is None else ("yes" if r["online"] else "no")
        table.add_row(
            r["device"],
            online,
            r["version"] or "?",
            r["update"] or "",
            r["release"] or "",
            r["last_error"] or "",
        )
    views.out_console().print(table)
