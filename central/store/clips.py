"""Clip and snapshot metadata: what the station received from which box, for whom.

Written by the transfer receiver as a file arrives (``started`` when its manifest comes in,
``finished`` once the sha256 matched and the file is in place), read by the officer commands.
Keyed by the transfer id; the officer's request id is a column, so a request finds its file.
A file counts for a request only when it came from the box the request was sent to (the
audit row's device): a box naming another box's request id hands nobody its footage.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from roadside.central.store import tables as T
from roadside.central.store.writer import _upsert_dialect


def _number(meta: dict[str, Any], *keys: str) -> float | None:
    for key in keys:
        value = meta.get(key)
        if isinstance(value, int | float):
            return float(value)
    return None


class ClipRecords:
    """Safe from any thread: each call is its own transaction."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._insert = _upsert_dialect(engine)

    def started(
        self,
        device: str,
        xid: str,
        kind: str,
        *,
        request_id: str | None = None,
        requester: str | None = None,
        name: str | None = None,
        size: int | None = None,
        sha256: str | None = None,
        meta: dict[str, Any] | None = None,
        path: str | None = None,
    ) -> None:
        """A manifest arrived; a repeated one (after a reconnect) changes nothing."""
        meta = dict(meta or {})
        row = {
            "id": xid,
            "request_id": request_id,
            "device": device,
            "kind": kind,
            "requester": requester,
            "name": name,
            "bytes": size,
            "sha256": sha256,
            "meta": meta,
            "path": path,
            "state": "receiving",
            "created": time.time(),
            "asked_from": _number(meta, "from", "asked_from"),
            "asked_to": _number(meta, "to", "asked_to"),
            "actual_from": _number(meta, "actual_from", "t0"),
            "actual_to": _number(meta, "actual_to", "t1"),
            "quality": meta.get("quality") if isinstance(meta.get("quality"), str) else None,
        }
        with self.engine.begin() as conn:
            conn.execute(
                self._insert(T.clips)
                .values(**row)
                .on_conflict_do_nothing(index_elements=[T.clips.c.id])
            )

    def finished(
        self,
        device: str,
        xid: str,
        path: str,
        size: int,
        sha256: str,
        evidence: dict[str, Any] | None = None,
    ) -> None:
        """The whole file from ``device`` is stored at ``path``, its sha256 matched (and its
        signature held)."""
        with self.engine.begin() as conn:
            conn.execute(
                T.clips.update()
                .where(T.clips.c.id == xid, T.clips.c.device == device)
                .values(
                    state="done",
                    path=path,
                    bytes=size,
                    sha256=sha256,
                    finished=time.time(),
                    evidence=evidence,
                )
            )

    def failed(self, device: str, xid: str, reason: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                T.clips.update()
                .where(T.clips.c.id == xid, T.clips.c.device == device, T.clips.c.state != "done")
                .values(state="failed", finished=time.time(), detail=reason)
            )

    def get(self, xid: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(T.clips).where(T.clips.c.id == xid)).mappings().first()
        return dict(row) if row else None

    def for_request(self, request_id: str) -> dict[str, Any] | None:
        """The newest file received for a request from the box it was sent to (what the
        station asked, ``asked_files``, names the box: audited requests and live pictures;
        the audit row does for requests from before that table)."""
        c, a, k = T.clips.c, T.audit.c, T.asked_files.c
        asked = sa.exists().where(k.request_id == c.request_id, k.device == c.device)
        audited = sa.exists().where(a.id == c.request_id, a.device == c.device)
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    sa.select(T.clips)
                    .where(c.request_id == request_id, asked | audited)
                    .order_by(c.created.desc())
                )
                .mappings()
                .first()
            )
        return dict(row) if row else None
