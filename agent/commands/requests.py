"""Every request id the box has seen, and the one final reply each got: a request runs once.

The station may send a request again (its own retry, or the broker's at-least-once delivery);
the id is looked up here first. A repeat of a finished request gets the stored final reply
again, with the same message id (the station drops the copy); a repeat of a running one starts
nothing. ``finish`` stores a final reply only if none is stored yet, so two racing outcomes
(a transfer finishing as it is cancelled) cannot both be sent.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from roadside.statefile import MovedAside, StateSchema, open_state_file
from roadside.wire.commands import ReplyMsg

RequestState = Literal["accepted", "running", "final"]

SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS requests (
    rq TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    requester TEXT,
    params TEXT,
    state TEXT NOT NULL,       -- accepted, running (a transfer carries it), final
    xid TEXT,
    reply TEXT,                -- the final ReplyMsg, as sent (JSON)
    created REAL NOT NULL,
    finished REAL
);
CREATE INDEX IF NOT EXISTS requests_state ON requests (state);
"""
SCHEMA = StateSchema("request log", (SCHEMA_V1,))


@dataclass(frozen=True)
class Request:
    rq: str
    name: str
    requester: str | None
    params: dict[str, Any] | None
    state: RequestState
    xid: str | None
    reply: ReplyMsg | None
    created: float


class RequestLog:
    """SQLite file of request ids. Threading: one lock; called from the command thread, the
    job worker and the transfer clock."""

    def __init__(self, path: str | Path) -> None:
        self._lock = threading.Lock()
        # synchronous FULL: a request seen is never run twice, power cut or not.
        state = open_state_file(path, SCHEMA, synchronous="FULL")
        # Set when the file was damaged and started anew: a repeat of an earlier request
        # would run again.
        self.moved_aside: MovedAside | None = state.moved_aside
        self._db = state.db

    def claim(
        self, rq: str, name: str, requester: str | None, params: dict[str, Any] | None
    ) -> Request | None:
        """Record a new request id; returns None when it is new, else the earlier request."""
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO requests (rq, name, requester, params, state, created) "
                "VALUES (?, ?, ?, ?, 'accepted', ?)",
                (rq, name[:64], requester, _json(params), time.time()),
            )
            if cur.rowcount == 1:
                return None
        return self.get(rq)

    def running(self, rq: str, xid: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE requests SET state = 'running', xid = ? WHERE rq = ? AND state != 'final'",
                (xid, rq),
            )

    def finish(self, reply: ReplyMsg) -> bool:
        """Store the final reply; False when the request already had one (send nothing)."""
        with self._lock:
            return (
                self._db.execute(
                    "UPDATE requests SET state = 'final', reply = ?, finished = ? "
                    "WHERE rq = ? AND state != 'final'",
                    (reply.encode().decode(), time.time(), reply.request_id),
                ).rowcount
                == 1
            )

    def get(self, rq: str) -> Request | None:
        with self._lock:
            row = self._db.execute(
                "SELECT rq, name, requester, params, state, xid, reply, created FROM requests "
                "WHERE rq = ?",
                (rq,),
            ).fetchone()
        return None if row is None else _request(row)

    def unfinished(self) -> list[Request]:
        with self._lock:
            rows = self._db.execute(
                "SELECT rq, name, requester, params, state, xid, reply, created FROM requests "
                "WHERE state != 'final' ORDER BY created"
            ).fetchall()
        return [_request(r) for r in rows]

    def prune(self, older_than_s: float) -> int:
        with self._lock:
            return self._db.execute(
                "DELETE FROM requests WHERE state = 'final' AND created < ?",
                (time.time() - older_than_s,),
            ).rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _json(value: Any) -> str | None:
    if value is None:
        return None
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        return None
    return text if len(text) <= 65536 else None


def _request(row: tuple) -> Request:
    rq, name, requester, params, state, xid, reply, created = row
    return Request(
        rq,
        name,
        requester,
        json.loads(params) if params else None,
        state,
        xid,
        ReplyMsg.decode(reply) if reply else None,
        created,
    )
