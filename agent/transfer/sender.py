"""Chunked, resumable uploads from the box to the station over the MQTT uplink.

Why not one MQTT message per file: a 3G/4G link that drops every few minutes never finishes
a large message, and every drop starts it over. Why not EMQX's file transfer alone: its
synchronous mode waits for each segment's PUBACK (one round trip per segment), and neither it
nor AWS IoT's stream delivery (the device pulls blocks and keeps a bitmap) lets the sender
keep a window of chunks in flight and resume from what the far end actually holds. Here:

- ``init`` (a manifest: name, size, sha256, chunk size) opens the transfer on the station; the
  station answers every ``init`` with an ack of what it holds, so the same message is the
  "where were we?" question after a reconnect or a restart of either side;
- chunks (``d``: offset, CRC-32, data) go out within a window of ``window`` chunks the station
  has not yet acknowledged; each station ack is cumulative (``n`` chunks from the start) plus
  the ranges held beyond, so a gap is seen at once and only that chunk is sent again (one
  connection keeps order: a later chunk acknowledged before an earlier one means the earlier
  one was lost);
- after a reconnect the chunks that were in flight are "in limbo": the box asks (``init``
  again) and meanwhile sends chunks never sent; limbo chunks go again only if the answer says
  they are missing. After a restart the box waits for the answer before sending anything, so
  nothing the station holds is sent twice;
- a token bucket caps the upload at ``kbps`` so events keep their share of a slow link, and
  chunks are a bulk source of the uplink's sender: they move only when no reply, event, count
  or health message is waiting;
- a transfer fails, clearly, at its deadline (and the station is told to drop it); ``cancel``
  does the same on request.

Threads: the uplink's link thread calls ``next_message``/``acked``/``lost`` (on every turn
of its loop), and delivers station acks (``_on_ack``) and connects (``_on_connected``); the
clock thread here handles deadlines, ack timeouts, persistence and listener calls; the command
worker calls ``send_file`` and ``cancel``. One lock (``_lock``) guards every live transfer and
the token bucket; listeners are called on the clock thread with no lock held.
"""

from __future__ import annotations

import bisect
import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from roadside.agent.transfer.store import TransferRecord, TransferStore
from roadside.agent.uplink.client import Inbound
from roadside.agent.uplink.link import Uplink
from roadside.agent.uplink.sender import BulkMessage
from roadside.config.agent import TransferConfig
from roadside.digest import sha256_file
from roadside.ids import new_id
from roadside.wire.commands import ErrorCode
from roadside.wire.topics import XFER, XFER_ABORT, XFER_ACK, XFER_DATA, XFER_INIT, xfer_topic
from roadside.wire.transfer import (
    CHUNK_HEADER,
    XferAbort,
    XferAck,
    XferAckState,
    XferInit,
    pack_chunk,
)

log = logging.getLogger(__name__)

STORE_FILE = "transfers.db"
HELLO_FIRST_S = 5.0  # an unanswered init is asked again after this, doubling ...
HELLO_MAX_S = 60.0  # ... up to this
SAVE_EVERY_S = 2.0  # progress is written to the store at most this often
PROGRESS_STEP = 0.1  # a progress listener call every 10 % ...
PROGRESS_EVERY_S = 15.0  # ... or this often, whichever comes first
MQTT_OVERHEAD = 8  # fixed header, remaining length and packet id of a QoS 1 PUBLISH
KEEP_FINISHED_S = 30 * 86400
CLOCK_S = 0.5  # the clock thread looks at deadlines and timers this often


@dataclass
class SenderStats:
    """Counters for tests, health and benchmarks (plain numbers)."""

    chunks_sent: int = 0
    chunk_bytes_sent: int = 0  # data bytes handed to the link, repeats included
    chunks_resent: int = 0
    hellos: int = 0
    acks: int = 0
    done: int = 0
    failed: int = 0


