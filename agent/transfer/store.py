"""The box's record of its uploads, in SQLite under data_dir: what is being sent, and how far.

A transfer outlives the agent: after a restart it is loaded from here and resumed from what
the station says it holds. The acknowledged-chunks bitmap stored here is only a hint for
progress reports; the station's answer is what the sender goes by.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from roadside.statefile import MovedAside, StateSchema, open_state_file
from roadside.transfer.machine import Manifest
from roadside.wire.transfer import TransferKind

State = Literal["sending", "done", "failed"]

SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS transfers (
    xid TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    rq TEXT,
    requester TEXT,
    path TEXT NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    cs INTEGER NOT NULL,
    created REAL NOT NULL,
    exp REAL NOT NULL,
    meta TEXT NOT NULL,
    owned INTEGER NOT NULL,      -- 1: the file is the transfer's own and is deleted after it
    state TEXT NOT NULL,         -- sending, done, failed
    acked BLOB NOT NULL,         -- bitmap of chunks the station confirmed (a hint)
    sent_bytes INTEGER NOT NULL DEFAULT 0,
    code TEXT,
    msg TEXT,
    finished REAL
);
CREATE INDEX IF NOT EXISTS transfers_rq ON transfers (rq);
CREATE INDEX IF NOT EXISTS transfers_state ON transfers (state);
"""
SCHEMA = StateSchema("transfer store", (SCHEMA_V1,))


@dataclass
class TransferRecord:
    """One upload as stored. ``acked`` is a bitmap, one bit per chunk."""

    xid: str
    kind: TransferKind
    path: str
    name: str
    size: int
    sha256: str
    cs: int
    created: float
    exp: float
    rq: str | None = None
    requester: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    owned: bool = True
    state: State = "sending"
    acked: bytearray = field(default_factory=bytearray)
    sent_bytes: int = 0
    code: str | None = None
    msg: str | None = None
    finished: float | None = None

    @property
    def manifest(self) -> Manifest:
        return Manifest(self.size, self.cs)

    @property
    def chunks(self) -> int:
        return self.manifest.chunks


class TransferStore:
    """SQLite file of transfer records.

    Threading: called from the command worker (``add``), the transfer clock and the MQTT
    network thread (``save``); one lock guards the connection.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        state = open_state_file(self.path, SCHEMA, synchronous="NORMAL")
        # Set when the file was damaged and started anew: uploads in it are forgotten, and
        # their requests get an error reply after the restart ("lost in a restart").
        self.moved_aside: MovedAside | None = state.moved_aside
        self._db = state.db

    def add(self, rec: TransferRecord) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO transfers (xid, kind, rq, requester, path, name, size, sha256, cs,"
                " created, exp, meta, owned, state, acked, sent_bytes) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rec.xid,
                    rec.kind,
                    rec.rq,
                    rec.requester,
                    rec.path,
                    rec.name,
                    rec.size,
                    rec.sha256,
                    rec.cs,
                    rec.created,
                    rec.exp,
                    json.dumps(rec.meta),
                    int(rec.owned),
                    rec.state,
                    bytes(rec.acked),
                    rec.sent_bytes,
                ),
            )

    def save(self, rec: TransferRecord) -> None:
        """Store the changing parts: state, progress, outcome."""
        with self._lock:
            self._db.execute(
                "UPDATE transfers SET state = ?, acked = ?, sent_bytes = ?, code = ?, msg = ?, "
                "finished = ? WHERE xid = ?",
                (
                    rec.state,
                    bytes(rec.acked),
                    rec.sent_bytes,
                    rec.code,
                    rec.msg,
                    rec.finished,
                    rec.xid,
                ),
            )

    def get(self, xid: str) -> TransferRecord | None:
        rows = self._select("WHERE xid = ?", (xid,))
        return rows[0] if rows else None

    def for_request(self, rq: str) -> TransferRecord | None:
        rows = self._select("WHERE rq = ? ORDER BY created DESC LIMIT 1", (rq,))
        return rows[0] if rows else None

    def sending(self) -> list[TransferRecord]:
        return self._select("WHERE state = 'sending' ORDER BY created", ())

    def prune(self, older_than_s: float) -> int:
        """Forget finished transfers older than this (their files are gone already)."""
        with self._lock:
            return self._db.execute(
                "DELETE FROM transfers WHERE state != 'sending' AND finished < ?",
                (time.time() - older_than_s,),
            ).rowcount

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _select(self, where: str, args: tuple) -> list[TransferRecord]:
        with self._lock:
            rows = self._db.execute(
                "SELECT xid, kind, rq, requester, path, name, size, sha256, cs, created, exp, "
                "meta, owned, state, acked, sent_bytes, code, msg, finished "
                f"FROM transfers {where}",
                args,
            ).fetchall()
        return [
            TransferRecord(
                xid=r[0],
                kind=r[1],
                rq=r[2],
                requester=r[3],
                path=r[4],
                name=r[5],
                size=r[6],
                sha256=r[7],
                cs=r[8],
                created=r[9],
                exp=r[10],
                meta=json.loads(r[11]),
                owned=bool(r[12]),
                state=r[13],
                acked=bytearray(r[14]),
                sent_bytes=r[15],
                code=r[16],
                msg=r[17],
                finished=r[18],
            )
            for r in rows
        ]
