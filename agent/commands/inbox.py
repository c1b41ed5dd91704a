"""Commands as they arrive, on disk before the broker is told they arrived.

paho acknowledges a QoS 1 message (PUBACK) when the subscription callback returns; from then
on the broker will not deliver it again. So the link thread writes each command here before
returning, and the command thread deletes it once the request log holds it. A kill or a power
cut between the two leaves the row; the next start handles it (a request the log already holds
is a repeat, answered as such). Without this file, a command acknowledged in the last
milliseconds before a kill would never run and its officer would get no answer.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from roadside.statefile import MovedAside, StateSchema, open_state_file

SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS inbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,     -- the first bytes only when the command was over the size limit
    size INTEGER NOT NULL      -- the size it arrived with
);
"""
SCHEMA = StateSchema("command inbox", (SCHEMA_V1,))


@dataclass(frozen=True)
class Arrived:
    row: int
    topic: str
    payload: bytes
    size: int


class CommandInbox:
    """A small SQLite file of commands not yet in the request log, at most ``limit`` of them.

    Threading: the link thread calls ``put``; the command thread ``done`` and ``waiting``;
    one lock over the connection.
    """

    def __init__(self, path: str | Path, limit: int) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        state = open_state_file(path, SCHEMA, synchronous="FULL")
        # Set when the file was damaged and started anew: commands in it are lost unanswered.
        self.moved_aside: MovedAside | None = state.moved_aside
        self._db = state.db
        self._count = self._db.execute("SELECT count(*) FROM inbox").fetchone()[0]

    def put(self, topic: str, payload: bytes, size: int) -> Arrived | None:
        """Store one command durably; None when ``limit`` commands are already waiting."""
        with self._lock:
            if self._count >= self.limit:
                return None
            cur = self._db.execute(
                "INSERT INTO inbox (topic, payload, size) VALUES (?, ?, ?)", (topic, payload, size)
            )
            self._count += 1
            return Arrived(int(cur.lastrowid or 0), topic, payload, size)

    def done(self, row: int) -> None:
        with self._lock:
            if self._db.execute("DELETE FROM inbox WHERE id = ?", (row,)).rowcount:
                self._count -= 1

    def waiting(self) -> list[Arrived]:
        """Commands left by an earlier run, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT id, topic, payload, size FROM inbox ORDER BY id")
            return [Arrived(r[0], r[1], bytes(r[2]), r[3]) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()
