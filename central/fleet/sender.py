"""The station's sending side of releases: one ``SendMachine`` per box, over one MQTT client.

The same state machine as a box's uploads (roadside/transfer/machine.py: the init as "what do
you hold?", the window, selective acks, limbo after a cut, the deadline), on ``dl/<xid>/...``
with the directions swapped: init, chunks and abort go to the box, its acks come back. This
module is the station's thin shell around the machines, as agent/transfer/sender.py is the
box's: it owns the clock (a pump thread), the release file, the client and a token bucket per
box (``kbps``: a box's share of a slow link stays its own, and the broker never queues more
for a box than its window).

Threads: paho's network thread delivers acks (``_on_message``), PUBACKs (``_on_publish``)
and link changes; the pump thread asks the machines for what to send and carries out their
actions. One lock guards every machine and the in-flight map. paho calls ``on_publish`` while
it holds its own lock of outgoing messages, which ``publish`` takes too: a PUBACK waiting for
our lock while the pump publishes under it would stop both threads for good. So PUBACKs only
join a queue there, and the pump (or the disconnect, before it writes off what is in flight)
applies them under our lock.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError

from roadside.backoff import Backoff
from roadside.central.config import BrokerConfig
from roadside.central.mqtt import ReconnectWaits, connect_properties, make_client
from roadside.digest import sha256_file
from roadside.ids import new_id
from roadside.transfer.machine import (
    Action,
    Deadline,
    Ending,
    Finished,
    Manifest,
    SendChunk,
    SendInit,
    SendMachine,
    Token,
    Tuning,
    take_ack,
)
from roadside.transfer.pacing import TokenBucket
from roadside.wire.commands import ErrorCode
from roadside.wire.topics import DL, ROOT, XFER_ABORT, XFER_ACK, XFER_DATA, XFER_INIT, topic
from roadside.wire.transfer import XferAbort, XferAck, XferInit, pack_chunk

log = logging.getLogger(__name__)

PUMP_S = 0.02  # the pump looks this often at machines with nothing to send
HELLO_FIRST_S = 5.0
HELLO_MAX_S = 60.0


@dataclass(frozen=True)
class SendSettings:
    """How releases travel to each box."""

    chunk_kib: int = 16
    window: int = 4
    kbps: float = 0.0  # per box; 0: no cap
    ack_timeout_s: float = 30.0
    deadline_s: float = 24 * 3600.0


@dataclass
class Delivery:
    """One release on its way to one box."""

    device: str
    xid: str
    version: str
    path: Path
    size: int
    sha256: str
    machine: SendMachine
    bucket: TokenBucket
    created: float
    expires: float
    chunk_size: int
    ending: Finished | None = None
    bytes_sent: int = 0  # chunk data handed to the link, repeats included
    chunks_resent: int = 0
    inits: int = 0
    finished_at: float | None = None
    fh: int | None = field(default=None, repr=False)

    @property
    def done(self) -> bool:
        return self.ending is not None and self.ending.ending is Ending.DONE


Listener = Callable[[Delivery], None]


class ReleaseSender:
    """Sends release files to boxes through the broker in ``cfg``; ``send`` starts one."""

    def __init__(
        self,
        cfg: BrokerConfig,
        settings: SendSettings | None = None,
        client_id: str | None = None,
    ) -> None:
        self.cfg = cfg
        self.settings = settings or SendSettings()
        self.on_finished: list[Listener] = []
        self.connected = threading.Event()
        self._lock = threading.Lock()
        self._running: dict[str, Delivery] = {}  # by xid
        self._inflight: dict[int, tuple[str, Token]] = {}  # mid -> (xid, token)
        self._pubacks: deque[int] = deque()  # mids the broker acknowledged, not yet applied
        self._client = make_client(cfg, client_id or f"roadside-fleet-{new_id()[-10:]}")
        self._client.max_inflight_messages_set(1000)
        self._client.max_queued_messages_set(0)
        self._reconnects = ReconnectWaits(self._client)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_publish = self._on_publish
        self._stop = threading.Event()
        self._pump = threading.Thread(target=self._run, name="release-sender", daemon=True)

    # -- life cycle ----------------------------------------------------------------------
    def start(self) -> ReleaseSender:
        self._client.connect_async(
            self.cfg.host,
            self.cfg.effective_port,
            keepalive=self.cfg.keepalive_s,
            clean_start=True,
            properties=connect_properties(0),
        )
        self._client.loop_start()
        self._pump.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._pump.join(5)
        self._client.disconnect()
        self._client.loop_stop()
        with self._lock:
            for d in self._running.values():
                self._close(d)

    # -- what the rollout asks ------------------------------------------------------------
    def send(self, device: str, path: Path, version: str) -> Delivery:
        """Start sending the release file at ``path`` to ``device``."""
        s = self.settings
        now, wall = time.monotonic(), time.time()
        size = path.stat().st_size
        cs = s.chunk_kib * 1024
        machine = SendMachine(
            Manifest(size, cs),
            Deadline(wall + s.deadline_s),
            Tuning(window=s.window, ack_timeout_s=s.ack_timeout_s),
            Backoff(HELLO_FIRST_S, HELLO_MAX_S),
            now,
        )
        d = Delivery(
            device=device,
            xid=new_id(),
            version=version,
            path=path,
            size=size,
            sha256=sha256_file(path),
            machine=machine,
            bucket=TokenBucket(s.kbps, 2 * (cs + 200), now),
            created=wall,
            expires=wall + s.deadline_s,
            chunk_size=cs,
        )
        with self._lock:
            self._running[d.xid] = d
        log.info("release %s to %s: transfer %s, %d bytes", version, device, d.xid, size)
        return d

    def cancel(self, xid: str, why: str) -> None:
        with self._lock:
            d = self._running.get(xid)
            if d is not None:
                self._carry(d, d.machine.cancel(why))

    def active(self) -> list[Delivery]:
        with self._lock:
            return list(self._running.values())

    # -- paho's network thread -------------------------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, _u: object, _flags: object, reason: ReasonCode, _props: object
    ) -> None:
        if reason.is_failure:
            log.warning("release sender: broker refused the connection: %s", reason)
            return
        self._reconnects.connected()
        client.subscribe(f"{ROOT}/+/{DL}/+/{XFER_ACK}", qos=1)
        now = time.monotonic()
        with self._lock:
            for d in self._running.values():
                self._carry(d, d.machine.link_regained(now))
        self.connected.set()

    def _on_disconnect(self, *_args: object) -> None:
        self.connected.clear()
        now = time.monotonic()
        with self._lock:
            self._apply_pubacks()
            lost, self._inflight = self._inflight, {}
            for xid, token in lost.values():
                d = self._running.get(xid)
                if d is not None:
                    self._carry(d, d.machine.undelivered(token, now))
            for d in self._running.values():
                self._carry(d, d.machine.link_lost(now))

    def _on_publish(
        self, _c: mqtt.Client, _u: object, mid: int, reason: object, _p: object
    ) -> None:
        self._pubacks.append(mid)  # under paho's lock: never take ours here (module doc)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            ack = XferAck.decode(msg.payload)
        except (ValidationError, ValueError):
            log.warning("unreadable release ack on %s: dropped", msg.topic)
            return
        now = time.monotonic()
        with self._lock:
            d = self._running.get(ack.transfer_id)
            if d is not None and msg.topic == topic(d.device, f"{DL}/{d.xid}/{XFER_ACK}"):
                self._carry(d, take_ack(d.machine, ack, now, d.device))

    # -- the pump thread -----------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                moved = self._turn()
            if not moved:
                self._stop.wait(PUMP_S)

    def _turn(self) -> bool:
        """One look at every running delivery: the clock, and at most one message each."""
        self._apply_pubacks()
        now, wall = time.monotonic(), time.time()
        moved = False
        for d in list(self._running.values()):
            self._carry(d, d.machine.tick(now, wall))
            if d.xid not in self._running or not self.connected.is_set():
                continue
            offer = d.machine.offer(now)
            if isinstance(offer, SendInit):
                moved |= self._publish(d, self._init(d, offer), offer, now)
            elif isinstance(offer, SendChunk) and d.bucket.take(offer.length + 80, now):
                payload = self._chunk(d, offer)
                if payload is not None:
                    moved |= self._publish(d, payload, offer, now)
        return moved

    def _apply_pubacks(self) -> None:
        """Tell the machines what the broker has taken (under our lock)."""
        while self._pubacks:
            entry = self._inflight.pop(self._pubacks.popleft(), None)
            if entry is None:
                continue
            d = self._running.get(entry[0])
            if d is not None:
                self._carry(d, d.machine.delivered(entry[1]))

    def _publish(self, d: Delivery, payload: tuple[str, bytes], offer: object, now: float) -> bool:
        name, data = payload
        info = self._client.publish(topic(d.device, f"{DL}/{d.xid}/{name}"), data, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            return False  # the link is down: the offer is asked again later
        token = d.machine.sent(offer, now)  # type: ignore[arg-type]
        self._inflight[info.mid] = (d.xid, token)
        return True

    def _init(self, d: Delivery, offer: SendInit) -> tuple[str, bytes]:
        d.inits += 1
        init = XferInit(
            id=d.xid,
            kind="release",
            name=f"roadside-{d.version}.release",
            size=d.size,
            sha256=d.sha256,
            chunk_size=d.chunk_size,
            at=d.created,
            expires=d.expires,
            asking=offer.q,
            meta={"version": d.version},
        )
        return XFER_INIT, init.encode()

    def _chunk(self, d: Delivery, offer: SendChunk) -> tuple[str, bytes] | None:
        try:
            if d.fh is None:
                d.fh = os.open(d.path, os.O_RDONLY)
            data = os.pread(d.fh, offer.length, offer.offset)
        except OSError as exc:
            self._carry(d, d.machine.broken(f"cannot read the release file: {exc}"))
            return None
        d.bytes_sent += len(data)
        d.chunks_resent += int(offer.again)
        return XFER_DATA, pack_chunk(offer.offset, data)

    def _carry(self, d: Delivery, actions: list[Action]) -> None:
        for action in actions:
            if not isinstance(action, Finished):
                continue
            d.ending, d.finished_at = action, time.time()
            self._running.pop(d.xid, None)
            self._close(d)
            if action.ending.tells_receiver:
                abort = XferAbort(
                    id=new_id(), code=ErrorCode.CANCELLED, detail=action.msg or "given up"
                )
                self._client.publish(
                    topic(d.device, f"{DL}/{d.xid}/{XFER_ABORT}"), abort.encode(), qos=1
                )
            log.info("release %s to %s: %s", d.version, d.device, action.ending.value)
            for listener in self.on_finished:
                try:
                    listener(d)
                except Exception:
                    log.exception("release listener failed")

    @staticmethod
    def _close(d: Delivery) -> None:
        if d.fh is not None:
            os.close(d.fh)
            d.fh = None
