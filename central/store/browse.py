"""What the console reads: pages of events by keyset, hourly counts, fetched pictures.

Event pages are keyset-paginated on (t0, id), newest first: a page costs the same on the
first day as after a million events (no OFFSET, no COUNT). The filters use the indexes on
(t0), (device, t0) and (cls, t0); zone and direction are checked on the rows the index
walk yields.

Columns that other parts of the station may add later (an event's colour, its counting line)
are filtered on only when the table has them (``optional_column``).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from roadside.central.store import tables as T

HOUR = 3600.0


def optional_column(table: sa.Table, name: str) -> sa.Column | None:
    """The column when this version of the store has it."""
    return table.c.get(name)


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position in the newest-first order of events: (t0, id)."""

    t0: float
    id: str

    def encode(self) -> str:
        return f"{self.t0!r}_{self.id}"

    @classmethod
    def decode(cls, text: str | None) -> Cursor | None:
        """None for a missing or malformed cursor (it comes from a URL)."""
        if not text or "_" not in text:
            return None
        t0, _, eid = text.partition("_")
        try:
            value = float(t0)
        except ValueError:
            return None
        if not math.isfinite(value) or not (1 <= len(eid) <= 26) or not eid.isalnum():
            return None
        return cls(value, eid)


@dataclass(frozen=True, slots=True)
class EventQuery:
    """The events page's filters; every one is optional."""

    device: str | None = None
    cls: str | None = None
    direction: str | None = None
    zone: str | None = None
    colour: str | None = None
    since: float | None = None
    until: float | None = None


@dataclass(slots=True)
class EventPage:
    rows: list[dict[str, Any]]
    older: Cursor | None  # the next page back in time, if any
    newer: Cursor | None  # the page before this one, if this is not the newest
    pictures: dict[str, dict[str, Any]] = field(default_factory=dict)


def _zone_contains(conn: sa.Connection, zone: str) -> sa.ColumnElement[bool]:
    if conn.dialect.name == "postgresql":
        return sa.cast(T.events.c.zones, sa.dialects.postgresql.JSONB).contains([zone])
    each = sa.func.json_each(T.events.c.zones).table_valued("value")
    return sa.exists(sa.select(1).select_from(each).where(each.c.value == zone))


def _filtered(conn: sa.Connection, q: EventQuery) -> sa.Select:
    e = T.events.c
    stmt = sa.select(T.events)
    if q.device:
        stmt = stmt.where(e.device == q.device)
    if q.cls:
        stmt = stmt.where(e.cls == q.cls)
    if q.direction:
        stmt = stmt.where(e.direction == q.direction)
    if q.zone:
        stmt = stmt.where(_zone_contains(conn, q.zone))
    colour = optional_column(T.events, "colour")
    if q.colour and colour is not None:
        stmt = stmt.where(colour == q.colour)
    if q.since is not None:
        stmt = stmt.where(e.t0 >= q.since)
    if q.until is not None:
        stmt = stmt.where(e.t0 <= q.until)
    return stmt


def event_page(
    conn: sa.Connection,
    q: EventQuery,
    size: int,
    before: Cursor | None = None,
    after: Cursor | None = None,
) -> EventPage:
    """One page of events newest first: the newest, the one older than ``before``, or the
    one newer than ``after`` (going back towards the newest)."""
    e = T.events.c
    stmt = _filtered(conn, q)
    if after is not None:
        stmt = stmt.where(e.t0 >= after.t0, (e.t0 > after.t0) | (e.id > after.id))
        stmt = stmt.order_by(e.t0.asc(), e.id.asc()).limit(size + 1)
        rows = [dict(r) for r in conn.execute(stmt).mappings()]
        more_newer = len(rows) > size
        rows = rows[:size][::-1]
        older = Cursor(rows[-1]["t0"], rows[-1]["id"]) if rows else None
        newer = Cursor(rows[0]["t0"], rows[0]["id"]) if rows and more_newer else None
        return EventPage(rows, older, newer)
    if before is not None:
        stmt = stmt.where(e.t0 <= before.t0, (e.t0 < before.t0) | (e.id < before.id))
    stmt = stmt.order_by(e.t0.desc(), e.id.desc()).limit(size + 1)
    rows = [dict(r) for r in conn.execute(stmt).mappings()]
    more_older = len(rows) > size
    rows = rows[:size]
    older = Cursor(rows[-1]["t0"], rows[-1]["id"]) if rows and more_older else None
    newer = Cursor(rows[0]["t0"], rows[0]["id"]) if rows and before is not None else None
    return EventPage(rows, older, newer)