@dataclass
class _Live:
    """The moving parts of one transfer (under TransferSender._lock)."""

    rec: TransferRecord
    acked_count: int = 0
    station_n: int = 0  # the station's last cumulative count
    cursor: int = 0  # chunks below it were sent at least once (or acknowledged)
    seq: int = 0  # send order, to see losses: the link keeps order
    outstanding: dict[int, int] = field(default_factory=dict)  # chunk -> seq, not yet acked
    sent: bytearray = field(default_factory=bytearray)  # chunks sent by this process
    hi: int = 0  # one past the highest chunk marked acknowledged
    limbo: set[int] = field(default_factory=set)  # in flight when the link dropped
    retx: list[int] = field(default_factory=list)  # known missing, sorted
    phase: str = "hello"  # hello: ask the station what it holds; send: chunks flow
    hold: bool = True  # in hello: send no chunk until the station answers
    q: int = 0  # number of the last init sent
    init_inflight: bool = False
    hello_due: float = 0.0
    hello_tries: int = 0
    last_news: float = field(default_factory=time.monotonic)
    progress_at: float = -1.0
    progress_mono: float = 0.0
    saved_mono: float = 0.0
    dirty: bool = False
    fh: Any = None

    def is_acked(self, idx: int) -> bool:
        return bool(self.rec.acked[idx >> 3] & (1 << (idx & 7)))

    def set_acked(self, idx: int, on: bool) -> bool:
        """Set one bit; True when it changed."""
        byte, bit = idx >> 3, 1 << (idx & 7)
        was = bool(self.rec.acked[byte] & bit)
        if was == on:
            return False
        if on:
            self.rec.acked[byte] |= bit
            self.acked_count += 1
            self.hi = max(self.hi, idx + 1)
        else:
            self.rec.acked[byte] &= ~bit & 0xFF
            self.acked_count -= 1
        return True

    @property
    def fraction(self) -> float:
        return min(1.0, self.acked_count / self.rec.chunks)


class _Bucket:
    """Token bucket in bytes; rate 0 means no cap."""

    def __init__(self, kbps: float, burst: int) -> None:
        self.rate = kbps * 1000 / 8
        self.burst = burst
        self.tokens = float(burst)
        self.at = time.monotonic()

    def take(self, n: int, now: float) -> float:
        """Take ``n`` bytes; 0 when done, else the seconds to wait before asking again."""
        if self.rate <= 0:
            return 0.0
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= min(n, self.burst):
            self.tokens -= n
            return 0.0
        return (min(n, self.burst) - self.tokens) / self.rate


Listener = Callable[[TransferRecord], None]
ProgressListener = Callable[[TransferRecord, float], None]


