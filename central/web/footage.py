"""Clip and picture requests made from the console, followed until the file is stored.

``FootageDesk.ask`` sends a ``BoxRequest`` under the officer's account (audited first) and
starts a follower thread that turns what the box and the receiver say into a ``Progress``:
waiting, box offline (the request stays queued for it), cutting, uploading (bytes the
station holds), done (with the stored file), failed (with the reason code). Pages read the
progress; the event stream waits on ``wait_change``.

A request outlives its follower: after a restart of the console, or once the follower stops
waiting, ``progress_from_store`` rebuilds the progress from the audit row and the clips table,
which the ingest workers and the receiver keep up to date.

Threading: each follower thread writes its own ``Progress`` under the desk's condition
lock; readers copy it under the same lock.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from roadside.central.config import CentralConfig
from roadside.central.officer import BoxRequest, RequestError, Update, wait_for_file
from roadside.central.store import Store, queries
from roadside.errors import RoadsideError
from roadside.wire.commands import ReplyState
from roadside.wire.messages import Presence
from roadside.wire.transfer import XferAckState

log = logging.getLogger(__name__)

MAX_FOLLOWED = 32  # requests followed at once by one console; more are refused
KEEP_FINISHED_S = 3600.0  # finished requests stay in memory this long (then: the database)
FILE_RECORD_WAIT_S = 30.0  # the receiver's record may trail the box's final reply


class Phase(enum.Enum):
    SENT = "sent"  # published; no word from the box yet
    OFFLINE = "offline"  # the box is off the link: the request waits for it
    WORKING = "working"  # the box is cutting the clip or taking the picture
    UPLOADING = "uploading"  # the file is on its way
    DONE = "done"  # stored at the station, sha256 checked
    FAILED = "failed"  # refused or failed: see ``code``
    WAITING = "waiting"  # the console stopped following; the box may still answer

    @property
    def final(self) -> bool:
        return self in (Phase.DONE, Phase.FAILED)


@dataclass
class Progress:
    """How one request stands, as the console shows it."""

    request_id: str
    device: str
    command: str
    officer: str
    phase: Phase = Phase.SENT
    code: str | None = None  # error reason code (protocol ErrorCode, or no_file)
    detail: str | None = None  # the box's own words
    size: int | None = None
    held: int = 0
    chunk: int = 1
    xid: str | None = None
    fraction: float | None = None
    drops: int = 0
    file: dict[str, Any] | None = None
    version: int = 0
    updated: float = field(default_factory=time.time)

    @property
    def percent(self) -> int | None:
        if self.phase is Phase.DONE:
            return 100
        if self.size:
            return min(100, int(100 * self.held / self.size))
        if self.fraction is not None:
            return int(100 * self.fraction)
        return None


def progress_from_store(store: Store, request_id: str) -> Progress | None:
    """A request's progress from the database alone (no follower in this process)."""
    with store.connect() as conn:
        rows = queries.audit(conn, request_id=request_id, limit=1)
    if not rows:
        return None
    row = rows[0]
    p = Progress(request_id, row["device"] or "", row["action"], row["requester"])
    result = row["result"] or {}
    clip = store.clips.for_request(request_id)
    if row["state"] == "done" and clip and clip["state"] == "done":
        p.phase, p.file = Phase.DONE, clip
        p.size = p.held = clip["bytes"] or 0
    elif row["state"] == "done":
        p.phase, p.code = Phase.FAILED, "no_file"
    elif row["state"] in ("error", "failed", "cancelled"):
        p.phase, p.code, p.detail = Phase.FAILED, result.get("code"), row["detail"]
    elif row["state"] == "working":
        p.phase = Phase.UPLOADING if clip else Phase.WORKING
        p.fraction = result.get("pg")
    else:
        p.phase = Phase.WAITING if row["state"] == "timeout" else Phase.SENT
    return p


