"""The receiving side of chunked transfers: reassembles files, verifies them, hands them on.

One implementation for both directions: the station receives clips and snapshots from boxes
on ``xfer/<xid>/...`` (central/receiver.py lands them in the clip store), a box receives
releases from the station on ``dl/<xid>/...`` (agent/update/download.py lands them for the
updater). What differs is only the topic kind and the ``Landing``.

The sending side sends a manifest (``<kind>/<xid>/init``: name, size, sha256, chunk size),
then chunks (``<kind>/<xid>/d``: offset, CRC-32, data) in any order and as often as its link
makes it. Each chunk is written at its offset into a sparse ``<xid>.part`` file and recorded
in a small SQLite file beside it, then acknowledged (``<kind>/<xid>/ack``: chunks held from
the start, plus the ranges held beyond them). A manifest that comes again (the sender
reconnected or restarted) is answered with what is held, so the sender sends only what is
missing. When every chunk is in, the file's sha256 is checked against the manifest, the
landing moves the file into place and records it, and the sender is told ``done``. Partial
files and their state survive a restart of the receiving side.

If the sha256 does not match, each chunk is checked against the CRC-32 it arrived with (a
power cut can leave a recorded chunk unwritten); the damaged ones are forgotten and asked for
again. Only when every chunk is as sent and the whole still does not match does the transfer
fail.

``TransferReceiver.handle`` takes one message and returns the acknowledgements to publish, so
it runs under any MQTT client (the station's ``ReceiverService``, the box's uplink) and in
tests.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import sqlite3
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from pydantic import ValidationError

from roadside.digest import sha256_file
from roadside.ids import new_id
from roadside.statefile import MovedAside, StateSchema, open_state_file
from roadside.wire.commands import ErrorCode
from roadside.wire.topics import (
    DEVICE_PATTERN,
    ULID_PATTERN,
    XFER,
    XFER_ABORT,
    XFER_ACK,
    XFER_DATA,
    XFER_INIT,
    device_of,
    topic,
)
from roadside.wire.transfer import (
    MAX_ACK_RANGES,
    XferAbort,
    XferAck,
    XferAckState,
    XferInit,
    unpack_chunk,
)

log = logging.getLogger(__name__)

DEFAULT_MAX_SIZE = 8 << 30  # largest file accepted, bytes
DEFAULT_MAX_DEADLINE_S = 2 * 86400.0  # a sender's deadline counts up to this past the start
DEFAULT_PARTIAL_BYTES = 16 << 30  # unfinished files held for one sender at most, bytes
STALE_S = 7 * 86400  # a transfer with no deadline and no news for this long is dropped
DEADLINE_GRACE_S = 3600.0  # kept this long past the sender's own deadline, then dropped
_XID = re.compile(ULID_PATTERN)
_DEVICE = re.compile(DEVICE_PATTERN)

STATE_FILE = "receiver.db"
SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS transfers (
    xid TEXT PRIMARY KEY,
    device TEXT NOT NULL,
    manifest TEXT NOT NULL,
    state TEXT NOT NULL,            -- recv, verifying, done, fail
    n INTEGER NOT NULL DEFAULT 0,   -- chunks held from the start (a lower bound)
    created REAL NOT NULL,
    updated REAL NOT NULL,
    finished REAL,
    path TEXT,
    code TEXT,
    msg TEXT,
    dup_bytes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS chunks (
    xid TEXT NOT NULL,
    idx INTEGER NOT NULL,
    crc INTEGER NOT NULL,
    PRIMARY KEY (xid, idx)
) WITHOUT ROWID;
"""
SCHEMA = StateSchema("receiver state", (SCHEMA_V1,))


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message for the receiver's MQTT client to publish."""

    topic: str
    payload: bytes
    qos: int = 1