def pictures_for(conn: sa.Connection, event_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Best-frame pictures already fetched for these events: event id -> clips row."""
    if not event_ids:
        return {}
    c, e = T.clips.c, T.events.c
    event_of = c.meta["event"].as_string()
    rows = conn.execute(
        sa.select(T.clips, event_of.label("event_id"))
        .join(T.events, (e.id == event_of) & (e.device == c.device))  # the event's own box
        .where(c.kind == "snapshot", c.state == "done", event_of.in_(event_ids))
        .order_by(c.created)
    ).mappings()
    return {r["event_id"]: dict(r) for r in rows}


def footage_for_event(conn: sa.Connection, event_id: str) -> list[dict[str, Any]]:
    """Audit rows of the clip and picture requests made for one event (newest first)."""
    a = T.audit.c
    return [
        dict(r)
        for r in conn.execute(
            sa.select(T.audit)
            .where(a.action.in_(("clip", "snapshot")), a.params["event"].as_string() == event_id)
            .order_by(a.at.desc())
        ).mappings()
    ]


@dataclass(frozen=True, slots=True)
class HourlySeries:
    """Objects per hour, by a key (a class, or class and direction, or a counting line)."""

    title: str
    hours: list[float]  # hour starts, epoch seconds
    values: dict[str, list[int]]  # key -> one number per hour

    @property
    def total(self) -> int:
        return sum(sum(v) for v in self.values.values())


def _hours(since: float, until: float) -> list[float]:
    first = math.floor(since / HOUR) * HOUR
    return [first + i * HOUR for i in range(max(1, math.ceil((until - first) / HOUR)))]


def counts_by_class(
    conn: sa.Connection, device: str, since: float, until: float, title: str
) -> HourlySeries:
    """The box's own counts (``count`` messages: objects confirmed per class per interval),
    summed per hour of their start."""
    c = T.counts.c
    hours = _hours(since, until)
    index = {h: i for i, h in enumerate(hours)}
    values: dict[str, list[int]] = defaultdict(lambda: [0] * len(hours))
    rows = conn.execute(
        sa.select(c.t0, c.n).where(c.device == device, c.t0 >= hours[0], c.t0 < until)
    )
    for t0, n in rows:
        i = index.get(math.floor(t0 / HOUR) * HOUR)
        if i is None:
            continue
        for cls, k in (n or {}).items():
            if isinstance(k, int):
                values[cls][i] += k
    return HourlySeries(title, hours, dict(sorted(values.items())))


def events_by_direction(
    conn: sa.Connection, device: str, since: float, until: float, title: str
) -> HourlySeries:
    """Ended events per hour by class and direction of travel (``car → E``)."""
    e = T.events.c
    hours = _hours(since, until)
    hour = sa.func.floor(e.t0 / HOUR)
    rows = conn.execute(
        sa.select(hour.label("h"), e.cls, e.direction, sa.func.count().label("n"))
        .where(e.device == device, e.t0 >= hours[0], e.t0 < until, e.phase == "e")
        .group_by(hour, e.cls, e.direction)
    )
    index = {h: i for i, h in enumerate(hours)}
    values: dict[str, list[int]] = defaultdict(lambda: [0] * len(hours))
    for h, cls, direction, n in rows:
        i = index.get(float(h) * HOUR)
        if i is not None:
            values[f"{cls} {direction or '?'}"][i] += int(n)
    return HourlySeries(title, hours, dict(sorted(values.items())))


def line_counts_by_hour(
    conn: sa.Connection, device: str, since: float, until: float, title: Callable[[str], str]
) -> dict[str, HourlySeries]:
    """Crossings of each counting line per hour of their interval's start, by class and
    direction across the line (``car N``): one series per line, titled ``title(line)``."""
    c = T.line_counts.c
    hours = _hours(since, until)
    index = {h: i for i, h in enumerate(hours)}
    hour = sa.func.floor(c.t0 / HOUR)
    rows = conn.execute(
        sa.select(hour.label("h"), c.line, c.cls, c.direction, sa.func.sum(c.n).label("n"))
        .where(c.device == device, c.t0 >= hours[0], c.t0 < until)
        .group_by(hour, c.line, c.cls, c.direction)
    )
    lines: dict[str, dict[str, list[int]]] = defaultdict(dict)
    for h, line, cls, direction, n in rows:
        i = index.get(float(h) * HOUR)
        if i is not None:
            values = lines[line].setdefault(f"{cls} {direction}", [0] * len(hours))
            values[i] += int(n)
    return {
        line: HourlySeries(title(line), hours, dict(sorted(values.items())))
        for line, values in sorted(lines.items())
    }


def known_values(conn: sa.Connection) -> dict[str, list[str]]:
    """Boxes, classes and directions the filters offer (small tables and small indexes)."""
    boxes = conn.execute(sa.select(T.devices.c.device).order_by(T.devices.c.device)).scalars()
    # A loose index scan: one index probe per distinct class, not a walk over every event.
    classes = conn.execute(
        sa.text(
            "WITH RECURSIVE c(cls) AS (SELECT MIN(cls) FROM events UNION ALL "
            "SELECT (SELECT MIN(cls) FROM events WHERE cls > c.cls) FROM c "
            "WHERE c.cls IS NOT NULL) SELECT cls FROM c WHERE cls IS NOT NULL"
        )
    ).scalars()
    return {"boxes": list(boxes), "classes": list(classes)}
