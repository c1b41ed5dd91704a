"""``roadside fleet status``: one row per box, what it should run against what it runs.

Config: the hash the box reports in its retained status (and one on trial), the hash the
station last asked for, and how that change ended (from its audit row). Software: the version
the box reports, and its last update report (``rollout.FleetView``, from the broker's retained
messages). A box the station has never heard from but has a desired config for is listed too.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import tzinfo
from typing import Any

import sqlalchemy as sa
from rich.table import Table

from roadside.central.fleet import desired
from roadside.central.fleet.rollout import FleetView
from roadside.central.store import queries
from roadside.central.times import iso_time, show_age
from roadside.central.views import cell, device_state
from roadside.wire.commands import ErrorCode


@dataclass
class FleetRow:
    device: str
    state: str  # online, offline (…), unknown: as `roadside devices` says
    last_seen: float | None
    version: str | None  # the software the box reports
    config: str | None  # the config hash the box reports as current
    trial: str | None  # a config hash the box runs on trial
    desired: str | None  # the config hash the station last sent
    change: str | None  # how the last config change stands: applied, rolled back, …
    error: str | None  # the last change's error, for people
    update: str | None = None  # the last software update report's state
    release: str | None = None  # the release that report is about
    update_error: str | None = None  # the update's last error

    @property
    def in_step(self) -> bool:
        """The box runs what the station asked (or nothing was asked)."""
        return self.desired is None or self.desired == self.config


def _change(row: dict[str, Any]) -> tuple[str, str | None]:
    """(state, error) of a desired config's request, from its audit row."""
    state, result = row.get("state"), row.get("result") or {}
    if state == "done":
        return ("applied" if result.get("changed") else "unchanged"), None
    if state == "error":
        code = result.get("code")
        return ("rolled back" if code == ErrorCode.ROLLED_BACK else "refused"), row.get("detail")
    if state == "failed":
        return "not sent", row.get("detail")
    return "pending", None  # sent, working, or the command line stopped waiting


def fleet_rows(conn: sa.Connection) -> list[FleetRow]:
    wanted = desired.desired(conn)
    rows: list[FleetRow] = []
    for d in queries.devices(conn):
        status = d.get("status") or {}
        row = FleetRow(
            d["device"],
            device_state(d),
            d["last_seen"],
            status.get("software"),
            status.get("config_hash"),
            status.get("config_trial"),
            None,
            None,
            None,
        )
        rows.append(_with_desired(row, wanted.pop(d["device"], None)))
    for device, want in wanted.items():  # never heard from, yet asked
        rows.append(
            _with_desired(
                FleetRow(device, "unknown", None, None, None, None, None, None, None), want
            )
        )
    return sorted(rows, key=lambda r: r.device)


def _with_desired(row: FleetRow, want: dict[str, Any] | None) -> FleetRow:
    if want is not None:
        row.desired = want["hash"]
        row.change, row.error = _change(want)
    return row


def with_updates(rows: list[FleetRow], view: FleetView) -> list[FleetRow]:
    """``rows`` with what the boxes' retained update reports say; boxes only the view knows
    are added."""
    by_device = {r.device: r for r in rows}
    for device in sorted(view.boxes):
        box = view.box(device)
        row = by_device.get(device)
        if row is None:
            row = by_device[device] = FleetRow(
                device, "unknown", None, None, None, None, None, None, None
            )
        if box.online is not None and row.state == "unknown":
            row.state = "online" if box.online else "offline"
        row.version = box.version or row.version
        if box.update is not None:
            row.update, row.release = box.update.state.value, box.update.release
        row.update_error = box.last_error
    return sorted(by_device.values(), key=lambda r: r.device)


def fleet_json(rows: list[FleetRow], zone: tzinfo) -> list[dict[str, Any]]:
    return [
        {**asdict(r), "last_seen": iso_time(r.last_seen, zone), "in_step": r.in_step} for r in rows
    ]


def fleet_table(rows: list[FleetRow]) -> Table:
    """Every cell is plain text (``views.cell``): versions, hashes and errors are the boxes'
    word, and a ``[/oops]`` or an ESC in them must show as what it is."""
    now = time.time()
    table = Table(title=f"Fleet ({len(rows)} boxes)")
    for col in ("box", "state", "seen", "version", "update", "config", "desired", "change"):
        table.add_column(col)
    table.add_column("last error", overflow="fold")
    for r in rows:
        state_style = "green" if r.state == "online" else "red"
        config = r.config or "-"
        if r.trial:
            config += f" (trial {r.trial})"
        style = "green" if r.in_step else "yellow"
        table.add_row(
            cell(r.device),
            cell(r.state, state_style),
            cell(None if r.last_seen is None else f"{show_age(now - r.last_seen)} ago"),
            cell(r.version),
            cell(f"{r.update} {r.release or ''}".strip() if r.update else None),
            cell(config, style),
            cell(r.desired),
            cell(r.change),
            cell("; ".join(e for e in (r.error, r.update_error) if e)),
        )
    return table
