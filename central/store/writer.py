"""Writing one batch in one transaction, idempotently: the heart of exactly-once storage.

Every insert is an upsert keyed by the message id, so a message delivered twice (to one worker
after a reconnect, or to two workers) changes nothing the second time:
- events: ``ON CONFLICT (id) DO UPDATE … WHERE stored phase = 's' AND new phase = 'e'`` and
  the stored device is the sender's: the end replaces the start, a repeated or late start
  changes nothing, and an id of another box's event is rejected (kept in ``rejects``);
- counts (and their line crossings), health, status log: ``ON CONFLICT DO NOTHING``;
- devices: last seen only moves forward, status by arrival, health by id;
- replies close the audit row of that request *sent to that device*; a reply naming another
  box's request is rejected;
- rejects: counted per box, the newest ``rejects_per_box`` of each box kept (``_keep_rejects``).
Rows are written in key order so two workers' transactions cannot deadlock on PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from roadside.central.store import tables as T
from roadside.central.store.batch import (
    REJECT_PAYLOAD_MAX,
    Batch,
    DeviceTouch,
    ReplyUpdate,
    reject_device,
)
from roadside.wire.topics import EVENT, REPLY, topic

# A device's last_seen is rewritten at most this often by one worker (seconds): every batch
# touching the one devices row would serialise the workers on it.
LAST_SEEN_RESOLUTION_S = 1.0
# Rejects kept whole per box (the rest only counted): docs/reliability.md has the arithmetic.
REJECTS_PER_BOX = 1000


def _upsert_dialect(engine: sa.Engine):
    return postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert


def _newer_case(newer: sa.ColumnElement[bool], new: Any, old: Any) -> sa.Case:
    return sa.case((newer, new), else_=old)


class BatchWriter:
    """Writes batches for one worker; call from one thread (the worker's writer thread).

    Of one box's rejects the newest ``rejects_per_box`` rows are kept whole; every reject is
    counted in ``reject_counts`` (total, first, last), so a flooding box costs the store a
    bounded number of rows.
    """

    def __init__(self, engine: sa.Engine, rejects_per_box: int = REJECTS_PER_BOX) -> None:
        self.engine = engine
        self.rejects_per_box = rejects_per_box
        self._insert = _upsert_dialect(engine)
        self._last_seen_written: dict[str, float] = {}
        self._statements = self._prepare()

    def _prepare(self) -> dict[str, Any]:
        ins = self._insert
        ev = ins(T.events)
        event_upsert = ev.on_conflict_do_update(
            index_elements=[T.events.c.id],
            set_={
                c: ev.excluded[c]
                for c in (
                    "phase",
                    "cls",
                    "score",
                    "t0",
                    "t1",
                    "box",
                    "track",
                    "direction",
                    "zones",
                    "unsynced",
                    "updated",
                    "colour",
                )
            },
            where=(T.events.c.phase == "s")
            & (ev.excluded.phase == "e")
            & (T.events.c.device == ev.excluded.device),
        )
        dv = ins(T.devices)
        d, x = T.devices.c, dv.excluded
        status_newer = x.status_rx.is_not(None) & (
            d.status_rx.is_(None) | (x.status_rx >= d.status_rx)
        )
        health_newer = x.health_id.is_not(None) & (
            d.health_id.is_(None) | (x.health_id > d.health_id)
        )
        device_set: dict[str, Any] = {
            "last_seen": _newer_case(x.last_seen > d.last_seen, x.last_seen, d.last_seen)
        }
        for col in ("online", "status_id", "status_at", "status_rx", "status"):
            device_set[col] = _newer_case(status_newer, x[col], d[col])
        for col in ("health_id", "health_at", "health"):
            device_set[col] = _newer_case(health_newer, x[col], d[col])
        rc = ins(T.reject_counts)
        c, new = T.reject_counts.c, rc.excluded
        sqlite_ = self.engine.dialect.name == "sqlite"  # its two-argument min and max
        least, greatest = (
            (sa.func.min, sa.func.max) if sqlite_ else (sa.func.least, sa.func.greatest)
        )
        reject_count = rc.on_conflict_do_update(
            index_elements=[c.device],
            set_={
                "total": c.total + new.total,
                "first_at": least(c.first_at, new.first_at),
                "last_at": greatest(c.last_at, new.last_at),
            },
        )
        return {
            "reject_counts": reject_count,
            "events": event_upsert,
            "counts": ins(T.counts).on_conflict_do_nothing(index_elements=[T.counts.c.id]),
            "line_counts": ins(T.line_counts).on_conflict_do_nothing(),
            "health": ins(T.health).on_conflict_do_nothing(index_elements=[T.health.c.id]),
            "status": ins(T.status_log).on_conflict_do_nothing(index_elements=[T.status_log.c.id]),
            "devices": dv.on_conflict_do_update(index_elements=[d.device], set_=device_set),
        }

    def write(self, batch: Batch) -> int:
        """Store the batch in one transaction; returns the rejects stored (the batch's own and
        the ids of other boxes found). Raises sqlalchemy errors for the caller's retry."""
        st = self._statements
        devices = self._device_rows(batch.devices)
        with self.engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
            tables: tuple[tuple[str, Mapping[Any, dict[str, Any]]], ...] = (
                ("events", batch.events),
                ("counts", batch.counts),
                ("line_counts", batch.line_counts),
                ("health", batch.health),
            )
            rejects = list(batch.rejects)
            events = self._own_events(conn, batch.events, rejects)
            for name, rows in (("events", events), *tables[1:]):
                if rows:
                    conn.execute(st[name], [rows[k] for k in sorted(rows)])
            if batch.statuses:
                conn.execute(
                    st["status"],
                    [
                        {k: v for k, v in batch.statuses[i].items() if k != "body"}
                        for i in sorted(batch.statuses)
                    ],
                )
            if devices:
                conn.execute(st["devices"], devices)
            for device, request_id in sorted(batch.replies):
                update = batch.replies[(device, request_id)]
                if not self._reply(conn, device, request_id, update):
                    rejects.append(_forged_reply(device, request_id, update))
            if rejects:
                self._keep_rejects(conn, rejects)
        for row in devices:
            self._last_seen_written[row["device"]] = row["last_seen"]
        return len(rejects)

    def _device_rows(self, touched: dict[str, DeviceTouch]) -> list[dict[str, Any]]:
        rows = []
        for device in sorted(touched):
            seen = touched[device]
            written = self._last_seen_written.get(device)
            if (
                seen.status is None
                and seen.health is None
                and written is not None
                and seen.last_seen - written < LAST_SEEN_RESOLUTION_S
            ):
                continue
            st, he = seen.status, seen.health
            rows.append(
                {
                    "device": device,
                    "first_seen": seen.last_seen,
                    "last_seen": seen.last_seen,
                    "online": None if st is None else st["st"] == "online",
                    "status_id": st and st["id"],
                    "status_at": st and st["t"],
                    "status_rx": st and st["received"],
                    "status": st and st["body"],
                    "health_id": he and he["id"],
                    "health_at": he and he["t"],
                    "health": he and he["body"],
                }
            )
        return rows

    def _keep_rejects(self, conn: sa.Connection, rejects: list[dict[str, Any]]) -> None:
        """Count every reject per box, keep its newest ``rejects_per_box`` rows, drop older.

        The count row is written first: on PostgreSQL it locks that box's count, so a second
        worker's trim of the same box waits for this one and sees its rows."""
        by_device: dict[str, list[dict[str, Any]]] = {}
        for row in rejects:
            row.setdefault("device", reject_device(row["topic"]))
            by_device.setdefault(row["device"], []).append(row)
        keep = self.rejects_per_box
        r = T.rejects.c
        for device in sorted(by_device):
            rows = by_device[device]
            times = [row["received"] for row in rows]
            conn.execute(
                self._statements["reject_counts"],
                {"device": device, "total": len(rows)}
                | {"first_at": min(times), "last_at": max(times)},
            )
            if keep:
                conn.execute(T.rejects.insert(), rows[-keep:])
            oldest_kept = (
                sa.select(r.seq)
                .where(r.device == device)
                .order_by(r.seq.desc())
                .offset(keep - 1)
                .limit(1)
                .scalar_subquery()
            )
            trim = r.device == device
            conn.execute(T.rejects.delete().where(trim & (r.seq < oldest_kept) if keep else trim))

    @staticmethod
    def _own_events(
        conn: sa.Connection, events: dict[str, dict[str, Any]], rejects: list[dict[str, Any]]
    ) -> dict[str, dict[str, Any]]:
        """The batch's events less those whose id is stored for another device (to rejects)."""
        if not events:
            return events
        stored = dict(
            conn.execute(
                sa.select(T.events.c.id, T.events.c.device).where(T.events.c.id.in_(events))
            ).all()
        )
        own = {}
        for eid, row in events.items():
            if stored.get(eid, row["device"]) == row["device"]:
                own[eid] = row
            else:
                rejects.append(_forged_event(row))
        return own

    @staticmethod
    def _reply(conn: sa.Connection, device: str, request_id: str, update: ReplyUpdate) -> bool:
        """Update the request's audit row; False when the request was sent to another box."""
        values: dict[str, Any] = {"state": update.state, "result": update.result}
        if update.detail is not None:
            values["detail"] = update.detail
        if update.final:
            values["finished"] = update.at
        audit = T.audit.c
        conn.execute(
            T.audit.update()
            .where(audit.id == request_id, audit.device == device, audit.finished.is_(None))
            .values(**values)
        )
        owner = conn.execute(sa.select(audit.device).where(audit.id == request_id)).first()
        return owner is None or owner.device == device


def _forged_event(row: dict[str, Any]) -> dict[str, Any]:
    body = {k: row[k] for k in ("id", "phase", "cls", "t0", "t1")}
    return {
        "topic": topic(row["device"], EVENT),
        "payload": json.dumps(body).encode(),
        "reason": f"event {row['id']} belongs to another box",
        "received": row["received"],
    }


def _forged_reply(device: str, request_id: str, update: ReplyUpdate) -> dict[str, Any]:
    body = {"rq": request_id, "st": update.state, "r": update.result}
    return {
        "topic": topic(device, f"{REPLY}/{request_id}"),
        "payload": json.dumps(body).encode()[:REJECT_PAYLOAD_MAX],
        "reason": f"reply to request {request_id}, which was sent to another box",
        "received": update.at,
    }