class TransferSender:
    """Sends files to the station through ``uplink``; see the module doc.

    ``send_file`` starts one; ``on_progress`` and ``on_finished`` listeners hear how it goes
    (``rec.state`` is "done" or "failed", with ``code`` and ``msg``).
    """

    def __init__(self, uplink: Uplink, data_dir: str | Path, cfg: TransferConfig) -> None:
        self.uplink = uplink
        self.device = uplink.device
        self.cfg = cfg
        self.data_dir = Path(data_dir)
        self.outgoing = self.data_dir / "outgoing"
        self.outgoing.mkdir(parents=True, exist_ok=True)
        self.store = TransferStore(self.data_dir / STORE_FILE)
        self.stats = SenderStats()
        self.on_progress: list[ProgressListener] = []
        self.on_finished: list[Listener] = []
        self._lock = threading.Lock()
        self._live: dict[str, _Live] = {}
        self._bucket = _Bucket(cfg.kbps, 2 * (cfg.chunk_kib * 1024 + 200))
        self._events: collections.deque[tuple[str, TransferRecord, float]] = collections.deque()
        self._clock = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life cycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Resume stored transfers (after asking the station), subscribe, start the clock."""
        for rec in self.store.sending():
            live = self._make_live(rec, resumed=True)
            if live is not None:
                self._live[rec.xid] = live
        self.store.prune(KEEP_FINISHED_S)
        self._sweep_orphans()
        self.uplink.subscribe(f"{XFER}/+/{XFER_ACK}", self._on_ack)
        self.uplink.client.listeners.connected.append(self._on_connected)
        self.uplink.add_bulk(self)
        self._thread = threading.Thread(target=self._run_clock, name="transfer-clock", daemon=True)
        self._thread.start()
        if self._live:
            log.info("resuming %d transfer(s)", len(self._live))

    def stop(self) -> None:
        self._stop.set()
        with self._clock:
            self._clock.notify_all()
        if self._thread is not None:
            self._thread.join(5)
        self._tick()  # what ended since the last turn: stored, answered, files removed
        with self._lock:
            for live in self._live.values():
                self.store.save(live.rec)
                _close(live)
        self.store.close()

    # -- the command side ----------------------------------------------------------------
    def send_file(
        self,
        path: str | Path,
        kind: str,
        name: str,
        *,
        rq: str | None = None,
        requester: str | None = None,
        meta: dict[str, Any] | None = None,
        owned: bool = True,
        deadline_s: float | None = None,
    ) -> TransferRecord:
        """Start uploading ``path``; returns its record (``xid`` names the transfer).

        ``owned`` files are deleted once the transfer ends either way.
        """
        path = Path(path)
        size = path.stat().st_size
        now = time.time()
        rec = TransferRecord(
            xid=new_id(),
            kind=kind,
            path=str(path),
            name=name,
            size=size,
            sha256=sha256_file(path),
            cs=self.cfg.chunk_kib * 1024,
            created=now,
            exp=now + (deadline_s or self.cfg.deadline_s),
            rq=rq,
            requester=requester,
            meta=dict(meta or {}),
            owned=owned,
        )
        rec.acked = bytearray((rec.chunks + 7) // 8)
        self.store.add(rec)
        live = self._make_live(rec, resumed=False)
        assert live is not None
        with self._lock:
            self._live[rec.xid] = live
        log.info("transfer %s: %s, %d bytes in %d chunks", rec.xid, name, size, rec.chunks)
        return rec

    def cancel(self, target: str, why: str = "cancelled on request") -> TransferRecord | None:
        """Stop the transfer with this transfer id or request id; None when none is running."""
        with self._lock:
            live = self._live.get(target) or next(
                (lv for lv in self._live.values() if lv.rec.rq == target), None
            )
            if live is None:
                return None
            self._end(live, "failed", ErrorCode.CANCELLED, why)
        self._poke()
        return live.rec

    def find(self, target: str) -> TransferRecord | None:
        """A transfer by id or request id, running or finished."""
        with self._lock:
            live = self._live.get(target) or next(
                (lv for lv in self._live.values() if lv.rec.rq == target), None
            )
            if live is not None:
                return live.rec
        return self.store.get(target) or self.store.for_request(target)

    def active(self) -> list[dict[str, Any]]:
        """Running transfers, for the status command."""
        with self._lock:
            return [
                {
                    "xid": lv.rec.xid,
                    "rq": lv.rec.rq,
                    "kind": lv.rec.kind,
                    "bytes": lv.rec.size,
                    "pg": round(lv.fraction, 3),
                    "phase": lv.phase,
                }
                for lv in self._ordered()
            ]

    # -- BulkSource (the uplink's sender thread) -----------------------------------------
    def next_message(self) -> BulkMessage | None:
        with self._lock:
            live = self._first()
            if live is None:
                return None
            now = time.monotonic()
            if live.phase == "hello" and not live.init_inflight and now >= live.hello_due:
                return self._hello(live, now)
            if live.phase == "hello" and live.hold:
                return None
            if len(live.outstanding) >= self.cfg.window:
                return None
            idx = self._next_chunk(live)
            if idx is None:
                return None
            length = live.rec.chunk_len(idx)
            wait = self._bucket.take(length + CHUNK_HEADER.size + 60 + MQTT_OVERHEAD, now)
            if wait > 0:
                bisect.insort(live.retx, idx)  # not now: first in line at a later turn
                return None
            return self._chunk(live, idx, length)

    def acked(self, msg: BulkMessage) -> None:
        kind, xid, n, _seq = msg.token  # type: ignore[misc]
        with self._lock:
            live = self._live.get(xid)
            if live is not None and kind == "init" and n == live.q:
                live.init_inflight = False

    def lost(self, msg: BulkMessage) -> None:
        """The link dropped (or the broker refused) before the broker had it."""
        kind, xid, n, seq = msg.token  # type: ignore[misc]
        with self._lock:
            live = self._live.get(xid)
            if live is None:
                return
            if kind == "init":
                if n == live.q:
                    live.init_inflight = False
                    live.hello_due = time.monotonic()
            elif live.outstanding.get(n) == seq:
                del live.outstanding[n]
                live.limbo.add(n)
                if live.phase == "send":
                    self._ask(live, hold=False)

    # -- the network thread --------------------------------------------------------------
    def _on_connected(self, _epoch: int, _session_present: bool) -> None:
        with self._lock:
            for live in self._live.values():
                if live.phase == "send":
                    self._ask(live, hold=False)
                else:
                    live.hello_due = time.monotonic()
                    live.init_inflight = False

    def _on_ack(self, inbound: Inbound) -> None:
        try:
            ack = XferAck.decode(inbound.payload)
        except (ValidationError, ValueError):
            log.warning("unreadable transfer ack on %s: dropped", inbound.topic)
            return
        with self._lock:
            self.stats.acks += 1
            live = self._live.get(ack.transfer_id)
            if live is None:
                return
            live.last_news = time.monotonic()
            if ack.state == XferAckState.DONE:
                self._end(live, "done")
            elif ack.state == XferAckState.FAILED:
                self._end(
                    live,
                    "failed",
                    ack.code or ErrorCode.FAILED,
                    ack.detail or "the station gave up the transfer",
                )
            elif ack.state == XferAckState.UNKNOWN:
                if live.phase != "hello" or not live.hold:
                    self._ask(live, hold=True)
            else:
                self._apply(live, ack)
        self._poke()

    # -- named steps (all under _lock) ---------------------------------------------------
    def _first(self) -> _Live | None:
        ordered = self._ordered()
        return ordered[0] if ordered else None

    def _ordered(self) -> list[_Live]:
        """Snapshots first (small, urgent), then oldest first."""
        return sorted(
            self._live.values(), key=lambda lv: (lv.rec.kind != "snapshot", lv.rec.created)
        )

    def _hello(self, live: _Live, now: float) -> BulkMessage:
        live.q += 1
        live.init_inflight = True
        live.hello_due = now + min(HELLO_MAX_S, HELLO_FIRST_S * 2**live.hello_tries)
        live.hello_tries += 1
        self.stats.hellos += 1
        rec = live.rec
        init = XferInit(
            id=rec.xid,
            kind=rec.kind,
            request_id=rec.rq,
            requester=rec.requester,
            name=rec.name,
            size=rec.size,
            sha256=rec.sha256,
            chunk_size=rec.cs,
            at=rec.created,
            expires=rec.exp,
            asking=live.q,
            meta=rec.meta,
        )
        return BulkMessage(
            xfer_topic(self.device, rec.xid, XFER_INIT),
            init.encode(),
            token=("init", rec.xid, live.q, 0),
        )

    def _next_chunk(self, live: _Live) -> int | None:
        while live.retx:
            idx = live.retx.pop(0)
            if not live.is_acked(idx) and idx not in live.outstanding:
                return idx
        while live.cursor < live.rec.chunks:
            idx = live.cursor
            live.cursor += 1
            if not live.is_acked(idx) and idx not in live.outstanding and idx not in live.limbo:
                return idx
        return None

    def _chunk(self, live: _Live, idx: int, length: int) -> BulkMessage | None:
        rec = live.rec
        try:
            if live.fh is None:
                live.fh = open(rec.path, "rb")  # noqa: SIM115 - closed when the transfer ends
            data = os.pread(live.fh.fileno(), length, idx * rec.cs)
        except OSError as exc:
            self._end(live, "failed", ErrorCode.FAILED, f"cannot read the file to send: {exc}")
            self._poke()
            return None
        if len(data) != length:
            self._end(live, "failed", ErrorCode.FAILED, "the file to send changed size")
            self._poke()
            return None
        live.seq += 1
        if live.sent[idx >> 3] & (1 << (idx & 7)):
            self.stats.chunks_resent += 1
        live.sent[idx >> 3] |= 1 << (idx & 7)
        live.outstanding[idx] = live.seq
        rec.sent_bytes += length
        self.stats.chunks_sent += 1
        self.stats.chunk_bytes_sent += length
        live.dirty = True
        return BulkMessage(
            xfer_topic(self.device, rec.xid, XFER_DATA),
            pack_chunk(idx * rec.cs, data),
            token=("d", rec.xid, idx, live.seq),
        )

    def _ask(self, live: _Live, hold: bool) -> None:
        """Ask the station what it holds; until it answers, in-flight chunks are in limbo."""
        live.limbo.update(live.outstanding)
        live.outstanding.clear()
        live.phase = "hello"
        live.hold = hold
        live.hello_due = time.monotonic()
        live.init_inflight = False
        live.hello_tries = 0

    def _apply(self, live: _Live, ack: XferAck) -> None:
        """A RECEIVING ack: the station holds chunks [0, held) and the ``ranges``."""
        chunks = live.rec.chunks
        held: set[int] = set()
        for a, b in ack.ranges:
            held.update(range(max(a, 0), min(b, chunks)))
        n = min(ack.held, chunks)
        truncated = len(ack.ranges) >= 64
        bound = max(n, max((b for _a, b in ack.ranges), default=0))
        start = 0 if n < live.station_n else live.station_n
        live.station_n = n
        newest_seq = 0
        end = min(bound, chunks) if truncated else min(max(bound, live.hi), chunks)
        for idx in range(start, end):
            has = idx < n or idx in held
            if live.set_acked(idx, has) and not has:
                bisect.insort(live.retx, idx)  # the station dropped it (found damaged)
            if has:
                newest_seq = max(newest_seq, live.outstanding.pop(idx, 0))
                live.limbo.discard(idx)
        # One connection keeps order: anything sent before a chunk now acknowledged and still
        # unacknowledged was lost on the way.
        for idx, seq in list(live.outstanding.items()):
            if seq < newest_seq:
                del live.outstanding[idx]
                bisect.insort(live.retx, idx)
        if live.phase == "hello" and ack.asking is not None and ack.asking == live.q:
            live.phase, live.hold, live.hello_tries = "send", False, 0
            live.init_inflight = False
            for idx in sorted(live.limbo):
                if not live.is_acked(idx):
                    bisect.insort(live.retx, idx)
            live.limbo.clear()
        live.dirty = True
        self._maybe_progress(live)

    def _maybe_progress(self, live: _Live) -> None:
        now = time.monotonic()
        frac = live.fraction
        if frac >= 1.0:
            return
        if frac - live.progress_at >= PROGRESS_STEP or (
            now - live.progress_mono >= PROGRESS_EVERY_S and frac > live.progress_at
        ):
            live.progress_at, live.progress_mono = frac, now
            self._events.append(("progress", live.rec, frac))

    def _end(
        self, live: _Live, state: str, code: str | None = None, msg: str | None = None
    ) -> None:
        rec = live.rec
        rec.state = state  # type: ignore[assignment]
        rec.code, rec.msg, rec.finished = code, msg, time.time()
        if state == "done":
            rec.acked = bytearray(b"\xff" * len(rec.acked))
            self.stats.done += 1
        else:
            self.stats.failed += 1
        self._live.pop(rec.xid, None)
        _close(live)
        self._events.append(("finished", rec, 1.0 if state == "done" else live.fraction))
        log.info("transfer %s %s%s", rec.xid, state, f": {code}: {msg}" if code else "")

    def _make_live(self, rec: TransferRecord, resumed: bool) -> _Live | None:
        if not Path(rec.path).exists():
            rec.state, rec.code = "failed", ErrorCode.FAILED
            rec.msg, rec.finished = "the file to send is gone from the box", time.time()
            self.store.save(rec)
            self._events.append(("finished", rec, 0.0))
            return None
        if len(rec.acked) < (rec.chunks + 7) // 8:
            rec.acked = bytearray((rec.chunks + 7) // 8)
        live = _Live(
            rec=rec, hold=resumed, hello_due=time.monotonic(), sent=bytearray(len(rec.acked))
        )
        live.acked_count = sum(bin(b).count("1") for b in rec.acked)
        live.hi = rec.chunks if live.acked_count else 0
        return live

    # -- the clock thread ----------------------------------------------------------------
    def _poke(self) -> None:
        with self._clock:
            self._clock.notify_all()

    def _run_clock(self) -> None:
        while not self._stop.is_set():
            with self._clock:
                if not self._events:
                    self._clock.wait(CLOCK_S)
            try:
                self._tick()
            except Exception:  # the clock must keep running: deadlines depend on it
                log.exception("transfer clock step failed")

    def _tick(self) -> None:
        now, wall = time.monotonic(), time.time()
        aborts: list[TransferRecord] = []
        with self._lock:
            for live in list(self._live.values()):
                if wall >= live.rec.exp:
                    self._end(
                        live,
                        "failed",
                        ErrorCode.DEADLINE,
                        f"the upload did not finish within {self._limit(live)}",
                    )
                    aborts.append(live.rec)
                    continue
                waiting = live.outstanding or live.limbo or live.acked_count == live.rec.chunks
                if (
                    live.phase == "send"
                    and waiting
                    and now - live.last_news > self.cfg.ack_timeout_s
                ):
                    log.info(
                        "transfer %s: no word from the station for %.0f s: asking",
                        live.rec.xid,
                        now - live.last_news,
                    )
                    live.last_news = now
                    self._ask(live, hold=True)
                if live.dirty and now - live.saved_mono >= SAVE_EVERY_S:
                    live.dirty, live.saved_mono = False, now
                    self.store.save(live.rec)
            events = list(self._events)
            self._events.clear()
        for kind, rec, frac in events:
            if kind == "finished":
                self.store.save(rec)
                if rec.state == "failed" and rec.code in (
                    ErrorCode.CANCELLED,
                    ErrorCode.DEADLINE,
                ):
                    aborts.append(rec)
                if rec.owned:
                    with contextlib.suppress(FileNotFoundError):
                        Path(rec.path).unlink()
            self._notify(kind, rec, frac)
        for rec in {r.xid: r for r in aborts}.values():
            self.uplink.publish(
                f"{XFER}/{rec.xid}/{XFER_ABORT}",
                XferAbort(id=new_id(), code=rec.code or ErrorCode.FAILED, detail=rec.msg or ""),
            )

    def _notify(self, kind: str, rec: TransferRecord, frac: float) -> None:
        listeners = self.on_finished if kind == "finished" else self.on_progress
        for listener in listeners:
            try:
                if kind == "finished":
                    listener(rec)  # type: ignore[call-arg]
                else:
                    listener(rec, frac)  # type: ignore[call-arg]
            except Exception:
                log.exception("transfer listener failed")

    def _limit(self, live: _Live) -> str:
        return _duration(live.rec.exp - live.rec.created)

    def _sweep_orphans(self) -> None:
        """Files in outgoing/ that no running transfer owns (a crash between cut and record)."""
        keep = {Path(lv.rec.path).name for lv in self._live.values()}
        for path in self.outgoing.iterdir():
            if path.name not in keep and path.is_file():
                with contextlib.suppress(OSError):
                    path.unlink()


def _close(live: _Live) -> None:
    if live.fh is not None:
        with contextlib.suppress(OSError):
            live.fh.close()
        live.fh = None


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
