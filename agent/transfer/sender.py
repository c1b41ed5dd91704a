"""Chunked, resumable uploads from the box to the station over the MQTT uplink: the shell.

Why not one MQTT message per file: a 3G/4G link that drops every few minutes never finishes
a large message, and every drop starts it over. Why not EMQX's file transfer alone: its
synchronous mode waits for each segment's PUBACK (one round trip per segment), and neither it
nor AWS IoT's stream delivery (the device pulls blocks and keeps a bitmap) lets the sender
keep a window of chunks in flight and resume from what the far end actually holds. How one
transfer behaves (the init as "what do you hold?", the window, selective acks, limbo after a
reconnect, the deadline) is ``SendMachine`` in machine.py, a state machine with no threads,
clock or I/O. This module is the thin threaded shell around one machine per transfer: it owns
the clock, the files, the transfer store and the uplink, feeds the machines events and carries
out their actions. Its own policy is small: snapshots go before clips (then oldest first, one
transfer at a time), a token bucket caps the upload at ``kbps`` so events keep their share of
a slow link, and chunks are a bulk source of the uplink's sender (they move only when no
reply, event, count or health message is waiting).

Threads: the uplink's link thread calls ``next_message``/``acked``/``lost`` (on every turn
of its loop), and delivers station acks (``_on_ack``) and link changes (``_on_link``); the
clock thread here feeds the machines the time and carries out their actions (store, listeners,
files, aborts); the command worker calls ``send_file`` and ``cancel``. One lock (``_lock``)
guards every machine, the running map, the action queue and the token bucket; the clock
thread carries actions out with no lock held, so listeners may call back in.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

from pydantic import ValidationError

from roadside import __version__
from roadside.agent.transfer.store import TransferRecord, TransferStore
from roadside.agent.uplink import BulkMessage, Inbound, Uplink
from roadside.backoff import Backoff
from roadside.config.agent import MqttConfig, TransferConfig
from roadside.digest import sha256_file
from roadside.evidence import ClipManifest, Signer
from roadside.ids import new_id
from roadside.transfer.machine import (
    Action,
    Deadline,
    Ending,
    Finished,
    Progress,
    SendChunk,
    SendInit,
    SendMachine,
    Silence,
    Token,
    Tuning,
    take_ack,
)
from roadside.transfer.pacing import TokenBucket
from roadside.wire.commands import ErrorCode
from roadside.wire.topics import XFER, XFER_ABORT, XFER_ACK, XFER_DATA, XFER_INIT, xfer_topic
from roadside.wire.transfer import (
    CHUNK_HEADER,
    TransferKind,
    XferAbort,
    XferAck,
    XferEvidence,
    XferInit,
    pack_chunk,
)

log = logging.getLogger(__name__)

STORE_FILE = "transfers.db"
HELLO_FIRST_S = 5.0  # an unanswered init is asked again after about this, doubling ...
HELLO_MAX_S = 60.0  # ... up to this (with jitter: roadside.backoff)
SAVE_EVERY_S = 2.0  # progress is written to the store at most this often
MQTT_OVERHEAD = 8  # fixed header, remaining length and packet id of a QoS 1 PUBLISH
CHUNK_WIRE_BYTES = CHUNK_HEADER.size + 60 + MQTT_OVERHEAD  # a chunk's cost beyond its data
KEEP_FINISHED_S = 30 * 86400
CLOCK_S = 0.5  # the clock thread looks at deadlines and timers this often

# What a machine's ending is called in the record and the reply.
_CODES = {
    Ending.CANCELLED: ErrorCode.CANCELLED,
    Ending.DEADLINE: ErrorCode.DEADLINE,
    Ending.REFUSED: ErrorCode.FAILED,
    Ending.BROKEN: ErrorCode.FAILED,
}


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
class _Running:
    """One transfer the shell carries: its record, its machine, its open file."""

    rec: TransferRecord
    machine: SendMachine
    file: BinaryIO | None = None
    evidence: XferEvidence | None = None  # signed once per run, sent with every init
    saved_revision: int = 0
    saved_at: float = 0.0

    def close(self) -> None:
        if self.file is not None:
            with contextlib.suppress(OSError):
                self.file.close()
            self.file = None


Listener = Callable[[TransferRecord], None]
ProgressListener = Callable[[TransferRecord, float], None]


class TransferSender:
    """Sends files to the station through ``uplink``; see the module doc.

    ``send_file`` starts one; ``on_progress`` and ``on_finished`` listeners hear how it goes
    (``rec.state`` is "done" or "failed", with ``code`` and ``msg``).
    """

    def __init__(
        self,
        uplink: Uplink,
        data_dir: str | Path,
        cfg: TransferConfig,
        signer: Signer | None = None,
    ) -> None:
        self.uplink = uplink
        self.signer = signer  # the device key: every manifest goes out signed
        self.device = uplink.device
        self.cfg = cfg
        self.data_dir = Path(data_dir)
        self.outgoing = self.data_dir / "outgoing"
        self.outgoing.mkdir(parents=True, exist_ok=True)
        self.store = TransferStore(self.data_dir / STORE_FILE)
        self.stats = SenderStats()
        self.on_progress: list[ProgressListener] = []
        self.on_finished: list[Listener] = []
        self._tuning = Tuning(window=cfg.window, ack_timeout_s=cfg.ack_timeout_s)
        self._lock = threading.Lock()
        self._running: dict[str, _Running] = {}
        self._bucket = TokenBucket(cfg.kbps, 2 * (cfg.chunk_kib * 1024 + 200), time.monotonic())
        self._todo: collections.deque[tuple[TransferRecord, Action]] = collections.deque()
        self._clock = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life cycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Resume stored transfers (after asking the station), subscribe, start the clock.
        Call before ``uplink.start``."""
        with self._lock:
            for rec in self.store.sending():
                self._add(rec, resumed=True)
            if self._running:
                log.info("resuming %d transfer(s)", len(self._running))
        self.store.prune(KEEP_FINISHED_S)
        self._sweep_orphans()
        self.uplink.subscribe(f"{XFER}/+/{XFER_ACK}", self._on_ack)
        self.uplink.add_link_listener(self._on_link)
        self.uplink.add_bulk(self)
        self._thread = threading.Thread(target=self._run_clock, name="transfer-clock", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._poke()
        if self._thread is not None:
            self._thread.join(5)
        self._tick()  # what ended since the last turn: stored, answered, files removed
        with self._lock:
            for run in self._running.values():
                self._save(run, time.monotonic())
                run.close()
        self.store.close()

    # -- the command side ----------------------------------------------------------------
    def send_file(
        self,
        path: str | Path,
        kind: TransferKind,
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
        with self._lock:
            self._add(rec, resumed=False)
        log.info("transfer %s: %s, %d bytes in %d chunks", rec.xid, name, size, rec.chunks)
        return rec

    def cancel(self, target: str, why: str = "cancelled on request") -> TransferRecord | None:
        """Stop the transfer with this transfer id or request id; None when none is running."""
        with self._lock:
            run = self._lookup(target)
            if run is None:
                return None
            self._carry(run, run.machine.cancel(why))
        return run.rec

    def find(self, target: str) -> TransferRecord | None:
        """A transfer by id or request id, running or finished."""
        with self._lock:
            run = self._lookup(target)
            if run is not None:
                return run.rec
        return self.store.get(target) or self.store.for_request(target)

    def active(self) -> list[dict[str, Any]]:
        """Running transfers, for the status command."""
        with self._lock:
            return [
                {
                    "xid": run.rec.xid,
                    "rq": run.rec.rq,
                    "kind": run.rec.kind,
                    "bytes": run.rec.size,
                    "pg": round(run.machine.fraction, 3),
                    "phase": run.machine.phase.label,
                }
                for run in self._ordered()
            ]

    # -- BulkSource (the uplink's link thread) -------------------------------------------
    def next_message(self) -> BulkMessage | None:
        with self._lock:
            ordered = self._ordered()
            if not ordered:
                return None
            run, now = ordered[0], time.monotonic()
            offer = run.machine.offer(now)
            if isinstance(offer, SendInit):
                return self._init_message(run, offer, now)
            if offer is None or not self._bucket.take(offer.length + CHUNK_WIRE_BYTES, now):
                return None  # over the cap: the same chunk is first in line at a later turn
            return self._chunk_message(run, offer, now)

    def acked(self, msg: BulkMessage) -> None:
        xid, token = self._token(msg)
        with self._lock:
            run = self._running.get(xid)
            if run is not None:
                self._carry(run, run.machine.delivered(token))

    def lost(self, msg: BulkMessage) -> None:
        """The link dropped (or the broker refused) before the broker had it."""
        xid, token = self._token(msg)
        with self._lock:
            run = self._running.get(xid)
            if run is not None:
                self._carry(run, run.machine.undelivered(token, time.monotonic()))

    # -- the link thread: station acks and link changes ----------------------------------
    def _on_link(self, up: bool) -> None:
        now = time.monotonic()
        with self._lock:
            for run in list(self._running.values()):
                machine = run.machine
                self._carry(run, machine.link_regained(now) if up else machine.link_lost(now))

    def _on_ack(self, inbound: Inbound) -> None:
        try:
            ack = XferAck.decode(inbound.payload)
        except (ValidationError, ValueError):
            log.warning("unreadable transfer ack on %s: dropped", inbound.topic)
            return
        now = time.monotonic()
        with self._lock:
            self.stats.acks += 1
            run = self._running.get(ack.transfer_id)
            if run is None:
                return
            self._carry(run, take_ack(run.machine, ack, now, "the station"))

    # -- named steps (all under _lock) ---------------------------------------------------
    def _add(self, rec: TransferRecord, resumed: bool) -> None:
        machine = SendMachine(
            rec.manifest,
            Deadline(rec.exp),
            self._tuning,
            Backoff(HELLO_FIRST_S, HELLO_MAX_S),
            time.monotonic(),
            held=bytes(rec.acked),
            resumed=resumed,
        )
        run = _Running(rec, machine)
        self._running[rec.xid] = run
        if not Path(rec.path).exists():
            self._carry(run, machine.broken("the file to send is gone from the box"))

    def _lookup(self, target: str) -> _Running | None:
        return self._running.get(target) or next(
            (run for run in self._running.values() if run.rec.rq == target), None
        )

    def _ordered(self) -> list[_Running]:
        """Snapshots first (small, urgent), then oldest first."""
        return sorted(
            self._running.values(), key=lambda run: (run.rec.kind != "snapshot", run.rec.created)
        )

    def _init_message(self, run: _Running, offer: SendInit, now: float) -> BulkMessage:
        rec = run.rec
        token = run.machine.sent(offer, now)
        self.stats.hellos += 1
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
            asking=offer.q,
            meta=rec.meta,
            evidence=self._evidence(run),
        )
        topic = xfer_topic(self.device, rec.xid, XFER_INIT)
        return BulkMessage(topic, init.encode(), token=(rec.xid, token))

    def _evidence(self, run: _Running) -> XferEvidence | None:
        """The signed manifest of the file (made at the first init of this run)."""
        if self.signer is None:
            return None
        if run.evidence is None:
            rec = run.rec
            meta = rec.meta
            start = meta.get("actual_from", meta.get("t"))
            end = meta.get("actual_to", meta.get("t"))
            manifest = ClipManifest(
                device=self.device,
                xid=rec.xid,
                request_id=rec.rq,
                kind=rec.kind,
                name=rec.name,
                size=rec.size,
                sha256=rec.sha256,
                actual_from=start if isinstance(start, int | float) else None,
                actual_to=end if isinstance(end, int | float) else None,
                software=__version__,
                signed_at=time.time(),
            )
            run.evidence = self.signer.sign(manifest)
        return run.evidence

    def _chunk_message(self, run: _Running, offer: SendChunk, now: float) -> BulkMessage | None:
        rec = run.rec
        try:
            if run.file is None:
                run.file = open(rec.path, "rb")  # noqa: SIM115 - closed when the transfer ends
            data = os.pread(run.file.fileno(), offer.length, offer.offset)
        except OSError as exc:
            self._carry(run, run.machine.broken(f"cannot read the file to send: {exc}"))
            return None
        if len(data) != offer.length:
            self._carry(run, run.machine.broken("the file to send changed size"))
            return None
        token = run.machine.sent(offer, now)
        rec.sent_bytes += offer.length
        self.stats.chunks_sent += 1
        self.stats.chunk_bytes_sent += offer.length
        self.stats.chunks_resent += int(offer.again)
        topic = xfer_topic(self.device, rec.xid, XFER_DATA)
        return BulkMessage(topic, pack_chunk(offer.offset, data), token=(rec.xid, token))

    @staticmethod
    def _token(msg: BulkMessage) -> tuple[str, Token]:
        xid, token = cast(tuple[str, Token], msg.token)
        return xid, token

    def _carry(self, run: _Running, actions: list[Action]) -> None:
        """Apply what a machine asked for to its record now; queue the rest (store, listeners,
        files, the station) for the clock thread."""
        for action in actions:
            if isinstance(action, Finished):
                self._finish(run, action)
            elif isinstance(action, Silence):
                log.info(
                    "transfer %s: no word from the station for %.0f s: asking",
                    run.rec.xid,
                    action.seconds,
                )
                continue
            self._todo.append((run.rec, action))
        if actions:
            self._poke()

    def _finish(self, run: _Running, end: Finished) -> None:
        rec = run.rec
        if end.ending is Ending.DONE:
            rec.state, rec.code = "done", None
            self.stats.done += 1
        else:
            rec.state, rec.code = "failed", end.code or _CODES[end.ending]
            self.stats.failed += 1
        rec.msg = end.msg
        if end.ending is Ending.DEADLINE:
            rec.msg = f"the upload did not finish within {_duration(rec.exp - rec.created)}"
        rec.finished = time.time()
        rec.acked = bytearray(run.machine.held.bits)
        self._running.pop(rec.xid, None)
        run.close()
        why = f": {rec.code}: {rec.msg}" if rec.code else ""
        log.info("transfer %s %s%s", rec.xid, rec.state, why)

    @staticmethod
    def _save_due(run: _Running, now: float) -> bool:
        changed = run.machine.revision != run.saved_revision
        return changed and now - run.saved_at >= SAVE_EVERY_S

    def _save(self, run: _Running, now: float) -> None:
        run.rec.acked = bytearray(run.machine.held.bits)
        run.saved_revision, run.saved_at = run.machine.revision, now
        self.store.save(run.rec)

    # -- the clock thread ----------------------------------------------------------------
    def _poke(self) -> None:
        with self._clock:
            self._clock.notify_all()

    def _run_clock(self) -> None:
        while not self._stop.is_set():
            with self._clock:
                if not self._todo:
                    self._clock.wait(CLOCK_S)
            try:
                self._tick()
            except Exception:  # the clock must keep running: deadlines depend on it
                log.exception("transfer clock step failed")

    def _tick(self) -> None:
        now, wall = time.monotonic(), time.time()
        with self._lock:
            for run in list(self._running.values()):
                self._carry(run, run.machine.tick(now, wall))
                if run.rec.xid in self._running and self._save_due(run, now):
                    self._save(run, now)
            todo = list(self._todo)
            self._todo.clear()
        for rec, action in todo:
            if isinstance(action, Finished):
                self._settle(rec, action)
                self._notify_finished(rec)
            elif isinstance(action, Progress):
                self._notify_progress(rec, action.fraction)

    def _settle(self, rec: TransferRecord, end: Finished) -> None:
        """A transfer ended: store it, remove its file if it owns it, tell the station if it
        does not know yet."""
        self.store.save(rec)
        if rec.owned:
            with contextlib.suppress(FileNotFoundError):
                Path(rec.path).unlink()
        if end.ending.tells_receiver:
            self.uplink.publish(
                f"{XFER}/{rec.xid}/{XFER_ABORT}",
                XferAbort(id=new_id(), code=rec.code or ErrorCode.FAILED, detail=rec.msg or ""),
            )

    def _notify_finished(self, rec: TransferRecord) -> None:
        for listener in self.on_finished:
            try:
                listener(rec)
            except Exception:
                log.exception("transfer listener failed")

    def _notify_progress(self, rec: TransferRecord, fraction: float) -> None:
        for listener in self.on_progress:
            try:
                listener(rec, fraction)
            except Exception:
                log.exception("transfer listener failed")

    def _sweep_orphans(self) -> None:
        """Files in outgoing/ that no running transfer owns (a crash between cut and record)."""
        with self._lock:
            keep = {Path(run.rec.path).name for run in self._running.values()}
        for path in self.outgoing.iterdir():
            if path.name not in keep and path.is_file():
                with contextlib.suppress(OSError):
                    path.unlink()


def device_signer(transfer: TransferConfig, mqtt: MqttConfig | None) -> Signer | None:
    """The box's device key and certificate (``[transfer]``'s, else its ``[mqtt]`` TLS
    files), when it has them."""
    if transfer.device_cert and transfer.device_key:
        return Signer.load(transfer.device_cert, transfer.device_key)
    if mqtt is None or not (mqtt.tls_cert and mqtt.tls_key):
        return None
    return Signer.load(mqtt.tls_cert, mqtt.tls_key)


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
