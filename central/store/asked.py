"""The files the station asked boxes for: the receiver takes an upload only if it was asked.

Every clip and snapshot request is written here before it is sent (audited or not: the live
view's pictures have no audit row of their own), so a box cannot push a file nobody asked for
under a made-up or another box's request id.
"""

from __future__ import annotations

import time

import sqlalchemy as sa

from roadside.central.store import tables as T
from roadside.central.store.writer import _upsert_dialect

FILE_COMMANDS = frozenset({"clip", "snapshot"})


class AskedFiles:
    """Safe from any thread: each call is its own transaction."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._insert = _upsert_dialect(engine)

    def record(self, request_id: str, device: str, command: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                self._insert(T.asked_files)
                .values(request_id=request_id, device=device, command=command, at=time.time())
                .on_conflict_do_nothing(index_elements=[T.asked_files.c.request_id])
            )

    def command(self, device: str, request_id: str) -> str | None:
        """What ``device`` was asked for under ``request_id`` (None: nothing)."""
        with self.engine.connect() as conn:
            return conn.execute(
                sa.select(T.asked_files.c.command).where(
                    T.asked_files.c.request_id == request_id, T.asked_files.c.device == device
                )
            ).scalar()