class Landing(Protocol):
    """Where verified files go, and who hears how each transfer went (one per use)."""

    def admits(self, device: str, init: XferInit) -> tuple[str, str] | None:
        """None to take a newly announced file; else (reason code, why) to refuse it."""
        ...

    def started(self, device: str, init: XferInit) -> None:
        """A new transfer was announced (its first manifest)."""
        ...

    def place(self, device: str, init: XferInit, part: Path) -> Path:
        """Move the verified, fsynced ``part`` file into place; returns where it is now."""
        ...

    def finished(self, device: str, init: XferInit, path: Path) -> None:
        """The file is in place at ``path``."""
        ...

    def failed(self, device: str, xid: str, reason: str) -> None:
        """The transfer was given up (``reason``: "code: why")."""
        ...


@dataclass(frozen=True)
class Bounds:
    """What one sender may make the receiver hold: its deadline and its unfinished bytes are
    the sender's choice, so both are capped here."""

    max_deadline_s: float = DEFAULT_MAX_DEADLINE_S  # past the first manifest, at most
    partial_bytes: int = DEFAULT_PARTIAL_BYTES  # announced sizes of unfinished files, per sender


@dataclass
class ReceiverStats:
    """Counters (written under the receiver's lock, read anywhere)."""

    chunks: int = 0  # chunks written
    bytes: int = 0
    dup_chunks: int = 0  # chunks that were already held (sent twice)
    dup_bytes: int = 0
    bad: int = 0  # damaged or impossible chunks, dropped
    unknown: int = 0  # chunks for transfers with no manifest here
    done: int = 0
    failed: int = 0
    rechecked: int = 0  # chunks found damaged on disk at the sha256 check, asked again
    refused: int = 0  # new transfers refused (the landing, the size or the sender's quota)


@dataclass
class _Partial:
    """What the receiver keeps in memory about one transfer (a cache of its row)."""

    xid: str
    device: str
    manifest: XferInit
    state: str
    n: int
    path: str | None = None
    code: str | None = None
    msg: str | None = None


