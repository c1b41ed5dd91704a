"""The audit log: every officer request, who asked, when, what, and how it ended.

A row is written before anything is sent to a box, so a request that never gets an answer is
still on record (state ``sent``). The box's final reply closes it, whether the officer's
command line or an ingest worker sees the reply first; a closed row is never reopened.
"""

from __future__ import annotations

import getpass
import socket
import time
from typing import Any

import sqlalchemy as sa

from roadside.central.store import tables as T

FINAL_STATES = frozenset({"done", "error", "timeout", "answered", "failed", "cancelled"})


def who_am_i() -> str:
    """``user@host`` of the person at this terminal."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"[:128]


class AuditLog:
    """Opens, updates and closes audit rows; safe from any thread (each call its own
    transaction)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def open(
        self,
        request_id: str,
        requester: str,
        action: str,
        device: str | None,
        params: dict[str, Any],
        state: str = "sent",
    ) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                T.audit.insert().values(
                    id=request_id,
                    at=time.time(),
                    requester=requester,
                    action=action,
                    device=device,
                    params=params,
                    state=state,
                )
            )

    def update(
        self,
        request_id: str,
        state: str,
        result: dict[str, Any] | None = None,
        detail: str | None = None,
    ) -> bool:
        """Record progress or the end; returns False when the row was already closed."""
        values: dict[str, Any] = {"state": state}
        if result is not None:
            values["result"] = result
        if detail is not None:
            values["detail"] = detail
        if state in FINAL_STATES:
            values["finished"] = time.time()
        with self.engine.begin() as conn:
            done = conn.execute(
                T.audit.update()
                .where(T.audit.c.id == request_id, T.audit.c.finished.is_(None))
                .values(**values)
            )
        return done.rowcount > 0

    def record(
        self,
        requester: str,
        action: str,
        params: dict[str, Any],
        result: dict[str, Any] | None = None,
        device: str | None = None,
    ) -> str:
        """A request answered by the station alone (a query): opened and closed at once."""
        from roadside.ids import new_id

        request_id = new_id()
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(
                T.audit.insert().values(
                    id=request_id,
                    at=now,
                    requester=requester,
                    action=action,
                    device=device,
                    params=params,
                    state="answered",
                    result=result,
                    finished=now,
                )
            )
        return request_id
