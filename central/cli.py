"""The station's command line: ``roadside central run`` and the officer commands
``devices``, ``events``, ``counts``, ``clip``, ``snapshot`` and ``audit``.

Every officer command reads the central config (``--config``, or $ROADSIDE_CENTRAL_CONFIG,
else /etc/roadside/central.toml), shows tables by default and JSON with ``--json``, and is
recorded in the audit log under the officer's account: ``--officer NAME`` or
$ROADSIDE_OFFICER names it, and it must be an active account with the role the command needs
(viewer for devices and events, investigator for clip, snapshot and audit). The terminal is
trusted like the station config it reads: no password is asked. Messages follow
$ROADSIDE_LANG, else the locale ($LANG …): Vietnamese or English.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from roadside import logs
from roadside.central import i18n
from roadside.central.accounts import ENV_OFFICER, Accounts, Role, identify
from roadside.central.config import ENV_CONFIG, CentralConfig, load_central_config
from roadside.central.times import parse_duration, parse_time
from roadside.errors import RoadsideError
from roadside.wire.messages import COLOURS

if TYPE_CHECKING:
    from roadside.central.store import Store

config_option = click.option(
    "--config",
    "config_path",
    envvar=ENV_CONFIG,
    default=None,
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Central config file (TOML); default ${ENV_CONFIG}, else /etc/roadside/central.toml.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON, not a table.")
officer_option = click.option(
    "--officer",
    envvar=ENV_OFFICER,
    default=None,
    help=f"Your account at the station (default ${ENV_OFFICER}); the audit log records it.",
)


class _TimeParam(click.ParamType):
    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        return value  # parsed once the config (and its time zone) is known


class _DurationParam(click.ParamType):
    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None):
        if isinstance(value, float | int):
            return float(value)
        try:
            return parse_duration(value)
        except RoadsideError as exc:
            self.fail(str(exc), param, ctx)


TIME = _TimeParam()
DURATION = _DurationParam()


def open_store(config_path: Path | None) -> tuple[CentralConfig, Store]:
    from roadside.central.store import Store

    i18n.use(i18n.language_from_env())
    cfg = load_central_config(config_path)
    return cfg, Store(cfg.database_url, cfg.database.echo)


def officer_account(store: Store, name: str | None, needed: Role) -> str:
    """The account name to audit under, once it is known to be allowed ``needed``."""
    try:
        return identify(Accounts(store.engine), name, needed).name
    except RoadsideError:
        store.close()
        raise


def _when(cfg: CentralConfig, text: str | None) -> float | None:
    return None if text is None else parse_time(text, cfg.zone)


# -- the service ------------------------------------------------------------------------------
@click.group()
def central() -> None:
    """The station: ingest every box's events, status and health into the store."""


@central.command("run")
@config_option
@click.option(
    "--worker",
    default=None,
    help="This worker's name (default: ingest.worker); start several with different "
    "names to share the load.",
)
@click.option(
    "--receiver/--no-receiver",
    default=None,
    help="Also receive clip uploads (default: ingest.receiver); one process per station should.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    default=None,
    help="Stop after this many seconds (default: until SIGINT/SIGTERM).",
)
def run_cmd(
    config_path: Path | None, worker: str | None, receiver: bool | None, duration: float | None
) -> None:
    """Run one ingest worker (and the clip receiver)."""
    from roadside.central.service import CentralService

    cfg = load_central_config(config_path)
    logs.apply(cfg.logging)
    stats = CentralService(cfg, worker, receiver).run(duration)
    click.echo(
        f"{logs.line_prefix(logging.INFO)}stopped: {stats.received} messages, "
        f"{stats.rejected} rejected, {stats.batches} transactions",
        err=True,
    )


@central.command("migrate")
@config_option
def migrate_cmd(config_path: Path | None) -> None:
    """Create or upgrade the database schema (run also starts with this)."""
    from roadside.central.store.migrations import LATEST

    _cfg, store = open_store(config_path)
    applied = store.applied
    click.echo(
        f"{store.safe_url}: schema version {LATEST}"
        + (f" (applied {', '.join(map(str, applied))})" if applied else " (up to date)")
    )
    store.close()


# -- officer commands -------------------------------------------------------------------------
@click.command("devices")
@config_option
@officer_option
@json_option
def devices_cmd(config_path: Path | None, officer: str | None, as_json: bool) -> None:
    """Every box: online or not, last seen, health, outbox depth, clock."""
    from roadside.central import views
    from roadside.central.store import queries

    cfg, store = open_store(config_path)
    who = officer_account(store, officer, Role.VIEWER)
    with store.connect() as conn:
        rows = queries.devices(conn)
    store.audit.record(who, "devices", {}, {"rows": len(rows)})
    if as_json:
        views.print_json(views.devices_json(rows, cfg.zone))
    else:
        views.out_console().print(views.devices_table(rows, cfg.zone))
    store.close()


