"""Schema version 2: health and status bodies under the messages' long field names.

Version 1 stored them under the wire's short keys (``{"ld": 1.4, "ob": 0}``); from now on the
station keeps ``{"load_1m": 1.4, "outbox_depth": 0}``. This rewrites the rows already stored:
``health.body``, ``devices.health`` and ``devices.status``. Keys it does not know are kept as
they are, so running it over a body already in long names changes nothing.

Frozen: the key lists below are the ones of this version, spelled out here rather than taken
from the wire module, so a later rename there cannot change what this step did.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

DESCRIPTION = "health and status bodies under long field names"

HEALTH_KEYS = {
    "up": "uptime_s",
    "au": "agent_uptime_s",
    "ld": "load_1m",
    "tc": "cpu_temp_c",
    "thr": "throttled",
    "mem": "memory_mib",
    "dk": "disk_mib",
    "fi": "frames_in",
    "fo": "frames_out",
    "fd": "frames_dropped",
    "dl": "detect_latency_ms",
    "ob": "outbox_depth",
    "od": "outbox_losses",
    "ln": "link_up",
    "rc": "reconnects",
    "ck": "clock_synced",
}
STATUS_KEYS = {
    "st": "state",
    "t": "at",
    "why": "reason",
    "sw": "software",
    "m": "model",
    "cfg": "config_hash",
}
BATCH = 1000  # rows read and rewritten at a time

_health = sa.table(
    "health", sa.column("id", sa.String), sa.column("body", sa.JSON(none_as_null=True))
)
_devices = sa.table(
    "devices",
    sa.column("device", sa.String),
    sa.column("health", sa.JSON(none_as_null=True)),
    sa.column("status", sa.JSON(none_as_null=True)),
)


def renamed(body: Any, keys: dict[str, str]) -> Any:
    """``body`` with its short keys replaced by long ones; anything but an object unchanged."""
    if not isinstance(body, dict):
        return body
    return {keys.get(k, k): v for k, v in body.items()}


def upgrade(conn: sa.Connection) -> None:
    _rewrite_health(conn)
    _rewrite_devices(conn)


def _rewrite_health(conn: sa.Connection) -> None:
    after = ""
    while True:
        rows = conn.execute(
            sa.select(_health.c.id, _health.c.body)
            .where(_health.c.id > after)
            .order_by(_health.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        changed = [
            {"key": row.id, "body": new}
            for row in rows
            if (new := renamed(row.body, HEALTH_KEYS)) != row.body
        ]
        if changed:
            conn.execute(
                _health.update()
                .where(_health.c.id == sa.bindparam("key"))
                .values(body=sa.bindparam("body")),
                changed,
            )
        after = rows[-1].id


def _rewrite_devices(conn: sa.Connection) -> None:
    rows = conn.execute(sa.select(_devices.c.device, _devices.c.health, _devices.c.status)).all()
    for row in rows:
        health, status = renamed(row.health, HEALTH_KEYS), renamed(row.status, STATUS_KEYS)
        if (health, status) != (row.health, row.status):
            conn.execute(
                _devices.update()
                .where(_devices.c.device == row.device)
                .values(health=health, status=status)
            )
