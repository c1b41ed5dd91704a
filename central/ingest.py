"""The ingest worker: MQTT 5 shared subscriptions in, one transaction per batch out.

Delivery is at least once, storage exactly once:
- the worker keeps a persistent session (clean start off, session expiry), so the broker
  queues its share while it restarts;
- QoS 1 messages are acknowledged (PUBACK) only after the transaction holding them commits
  (paho ``manual_ack``); a crash before that makes the broker send them again;
- the writer's upserts make a second copy change nothing (see store/writer.py).

Several workers with the same group split events, counts, health and replies between them
(``$share/<group>/roadside/v1/+/event`` …). Status is subscribed by every worker without
sharing: MQTT 5 sends no retained messages to shared subscriptions, and the retained status is
how a worker learns which boxes are offline.

Threads: paho's network thread runs ``_on_message`` and only appends to ``_inbox``; the writer
thread (``_write_loop``) takes batches from ``_inbox``, writes them and acknowledges. ``_inbox``
(a Queue) is the only thing they share, plus ``_epoch``, an int bumped by the network thread
on each disconnect: an acknowledgement is sent only for messages of the current connection
(packet ids are reused after a reconnect; the broker re-sends the unacknowledged ones).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
import sqlalchemy as sa
from paho.mqtt.subscribeoptions import SubscribeOptions

from roadside.backoff import Backoff
from roadside.central.config import CentralConfig
from roadside.central.mqtt import ReconnectWaits, connect_properties, is_refusal, make_client
from roadside.central.routing import route
from roadside.central.store import Store
from roadside.central.store.batch import Batch
from roadside.wire.topics import COUNT, EVENT, HEALTH, REPLY, ROOT, STATUS

log = logging.getLogger(__name__)

SHARED_KINDS = (EVENT, COUNT, HEALTH, f"{REPLY}/+")
WRITE_RETRY_MIN_S = 0.5  # first wait after a failed database write
WRITE_RETRY_MAX_S = 10.0  # longest wait between tries while the database is away
STOPPING_RETRY_S = 0.5  # between the few tries left when the worker is stopping
# What a write may raise: the database's errors, and a driver's refusal of a value
# (sqlite3 raises OverflowError for an integer beyond 64 bits).
WRITE_ERRORS = (sa.exc.SQLAlchemyError, OverflowError, ValueError, TypeError)


@dataclass(frozen=True, slots=True)
class WriteFailure:
    """Why a write failed. ``transient``: the database could not write anything (locked,
    busy, connection lost, disk full: an OperationalError), so the messages are kept and
    tried again; otherwise it refused what it was given (a constraint, a value it cannot
    hold), and a message it refuses alone is a reject."""

    why: str
    transient: bool


@dataclass(frozen=True, slots=True)
class Inbound:
    topic: str
    payload: bytes
    mid: int
    qos: int
    epoch: int
    received: float


@dataclass
class IngestStats:
    """Counters written by the writer thread, read by anyone (plain ints: no lock needed)."""

    received: int = 0
    stored: int = 0
    rejected: int = 0
    batches: int = 0
    db_errors: int = 0
    connects: int = 0


def subscriptions(group: str) -> list[tuple[str, SubscribeOptions]]:
    """The topic filters one worker subscribes to, QoS 1 each."""
    shared = [(f"$share/{group}/{ROOT}/+/{kind}", SubscribeOptions(qos=1)) for kind in SHARED_KINDS]
    status = (f"{ROOT}/+/{STATUS}", SubscribeOptions(qos=1, retainHandling=1))
    return [*shared, status]


class IngestWorker:
    """One worker: connects, subscribes, stores, acknowledges, until ``stop()``."""

    def __init__(self, cfg: CentralConfig, store: Store, worker: str | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.worker = worker or cfg.ingest.worker
        self.client_id = f"roadside-central-{cfg.ingest.group}-{self.worker}"
        self.stats = IngestStats()
        self.connected = threading.Event()
        # set, with the broker's reason, when it refused our credentials: a retry cannot help
        self.refused: str | None = None
        self.gave_up = threading.Event()
        self._attempts = 0  # connection attempts since the broker was last reached
        self._where = f"{cfg.broker.host}:{cfg.broker.effective_port}"
        self._stop = threading.Event()
        self._inbox: queue.Queue[Inbound] = queue.Queue()
        self._epoch = 0
        self._writer = store.writer(cfg.ingest.rejects_per_box)
        self._client = make_client(cfg.broker, self.client_id, manual_ack=True)
        self._reconnects = ReconnectWaits(self._client)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_connect_fail = self._on_connect_fail
        self._thread = threading.Thread(
            target=self._write_loop, name=f"ingest-{self.worker}", daemon=True
        )

    # -- network thread -------------------------------------------------------------------
    def _on_connect(
        self,
        client: mqtt.Client,
        _u: object,
        flags: mqtt.ConnectFlags,
        reason: object,
        _props: object,
    ) -> None:
        if getattr(reason, "is_failure", False):
            self._attempts += 1
            if is_refusal(reason):  # type: ignore[arg-type]
                self.refused = str(reason)
                log.error("the broker at %s refused %s: %s", self._where, self.client_id, reason)
                self.gave_up.set()
                return
            log.warning(
                "the broker at %s turned %s away (%s, attempt %d); retrying",
                self._where,
                self.client_id,
                reason,
                self._attempts,
            )
            return
        self._attempts = 0
        self._reconnects.connected()
        self.stats.connects += 1
        log.info("%s connected (session present: %s)", self.client_id, flags.session_present)
        client.subscribe(subscriptions(self.cfg.ingest.group))
        self.connected.set()

    def _on_disconnect(
        self, _c: mqtt.Client, _u: object, _flags: object, reason: object, _props: object
    ) -> None:
        self._epoch += 1
        self.connected.clear()
        if not self._stop.is_set():
            log.warning("%s lost the broker (%s); reconnecting", self.client_id, reason)

    def _on_connect_fail(self, _c: mqtt.Client, _u: object) -> None:
        self._attempts += 1
        log.warning(
            "cannot reach the broker at %s (attempt %d); retrying", self._where, self._attempts
        )

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        self._inbox.put(
            Inbound(msg.topic, bytes(msg.payload), msg.mid, msg.qos, self._epoch, time.time())
        )

    # -- writer thread --------------------------------------------------------------------
    def _take(self, first: Inbound) -> list[Inbound]:
        items = [first]
        while len(items) < self.cfg.ingest.batch_max:
            try:
                items.append(self._inbox.get_nowait())
            except queue.Empty:
                break
        return items

    def _store(self, items: list[Inbound]) -> None:
        """Store a batch and acknowledge it; a message the database refuses goes to rejects."""
        if not self._write(items):
            return  # stopping with the database away: the broker sends these again
        self.stats.received += len(items)
        self.stats.batches += 1
        for item in items:
            if item.qos and item.epoch == self._epoch:
                self._client.ack(item.mid, item.qos)

    def _write(self, items: list[Inbound]) -> bool:
        """Write ``items`` in one transaction; when the database refuses it, one by one.

        One message alone that the database refuses is stored as a reject if the database
        takes that: then it was the message, not the database. A database that is locked,
        gone or full (``WriteFailure.transient``), or takes nothing at all, is waited for and
        the same messages tried again until it is back: an honest message never becomes a
        reject because the database was briefly away. False: stopping first.
        """
        backoff = Backoff(WRITE_RETRY_MIN_S, WRITE_RETRY_MAX_S)
        for attempt in itertools.count():
            batch = _batch(items)
            failure = self._try(batch)
            if failure is None:
                return True
            why = failure.why
            if not failure.transient:  # refused what it was given: find the message
                if len(items) > 1:
                    log.warning(
                        "database write of %d messages failed (%s); writing them one by one",
                        len(items),
                        why,
                    )
                    return all(self._write([item]) for item in items)
                if self._reject_alone(items[0], why):
                    return True
            if self._stop.is_set() and attempt >= 3:
                log.error(
                    "database write failed (%s); stopping without it: the broker "
                    "sends this message again",
                    why,
                )
                return False
            wait = STOPPING_RETRY_S if self._stop.is_set() else backoff.next()
            log.warning("database write failed (%s); retrying in %.1f s", why, wait)
            if self._stop.is_set():
                time.sleep(wait)  # stopping: a few quick tries, then leave it to the broker
            else:
                self._stop.wait(wait)
        raise AssertionError("unreachable")

    def _reject_alone(self, item: Inbound, why: str) -> bool:
        """Store ``item`` as a reject; True if the database took that (the message was the
        fault, not the database)."""
        poison = Batch(messages=1)
        poison.add_reject(
            item.topic, item.payload, f"the database refused it: {why}", item.received
        )
        if self._try(poison) is not None:
            return False
        log.error("message on %s rejected: the database refused it (%s)", item.topic, why)
        return True

    def _try(self, batch: Batch) -> WriteFailure | None:
        """Write one batch; None when it is stored, else why not."""
        try:
            rejected = self._writer.write(batch)
        except WRITE_ERRORS as exc:
            self.stats.db_errors += 1
            orig = getattr(exc, "orig", None)
            why = (str(orig or exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            return WriteFailure(why, isinstance(exc, sa.exc.OperationalError))
        self.stats.stored += batch.messages - rejected
        self.stats.rejected += rejected
        return None

    def _write_loop(self) -> None:
        while True:
            try:
                first = self._inbox.get(timeout=0.2)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            self._store(self._take(first))

    # -- life -----------------------------------------------------------------------------
    def start(self) -> IngestWorker:
        b = self.cfg.broker
        self._client.connect_async(
            b.host,
            b.effective_port,
            keepalive=b.keepalive_s,
            clean_start=False,
            properties=connect_properties(b.session_expiry_s, self.cfg.ingest.receive_max),
        )
        self._thread.start()
        self._client.loop_start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Store and acknowledge what has arrived, then leave (the session stays)."""
        self._stop.set()
        self._thread.join(timeout)
        self._client.disconnect()
        self._client.loop_stop()

    def wait_connected(self, timeout: float) -> bool:
        return self.connected.wait(timeout)


def _batch(items: list[Inbound]) -> Batch:
    batch = Batch()
    for item in items:
        route(batch, item.topic, item.payload, item.received)
    return batch