@click.command("events")
@config_option
@click.option("--device", help="Only this box.")
@click.option("--class", "cls", help="Only this class (car, person, motorcycle, …).")
@click.option(
    "--since",
    type=TIME,
    help="From this time (ISO 8601, local '2024-05-01 10:14', 10:14, 'yesterday 10:14', '2h ago').",
)
@click.option("--until", type=TIME, help="Up to this time (same forms as --since).")
@click.option(
    "--colour",
    "colour",
    type=click.Choice(COLOURS),
    help="Only objects of this colour (as the box named it at the best frame).",
)
@click.option(
    "--limit",
    type=click.IntRange(1, 1_000_000),
    default=1000,
    show_default=True,
    help="At most this many, newest first.",
)
@officer_option
@json_option
def events_cmd(
    config_path: Path | None,
    officer: str | None,
    device: str | None,
    cls: str | None,
    since: str | None,
    until: str | None,
    colour: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """Events stored at the station, newest first."""
    from roadside.central import views
    from roadside.central.store import queries

    cfg, store = open_store(config_path)
    who = officer_account(store, officer, Role.VIEWER)
    flt = queries.EventFilter(device, cls, _when(cfg, since), _when(cfg, until), limit, colour)
    with store.connect() as conn:
        rows = queries.events(conn, flt)
    asked = (("device", device), ("class", cls), ("since", since), ("until", until))
    params = {k: v for k, v in (*asked, ("colour", colour)) if v is not None}
    store.audit.record(who, "events", params, {"rows": len(rows)}, device)
    if as_json:
        views.print_json(views.events_json(rows, cfg.zone))
    else:
        views.out_console().print(views.events_table(rows, cfg.zone, limit))
    store.close()


@click.command("counts")
@config_option
@click.option("--device", help="Only this box.")
@click.option("--line", help="Only this counting line (its name in the box's [events]).")
@click.option("--class", "cls", help="Only this class (car, person, motorcycle, …).")
@click.option("--since", type=TIME, help="From this time (default: the last 24 hours).")
@click.option("--until", type=TIME, help="Up to this time (same forms as --since).")
@click.option(
    "--every",
    type=DURATION,
    default=None,
    help="Sum into intervals of this length (15m, 1h, 1d); default: as the boxes sent them.",
)
@officer_option
@json_option
def counts_cmd(
    config_path: Path | None,
    officer: str | None,
    device: str | None,
    line: str | None,
    cls: str | None,
    since: str | None,
    until: str | None,
    every: float | None,
    as_json: bool,
) -> None:
    """Counting-line crossings per box, line, class, direction and interval."""
    import time

    from roadside.central import views
    from roadside.central.store import queries

    cfg, store = open_store(config_path)
    who = officer_account(store, officer, Role.VIEWER)
    start = _when(cfg, since) if since else time.time() - 86400
    flt = queries.CountFilter(device, line, cls, start, _when(cfg, until))
    with store.connect() as conn:
        rows = views.line_count_rows(queries.line_counts(conn, flt), every)
    asked = (("device", device), ("line", line), ("class", cls), ("since", since))
    params = {k: v for k, v in (*asked, ("until", until), ("every", every)) if v is not None}
    store.audit.record(who, "counts", params, {"rows": len(rows)}, device)
    if as_json:
        views.print_json(views.counts_json(rows, cfg.zone))
    else:
        views.out_console().print(views.counts_table(rows, cfg.zone))
    store.close()


@click.command("audit")
@config_option
@click.option("--since", type=TIME, help="From this time (default: the last 7 days).")
@click.option("--limit", type=click.IntRange(1, 100_000), default=200, show_default=True)
@officer_option
@json_option
def audit_cmd(
    config_path: Path | None, since: str | None, limit: int, officer: str | None, as_json: bool
) -> None:
    """The audit log: who asked what, when, and how it ended."""
    import time

    from roadside.central import views
    from roadside.central.store import queries

    cfg, store = open_store(config_path)
    officer_account(store, officer, Role.INVESTIGATOR)
    start = _when(cfg, since) if since else time.time() - 7 * 86400
    with store.connect() as conn:
        rows = queries.audit(conn, start, limit)
    if as_json:
        views.print_json(views.audit_json(rows, cfg.zone))
    else:
        views.out_console().print(views.audit_table(rows, cfg.zone))
    store.close()


class _ClipGroup(click.Group):
    """``roadside clip DEVICE …`` asks for a clip; ``roadside clip status ID`` looks one up."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["request", *args]
        return super().parse_args(ctx, args)


@click.group("clip", cls=_ClipGroup)
def clip_group() -> None:
    """Ask a box for a clip: roadside clip DEVICE --at T | --from T --to T.

    \b
    roadside clip junction-07 --at '10:14:30' --before 10s --after 20s
    roadside clip junction-07 --from 'yesterday 10:14' --to 'yesterday 10:17' --quality low
    roadside clip status REQUEST_ID
    roadside clip verify FILE --ca device-ca.crt --crl crl.pem
    """


@clip_group.command("request")
@click.argument("device")
@config_option
@click.option("--at", "at", type=TIME, help="Around this time (with --before/--after).")
@click.option(
    "--before", type=DURATION, default=None, help="With --at: this long before it (default 10s)."
)
@click.option(
    "--after", type=DURATION, default=None, help="With --at: this long after it (default 20s)."
)
@click.option("--from", "start", type=TIME, help="Start of the range (with --to).")
@click.option("--to", "end", type=TIME, help="End of the range (with --from).")
@click.option(
    "--quality",
    type=click.Choice(["original", "low"]),
    default="original",
    show_default=True,
    help="low: transcoded down for a slow link.",
)
@click.option(
    "--max-bytes",
    type=click.IntRange(min=1024),
    default=None,
    help="Refuse rather than send a larger file.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Copy the clip here (a file or a folder); it is kept at the station too.",
)
@click.option("--no-wait", is_flag=True, help="Send the request, print its id, return.")
@officer_option
@json_option
def clip_request_cmd(
    device: str,
    config_path: Path | None,
    at: str | None,
    before: float | None,
    after: float | None,
    start: str | None,
    end: str | None,
    quality: str,
    max_bytes: int | None,
    out: Path | None,
    no_wait: bool,
    officer: str | None,
    as_json: bool,
) -> None:
    """Ask DEVICE for a clip and wait for the file (progress on stderr)."""
    from roadside.central.requests_cli import clip_range, follow_request

    cfg, store = open_store(config_path)
    who = officer_account(store, officer, Role.INVESTIGATOR)
    t_from, t_to = clip_range(cfg, at, before, after, start, end)
    params: dict[str, Any] = {"from": t_from, "to": t_to, "quality": quality}
    if max_bytes:
        params["max_bytes"] = max_bytes
    sys.exit(follow_request(cfg, store, device, "clip", params, out, no_wait, as_json, who))


@clip_group.command("status")
@click.argument("request_id")
@config_option
@json_option
def clip_status_cmd(request_id: str, config_path: Path | None, as_json: bool) -> None:
    """How a clip or snapshot request stands: sent, working, done (and where), error."""
    from roadside.central.requests_cli import show_status

    cfg, store = open_store(config_path)
    show_status(cfg, store, request_id, as_json)


@clip_group.command("verify")
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "--ca",
    type=click.Path(path_type=Path),
    required=True,
    help="The device CA certificate (device-ca.crt).",
)
@click.option(
    "--crl",
    type=click.Path(path_type=Path),
    default=None,
    help="The CA's revocation list (crl.pem): also check the box was not revoked.",
)
@click.option(
    "--evidence",
    "evidence_path",
    type=click.Path(path_type=Path),
    default=None,
    help="The signed manifest (default: FILE.evidence.json).",
)
@json_option
def clip_verify_cmd(
    file: Path, ca: Path, crl: Path | None, evidence_path: Path | None, as_json: bool
) -> None:
    """Check FILE against the box's signature, offline: sha256, signature, CA, revocation."""
    from roadside.central.evidence_cli import verify_clip

    sys.exit(verify_clip(file, evidence_path, ca, crl, as_json))


@click.command("snapshot")
@click.argument("device")
@config_option
@click.option(
    "--event",
    "event_id",
    default=None,
    help="The best frame of this event (its id from `roadside events`); default: now.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Copy the JPEG here (a file or a folder).",
)
@click.option("--no-wait", is_flag=True, help="Send the request, print its id, return.")
@officer_option
@json_option
def snapshot_cmd(
    device: str,
    config_path: Path | None,
    event_id: str | None,
    out: Path | None,
    no_wait: bool,
    officer: str | None,
    as_json: bool,
) -> None:
    """Ask DEVICE for a snapshot (a small JPEG) of now or of an event."""
    from roadside.central.requests_cli import follow_request

    cfg, store = open_store(config_path)
    who = officer_account(store, officer, Role.INVESTIGATOR)
    params = {"event": event_id} if event_id else {}
    sys.exit(follow_request(cfg, store, device, "snapshot", params, out, no_wait, as_json, who))


def _add_console_commands() -> None:
    from roadside.central.web.cli import user_group, web_cmd

    central.add_command(web_cmd)
    central.add_command(user_group)


_add_console_commands()
