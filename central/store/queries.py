"""What officers ask of the store: devices, events, the audit log, clips."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from roadside.central.store import tables as T


@dataclass(frozen=True)
class EventFilter:
    """Which events to list; every field is optional."""

    device: str | None = None
    cls: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 1000
    colour: str | None = None


@dataclass(frozen=True)
class CountFilter:
    """Which line crossings to list; every field is optional."""

    device: str | None = None
    line: str | None = None
    cls: str | None = None
    since: float | None = None
    until: float | None = None


def devices(conn: sa.Connection) -> list[dict[str, Any]]:
    """Every box, with its refused messages (``rejects``: all of them, also those no longer
    kept whole; ``last_reject``: when the newest came; None when it has none)."""
    rc = T.reject_counts.c
    q = (
        sa.select(T.devices, rc.total.label("rejects"), rc.last_at.label("last_reject"))
        .select_from(T.devices.outerjoin(T.reject_counts, rc.device == T.devices.c.device))
        .order_by(T.devices.c.device)
    )
    rows = conn.execute(q).mappings()
    return [dict(r) for r in rows]


def events(conn: sa.Connection, flt: EventFilter) -> list[dict[str, Any]]:
    """Events whose time span overlaps [since, until], newest first."""
    e = T.events.c
    q = sa.select(T.events)
    if flt.device:
        q = q.where(e.device == flt.device)
    if flt.cls:
        q = q.where(e.cls == flt.cls)
    if flt.colour:
        q = q.where(e.colour == flt.colour)
    if flt.since is not None:
        q = q.where(e.t1 >= flt.since)
    if flt.until is not None:
        q = q.where(e.t0 <= flt.until)
    q = q.order_by(e.t0.desc(), e.id.desc()).limit(flt.limit)
    return [dict(r) for r in conn.execute(q).mappings()]


def line_counts(conn: sa.Connection, flt: CountFilter) -> list[dict[str, Any]]:
    """Line crossings of the count intervals that overlap [since, until], oldest first."""
    c = T.line_counts.c
    q = sa.select(T.line_counts)
    for column, value in ((c.device, flt.device), (c.line, flt.line), (c.cls, flt.cls)):
        if value:
            q = q.where(column == value)
    if flt.since is not None:
        q = q.where(c.t1 > flt.since)
    if flt.until is not None:
        q = q.where(c.t0 < flt.until)
    q = q.order_by(c.t0, c.device, c.line, c.cls, c.direction)
    return [dict(r) for r in conn.execute(q).mappings()]


def event(conn: sa.Connection, event_id: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(T.events).where(T.events.c.id == event_id)).mappings().first()
    return dict(row) if row else None


def audit(
    conn: sa.Connection, since: float | None = None, limit: int = 200, request_id: str | None = None
) -> list[dict[str, Any]]:
    q = sa.select(T.audit)
    if since is not None:
        q = q.where(T.audit.c.at >= since)
    if request_id is not None:
        q = q.where(T.audit.c.id == request_id)
    q = q.order_by(T.audit.c.at.desc()).limit(limit)
    return [dict(r) for r in conn.execute(q).mappings()]


def clip(conn: sa.Connection, request_id: str) -> dict[str, Any] | None:
    row = conn.execute(sa.select(T.clips).where(T.clips.c.id == request_id)).mappings().first()
    return dict(row) if row else None


def table_counts(conn: sa.Connection) -> dict[str, int]:
    """Rows per table (the service's log line and the tests)."""
    return {
        t.name: conn.scalar(sa.select(sa.func.count()).select_from(t)) or 0
        for t in (
            T.devices,
            T.events,
            T.counts,
            T.line_counts,
            T.health,
            T.status_log,
            T.audit,
            T.clips,
            T.rejects,
            T.reject_counts,
        )
    }