class FootageDesk:
    """The console's footage requests in flight; one per console process."""

    def __init__(self, cfg: CentralConfig, store: Store) -> None:
        self.cfg = cfg
        self.store = store
        self._progress: dict[str, Progress] = {}
        self._requests: dict[str, BoxRequest] = {}
        self._changed = threading.Condition()
        self._stopping = threading.Event()

    # -- asking ------------------------------------------------------------------------
    def ask(
        self,
        officer: str,
        device: str,
        command: str,
        params: dict[str, Any],
        note: dict[str, Any] | None = None,
        box_online: bool | None = None,
    ) -> str:
        """Send the request and follow it; returns the request id once the broker has it."""
        with self._changed:
            old = time.time() - KEEP_FINISHED_S
            for rq in [k for k, p in self._progress.items() if p.phase.final and p.updated < old]:
                del self._progress[rq]
            running = sum(1 for p in self._progress.values() if not p.phase.final)
        if running >= MAX_FOLLOWED:
            raise RequestError("too many requests in progress at this station; wait a moment")
        req = BoxRequest(
            self.cfg, self.store, device, command, params, requester=officer, audit_note=note
        )
        request_id = req.send()
        progress = Progress(request_id, device, command, officer)
        if box_online is False:
            progress.phase = Phase.OFFLINE
        with self._changed:
            self._progress[request_id] = progress
            self._requests[request_id] = req
        threading.Thread(
            target=self._follow, args=(req,), name=f"follow-{request_id}", daemon=True
        ).start()
        return request_id

    # -- reading -----------------------------------------------------------------------
    def progress(self, request_id: str) -> Progress | None:
        """A copy of the request's progress: followed here, else from the database."""
        with self._changed:
            held = self._progress.get(request_id)
            if held is not None:
                return replace(held)
        return progress_from_store(self.store, request_id)

    def follows(self, request_id: str) -> bool:
        """True while this process holds the request's progress (else it is in the store)."""
        with self._changed:
            return request_id in self._progress

    def wait_change(self, request_id: str, version: int, timeout: float) -> Progress | None:
        """The progress once its version is past ``version`` (or after ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                held = self._progress.get(request_id)
                if held is None:
                    break
                if held.version != version or self._stopping.is_set():
                    return replace(held)
                left = deadline - time.monotonic()
                if left <= 0:
                    return replace(held)
                self._changed.wait(left)
        return progress_from_store(self.store, request_id)

    def stop(self) -> None:
        self._stopping.set()
        with self._changed:
            requests = list(self._requests.values())
            self._changed.notify_all()
        for req in requests:
            req.close()

    # -- the follower thread -----------------------------------------------------------
    def _set(self, request_id: str, **changes: Any) -> None:
        with self._changed:
            p = self._progress[request_id]
            for key, value in changes.items():
                setattr(p, key, value)
            p.version += 1
            p.updated = time.time()
            self._changed.notify_all()

    def _follow(self, req: BoxRequest) -> None:
        rq = req.request_id
        started = time.monotonic()
        try:
            while req.final is None and not self._stopping.is_set():
                update = req.next_update(timeout=0.5)
                if update is not None:
                    self._apply(rq, update)
                elif time.monotonic() - started > self.cfg.officer.clip_timeout_s:
                    self._set(rq, phase=Phase.WAITING)
                    return
            final = req.final
            if final is None:
                return
            if final.state == ReplyState.ERROR:
                self._set(rq, phase=Phase.FAILED, code=final.code, detail=final.detail)
                return
            row = wait_for_file(self.store, rq, FILE_RECORD_WAIT_S)
            if row is None or row["state"] != "done" or not row.get("path"):
                self._set(rq, phase=Phase.FAILED, code="no_file")
            else:
                self._set(rq, phase=Phase.DONE, file=row, held=row["bytes"] or 0)
        except RoadsideError as exc:
            log.warning("request %s: %s", rq, exc)
            self._set(rq, phase=Phase.FAILED, code="failed", detail=str(exc))
        finally:
            req.close()
            with self._changed:
                self._requests.pop(rq, None)

    def _apply(self, rq: str, update: Update) -> None:
        msg: Any = update.msg
        with self._changed:
            p = self._progress[rq]
            phase, size, chunk, xid = p.phase, p.size, p.chunk, p.xid
        if update.kind == "status":
            if msg.state == Presence.OFFLINE and phase is not Phase.OFFLINE:
                self._set(rq, phase=Phase.OFFLINE, drops=p.drops + 1)
            elif msg.state == Presence.ONLINE and phase is Phase.OFFLINE:
                self._set(rq, phase=Phase.UPLOADING if xid else Phase.SENT)
        elif update.kind == "init" and msg.request_id in (None, rq):
            self._set(rq, phase=Phase.UPLOADING, xid=msg.id, size=msg.size, chunk=msg.chunk_size)
        elif update.kind == "ack" and size is not None and msg.transfer_id == xid:
            chunks = msg.held + sum(b - a for a, b in msg.ranges)
            held = size if msg.state == XferAckState.DONE else min(size, chunks * chunk)
            self._set(rq, held=held)
        elif update.kind == "reply" and msg.request_id == rq and msg.state == ReplyState.PROGRESS:
            self._set(
                rq,
                phase=Phase.UPLOADING if msg.transfer_id else Phase.WORKING,
                xid=xid or msg.transfer_id,
                fraction=msg.progress,
            )