class TransferReceiver:
    """Reassembles transfers on ``<kind>/<xid>/...``; partial state lives in ``incoming_dir``,
    finished files go where ``landing`` puts them.

    Threading: ``handle`` and ``sweep`` may be called from any thread; one lock serialises
    them (the SQLite connection and the cache are shared). Several processes may share the
    folders (SQLite locks the state file; finishing is claimed by one of them).
    """

    def __init__(
        self,
        incoming_dir: str | Path,
        landing: Landing,
        kind: str = XFER,
        max_size: int = DEFAULT_MAX_SIZE,
        sender: str = "the box",
        what: str = "upload",
        bounds: Bounds | None = None,
    ) -> None:
        self.incoming = Path(incoming_dir)
        self.incoming.mkdir(parents=True, exist_ok=True)
        self.landing = landing
        self.kind = kind
        self.max_size = max_size
        self.sender = sender  # who sends, in messages for people ("the box gave up: ...")
        self.what = what  # what a transfer is called there ("the upload did not finish ...")
        self.bounds = bounds or Bounds()
        self.stats = ReceiverStats()
        self._lock = threading.Lock()
        state = open_state_file(self.incoming / STATE_FILE, SCHEMA, synchronous="NORMAL")
        # Set when the file was damaged and started anew: senders send their files again
        # from the start (their manifests come again and find nothing held).
        self.moved_aside: MovedAside | None = state.moved_aside
        self._db = state.db
        # A finish cut short by a crash is done again when the next message comes.
        self._db.execute("UPDATE transfers SET state = 'recv' WHERE state = 'verifying'")
        self._cache: dict[str, _Partial] = {}

    # -- the one entry point -------------------------------------------------------------
    def handle(self, topic_name: str, payload: bytes) -> list[Outgoing]:
        """Take one message from ``roadside/v1/<device>/<kind>/<xid>/<part>``; returns acks."""
        parts = topic_name.split("/")
        if len(parts) != 6 or device_of(topic_name) is None or parts[3] != self.kind:
            return []
        device, xid, part = parts[2], parts[4], parts[5]
        if not (_DEVICE.match(device) and _XID.match(xid)):
            self.stats.bad += 1
            log.warning("transfer message on a malformed topic %r: dropped", topic_name[:200])
            return []
        with self._lock:
            try:
                if part == XFER_DATA:
                    ack = self._on_chunk(device, xid, payload)
                elif part == XFER_INIT:
                    ack = self._on_init(device, xid, payload)
                elif part == XFER_ABORT:
                    ack = self._on_abort(device, xid, payload)
                else:
                    return []
            except sqlite3.Error as exc:
                log.error("transfer %s: state file error (%s): the sender sends again", xid, exc)
                return []
        return [] if ack is None else [self._out(device, ack)]

    # -- messages ------------------------------------------------------------------------
    def _on_init(self, device: str, xid: str, payload: bytes) -> XferAck:
        try:
            init = XferInit.decode(payload)
        except (ValidationError, ValueError) as exc:
            return self._ack(
                xid,
                XferAckState.FAILED,
                code=ErrorCode.BAD_REQUEST,
                detail=f"the manifest does not parse: {_first_error(exc)}",
            )
        if init.id != xid:
            return self._ack(
                xid,
                XferAckState.FAILED,
                code=ErrorCode.BAD_REQUEST,
                detail="the manifest's id is not the transfer id in its topic",
            )
        known = self._load(xid)
        if known is not None:
            if known.device != device or not _same_file(known.manifest, init):
                return self._ack(
                    xid,
                    XferAckState.FAILED,
                    asking=init.asking,
                    code=ErrorCode.BAD_REQUEST,
                    detail="another file was already announced under this id",
                )
            return self._ack_or_finish(known, asking=init.asking)
        refused = self._refusal(device, init)
        if refused is not None:
            self.stats.refused += 1
            log.warning("transfer %s from %s refused: %s: %s", xid, device, *refused)
            return self._ack(
                xid, XferAckState.FAILED, asking=init.asking, code=refused[0], detail=refused[1]
            )
        return self._state_ack(self._create(device, init), asking=init.asking)

    def _refusal(self, device: str, init: XferInit) -> tuple[str, str] | None:
        """Why a newly announced file is not taken (reason code, why), or None."""
        refused = self.landing.admits(device, init)
        if refused is not None:
            return refused
        if init.size > self.max_size:
            return (
                ErrorCode.TOO_LARGE,
                f"{init.size} bytes is over the station's limit of {self.max_size}",
            )
        held = sum(
            XferInit.decode(m).size
            for (m,) in self._db.execute(
                "SELECT manifest FROM transfers WHERE device = ? AND state = 'recv'", (device,)
            )
        )
        if held + init.size > self.bounds.partial_bytes:
            return (
                ErrorCode.BUSY,
                f"{held} bytes of unfinished {self.what}s from {device} are held already; "
                f"{init.size} more is over the limit of {self.bounds.partial_bytes}: "
                "send again when one has finished",
            )
        return None

    def _on_chunk(self, device: str, xid: str, payload: bytes) -> XferAck | None:
        try:
            offset, data = unpack_chunk(payload)
        except ValueError as exc:
            self.stats.bad += 1
            log.info("transfer %s: chunk dropped: %s", xid, exc)
            known = self._load(xid)
            return None if known is None else self._state_ack(known)
        known = self._load(xid)
        if known is None or known.device != device:
            self.stats.unknown += 1
            return self._ack(xid, XferAckState.UNKNOWN)
        if known.state != "recv":
            self.stats.dup_chunks += 1
            self.stats.dup_bytes += len(data)
            return self._state_ack(known)
        idx = self._index_of(known.manifest, offset, len(data))
        if idx is None:
            self.stats.bad += 1
            return self._state_ack(known)
        self._write(known, offset, data)
        cur = self._db.execute(
            "INSERT OR IGNORE INTO chunks (xid, idx, crc) VALUES (?, ?, ?)",
            (xid, idx, zlib.crc32(data)),
        )
        if cur.rowcount == 0:
            self.stats.dup_chunks += 1
            self.stats.dup_bytes += len(data)
            self._db.execute(
                "UPDATE transfers SET dup_bytes = dup_bytes + ? WHERE xid = ?", (len(data), xid)
            )
        else:
            self.stats.chunks += 1
            self.stats.bytes += len(data)
        return self._ack_or_finish(known)

    def _on_abort(self, device: str, xid: str, payload: bytes) -> XferAck | None:
        try:
            abort = XferAbort.decode(payload)
            code, msg = abort.code[:32], abort.detail[:500]
        except (ValidationError, ValueError):
            code, msg = ErrorCode.CANCELLED, f"{self.sender} abandoned the transfer"
        known = self._load(xid)
        if known is None or known.device != device:
            return None
        if known.state in ("recv", "verifying"):
            self._fail(known, code, f"{self.sender} gave up: {msg}")
        return self._state_ack(known)

    # -- state ---------------------------------------------------------------------------
    def _create(self, device: str, init: XferInit) -> _Partial:
        now = time.time()
        part = self._part_path(init.id)
        with open(part, "wb") as fh:
            fh.truncate(init.size)  # sparse: chunks land at their offsets
        self._db.execute(
            "INSERT OR IGNORE INTO transfers (xid, device, manifest, state, n, created, updated)"
            " VALUES (?, ?, ?, 'recv', 0, ?, ?)",
            (init.id, device, init.encode().decode(), now, now),
        )
        partial = self._load(init.id)
        assert partial is not None
        try:
            self.landing.started(device, init)
        except Exception:  # the file still arrives; the record can be made again
            log.exception("transfer %s: cannot record its start", init.id)
        log.info(
            "transfer %s from %s: %s, %d bytes in %d chunks",
            init.id,
            device,
            init.name,
            init.size,
            init.chunks,
        )
        return partial

    def _load(self, xid: str) -> _Partial | None:
        cached = self._cache.get(xid)
        if cached is not None and cached.state in ("done", "fail"):
            return cached
        row = self._db.execute(
            "SELECT device, manifest, state, n, path, code, msg FROM transfers WHERE xid = ?",
            (xid,),
        ).fetchone()
        if row is None:
            return None
        device, manifest, state, n, path, code, msg = row
        if cached is None:
            cached = _Partial(xid, device, XferInit.decode(manifest), state, n)
            self._cache[xid] = cached
        cached.state, cached.n = state, max(cached.n, n)
        cached.path, cached.code, cached.msg = path, code, msg
        return cached

    def _index_of(self, init: XferInit, offset: int, length: int) -> int | None:
        """The chunk index of a data message, or None when it cannot belong to the file."""
        if offset % init.chunk_size or offset >= max(init.size, 1):
            return None
        idx = offset // init.chunk_size
        expected = min(init.chunk_size, init.size - offset)
        return idx if length == expected else None

    def _write(self, known: _Partial, offset: int, data: bytes) -> None:
        fd = os.open(self._part_path(known.xid), os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, data, offset)
        finally:
            os.close(fd)

    def _held_beyond(self, known: _Partial) -> list[tuple[int, int]]:
        """Advance ``known.n`` over held chunks; returns the held ranges past it."""
        rows = self._db.execute(
            "SELECT idx FROM chunks WHERE xid = ? AND idx >= ? ORDER BY idx", (known.xid, known.n)
        ).fetchall()
        n = known.n
        ranges: list[tuple[int, int]] = []
        for (idx,) in rows:
            if idx == n and not ranges:
                n += 1
            elif ranges and ranges[-1][1] == idx:
                ranges[-1] = (ranges[-1][0], idx + 1)
            else:
                ranges.append((idx, idx + 1))
        if n != known.n:
            known.n = n
            self._db.execute(
                "UPDATE transfers SET n = ?, updated = ? WHERE xid = ? AND n < ?",
                (n, time.time(), known.xid, n),
            )
        return ranges

    def _finish(self, known: _Partial) -> XferAck:
        """Every chunk is held: check the sha256, move the file into place, say done."""
        claimed = self._db.execute(
            "UPDATE transfers SET state = 'verifying' WHERE xid = ? AND state = 'recv'",
            (known.xid,),
        ).rowcount
        if not claimed:  # another worker is finishing it
            return self._state_ack(self._load(known.xid) or known)
        init = known.manifest
        part = self._part_path(known.xid)
        digest = sha256_file(part)
        if digest != init.sha256:
            bad = self._recheck(known, part)
            if bad:
                self._db.execute(
                    "UPDATE transfers SET state = 'recv', n = ? WHERE xid = ?",
                    (min(bad), known.xid),
                )
                known.state, known.n = "recv", min(bad)
                return self._state_ack(known)
            self._fail(
                known,
                ErrorCode.FAILED,
                "the file's sha256 does not match its manifest although every chunk "
                "arrived as sent",
            )
            return self._state_ack(known)
        with open(part, "rb+") as fh:
            os.fsync(fh.fileno())
        try:
            final = self.landing.place(known.device, init, part)
        except OSError as exc:  # the file stays, complete: the next message tries again
            self._db.execute(
                "UPDATE transfers SET state = 'recv' WHERE xid = ? AND state = 'verifying'",
                (known.xid,),
            )
            log.error("transfer %s: cannot move the file into place: %s", known.xid, exc)
            return self._state_ack(known)
        now = time.time()
        self._db.execute(
            "UPDATE transfers SET state = 'done', path = ?, finished = ?, updated = ? "
            "WHERE xid = ?",
            (str(final), now, now, known.xid),
        )
        self._db.execute("DELETE FROM chunks WHERE xid = ?", (known.xid,))
        known.state, known.path = "done", str(final)
        self.stats.done += 1
        try:
            self.landing.finished(known.device, init, final)
        except Exception:
            log.exception("transfer %s: cannot record the finished file", known.xid)
        log.info(
            "transfer %s from %s done: %s (%d bytes)", known.xid, known.device, final, init.size
        )
        return self._state_ack(known)

    def _recheck(self, known: _Partial, part: Path) -> list[int]:
        """Chunks whose bytes on disk differ from the CRC they arrived with: forgotten."""
        init = known.manifest
        crcs = dict(
            self._db.execute("SELECT idx, crc FROM chunks WHERE xid = ?", (known.xid,)).fetchall()
        )
        bad: list[int] = []
        with open(part, "rb") as fh:
            for idx in range(init.chunks):
                data = fh.read(init.chunk_size)
                if crcs.get(idx) != zlib.crc32(data):
                    bad.append(idx)
        if bad:
            self._db.executemany(
                "DELETE FROM chunks WHERE xid = ? AND idx = ?", [(known.xid, i) for i in bad]
            )
            self.stats.rechecked += len(bad)
            log.warning("transfer %s: %d chunks damaged on disk, asked again", known.xid, len(bad))
        return bad

    def _fail(self, known: _Partial, code: str, msg: str) -> None:
        now = time.time()
        self._db.execute(
            "UPDATE transfers SET state = 'fail', code = ?, msg = ?, finished = ?, updated = ? "
            "WHERE xid = ?",
            (code, msg, now, now, known.xid),
        )
        self._db.execute("DELETE FROM chunks WHERE xid = ?", (known.xid,))
        with contextlib.suppress(FileNotFoundError):
            self._part_path(known.xid).unlink()
        known.state, known.code, known.msg = "fail", code, msg
        self.stats.failed += 1
        try:
            self.landing.failed(known.device, known.xid, f"{code}: {msg}")
        except Exception:
            log.exception("transfer %s: cannot record the failure", known.xid)
        log.warning("transfer %s from %s failed: %s: %s", known.xid, known.device, code, msg)

    def sweep(self, now: float | None = None) -> int:
        """Drop partial transfers past their sender's deadline (or silent for a week)."""
        now = time.time() if now is None else now
        with self._lock:
            rows = self._db.execute(
                "SELECT xid, manifest, created, updated FROM transfers WHERE state = 'recv'"
            ).fetchall()
            dropped = 0
            for xid, manifest, created, updated in rows:
                if now > self._drop_at(XferInit.decode(manifest).expires, created, updated):
                    known = self._load(xid)
                    if known is not None:
                        self._fail(
                            known,
                            ErrorCode.DEADLINE,
                            f"the {self.what} did not finish before its deadline",
                        )
                        dropped += 1
            return dropped

    def _drop_at(self, expires: float | None, created: float, updated: float) -> float:
        """When a partial transfer is dropped: an hour past its sender's deadline, a deadline
        counting up to ``bounds.max_deadline_s`` past its start; with none, a week of silence."""
        cap = created + self.bounds.max_deadline_s
        if expires is None:
            return min(updated + STALE_S, cap + DEADLINE_GRACE_S)
        deadline = expires if math.isfinite(expires) else cap
        return min(deadline, cap) + DEADLINE_GRACE_S

    def state(self, xid: str) -> dict[str, Any] | None:
        """One transfer as the receiver sees it (for tests and status reports)."""
        with self._lock:
            known = self._load(xid)
            if known is None:
                return None
            held = self._db.execute("SELECT count(*) FROM chunks WHERE xid = ?", (xid,)).fetchone()[
                0
            ]
            dup = self._db.execute(
                "SELECT dup_bytes FROM transfers WHERE xid = ?", (xid,)
            ).fetchone()[0]
            return {
                "state": known.state,
                "n": known.n,
                "held": held,
                "path": known.path,
                "code": known.code,
                "msg": known.msg,
                "chunks": known.manifest.chunks,
                "dup_bytes": dup,
            }

    def transfers(self, device: str | None = None) -> list[dict[str, Any]]:
        """Every transfer the receiver knows, oldest first: id, device, state, name, path."""
        with self._lock:
            rows = self._db.execute(
                "SELECT xid, device, state, manifest, path, created, finished FROM transfers "
                "WHERE ? IS NULL OR device = ? ORDER BY created",
                (device, device),
            ).fetchall()
        return [
            {
                "xid": x,
                "device": d,
                "state": st,
                "name": XferInit.decode(m).name,
                "path": p,
                "created": c,
                "finished": f,
            }
            for x, d, st, m, p, c, f in rows
        ]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- acks ----------------------------------------------------------------------------
    def _ack_or_finish(self, known: _Partial, asking: int | None = None) -> XferAck:
        ack = self._state_ack(known, asking=asking)
        if known.state == "recv" and known.n >= known.manifest.chunks:
            ack = self._finish(known)
            return ack.model_copy(update={"asking": asking})
        return ack

    def _state_ack(self, known: _Partial, asking: int | None = None) -> XferAck:
        if known.state == "done":
            return self._ack(
                known.xid, XferAckState.DONE, held=known.manifest.chunks, asking=asking
            )
        if known.state == "fail":
            return self._ack(
                known.xid, XferAckState.FAILED, asking=asking, code=known.code, detail=known.msg
            )
        ranges = self._held_beyond(known)
        return self._ack(
            known.xid,
            XferAckState.RECEIVING,
            held=known.n,
            ranges=ranges[:MAX_ACK_RANGES],
            asking=asking,
        )

    @staticmethod
    def _ack(
        xid: str,
        state: XferAckState,
        held: int = 0,
        ranges: list[tuple[int, int]] | None = None,
        asking: int | None = None,
        code: str | None = None,
        detail: str | None = None,
    ) -> XferAck:
        return XferAck(
            id=new_id(),
            transfer_id=xid,
            state=state,
            held=held,
            ranges=ranges or [],
            asking=asking,
            code=code,
            detail=detail,
        )

    def _out(self, device: str, ack: XferAck) -> Outgoing:
        return Outgoing(topic(device, f"{self.kind}/{ack.transfer_id}/{XFER_ACK}"), ack.encode())

    def _part_path(self, xid: str) -> Path:
        return self.incoming / f"{xid}.part"


def _same_file(a: XferInit, b: XferInit) -> bool:
    return (a.size, a.sha256, a.chunk_size, a.name) == (b.size, b.sha256, b.chunk_size, b.name)


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(message)"
        return f"{where}: {err['msg']}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
