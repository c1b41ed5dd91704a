"""The sender: moves messages from the outbox (and bulk sources) onto the link, in order.

It runs on the link thread, as a tick after every turn of the network loop. Within the
in-flight window it takes the most urgent rows first (replies, events, counts, health); a bulk
source (clip chunks, transfers) gets a turn only when the outbox has nothing waiting, and never
more than a share of the window, so an event produced during an upload waits for at most a few
chunk acknowledgements. A row leaves the outbox only when its PUBACK arrives. When the link
comes back, whatever was in flight on the old connection is taken again from the outbox
(paho's RAM copy was dropped): at-least-once, with one owner of retransmission. A PUBACK
saying "no matching subscribers" (MQTT 5) means the broker dropped the message: the row goes
back to the outbox and its priority (its kind: replies, events, counts, health) goes quiet
for a pause (``UNHEARD_MIN_S``, doubling up to ``UNHEARD_MAX_S``, jittered by
``roadside.backoff``), after which one row of it probes, until the station hears that kind
again. So the window between a broker restart and the station subscribing again loses
nothing; a station away for hours costs the link one message per pause, not the whole outbox;
and a kind nobody listens to holds back no other kind.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Protocol

from roadside.agent.uplink.client import UplinkClient
from roadside.agent.uplink.outbox import Outbox, OutboxRow
from roadside.backoff import Backoff

log = logging.getLogger(__name__)

BULK_POLL_S = 0.05  # with bulk sources registered, the link thread turns at least this often
UNHEARD_MIN_S = 1.0  # first pause after a message nobody was subscribed to
UNHEARD_MAX_S = 60.0  # longest such pause (it doubles while nobody hears)


@dataclass(frozen=True, slots=True)
class BulkMessage:
    """One message from a bulk source; ``token`` is the source's own handle for it."""

    topic: str
    payload: bytes
    token: object = None
    retain: bool = False


class BulkSource(Protocol):
    """Low-priority traffic that is not stored in the outbox (it keeps its own state).

    All three methods are called on the link thread and must not block. ``next_message`` is
    asked on every turn of the link thread while there is room, and at least every
    ``BULK_POLL_S``; a source that gets data after returning None may call ``Sender.wake()``
    to be asked at once.
    """

    def next_message(self) -> BulkMessage | None:
        """The next message to send, or None when there is nothing to send now."""
        ...

    def acked(self, msg: BulkMessage) -> None:
        """The broker has ``msg``."""
        ...

    def lost(self, msg: BulkMessage) -> None:
        """The link dropped before ``msg`` was acknowledged: offer it again later."""
        ...


@dataclass(slots=True)
class _InFlight:
    epoch: int
    row_id: int | None = None  # an outbox row ...
    bulk: BulkMessage | None = None  # ... or a bulk message
    source: BulkSource | None = None
    priority: int = 0  # the row's
    retain: bool = False  # (a retained row is kept by the broker even with nobody listening)


@dataclass
class _Quiet:
    """A priority nobody subscribes to at the moment: paused, then probed one row at a time."""

    pauses: Backoff  # UNHEARD_MIN_S, doubling up to UNHEARD_MAX_S, jittered
    until: float = 0.0  # monotonic: the next probe may go then
    probing: bool = False


@dataclass
class SenderStats:
    """Counters for health and benchmarks (plain numbers, written by the sender thread)."""

    published: int = 0
    acked: int = 0
    refused: int = 0  # PUBACKs with a failure reason: re-sent after the next reconnect
    resent: int = 0  # in flight when a connection ended, taken again from the outbox
    unheard: int = 0  # PUBACKs saying nobody was subscribed: kept, offered again later
    bulk_published: int = 0


class Sender:
    """Drains the outbox into an ``UplinkClient`` within its window; a tick of its link thread.

    Threading: everything here (the in-flight map, outbox take/ack/release, bulk sources) runs
    on the client's link thread, so it needs no lock. Other threads only call ``drain`` (which
    waits on an Event) and read ``stats``/``in_flight``.
    """

    def __init__(self, outbox: Outbox, client: UplinkClient, bulk_share: float = 0.5) -> None:
        self.outbox = outbox
        self.client = client
        self.bulk_share = bulk_share
        self.stats = SenderStats()
        self._bulk: list[BulkSource] = []
        self._bulk_turn = 0
        self._inflight: dict[int, _InFlight] = {}
        self._acks: list[tuple[int, int, bool, bool]] = []
        self._refused: list[int] = []  # rows refused on this connection, retried after it
        self._quiet: dict[int, _Quiet] = {}  # priorities nobody heard last time
        self._idle = threading.Event()
        client.listeners.acked.append(self._on_acked)
        client.listeners.connected.append(self._on_connected)
        client.listeners.tick.append(self.step)
        outbox.on_put(client.wake)  # a new row: the link thread looks at once

    # -- public API ---------------------------------------------------------------------
    def add_bulk(self, source: BulkSource) -> None:
        """Register a bulk source (any thread: the list is replaced, never changed in place)."""
        self._bulk = [*self._bulk, source]
        self.client.idle_turn_s = min(self.client.idle_turn_s, BULK_POLL_S)
        self.wake()

    def wake(self) -> None:
        """A bulk source has data again after returning None (any thread): look now."""
        self.client.wake()

    def drain(self, timeout: float) -> bool:
        """Wait until the outbox is empty and nothing is in flight, or the link is down
        (True), or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        self._idle.clear()
        self.wake()  # a turn of the link thread re-checks and sets _idle
        while time.monotonic() < deadline:
            if self._idle.wait(min(0.2, max(0.0, deadline - time.monotonic()))):
                return True
        return False

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    # -- link-thread hooks --------------------------------------------------------------
    def _on_acked(self, mid: int, epoch: int, accepted: bool, heard: bool = True) -> None:
        self._acks.append((mid, epoch, accepted, heard))

    def _on_connected(self, epoch: int, _session_present: bool) -> None:
        self.outbox.mark_live()
        self._forget_old_connections(epoch)

    def step(self) -> None:
        """One turn: record acks, then fill the window."""
        try:
            self._apply_acks()
            if self.client.connected:
                self._fill_window()
            if not self._inflight:
                self.outbox.flush()  # a quiet moment: delete acknowledged rows from the file
        except Exception:  # keep the link thread alive: a bad row must not stop the uplink
            log.exception("sender step failed")
        if not self.client.connected or (not self._inflight and self.outbox.pending() == 0):
            self._idle.set()  # nothing more to do until something changes

    # -- named steps --------------------------------------------------------------------
    def _forget_old_connections(self, epoch: int) -> None:
        """The link came back: what was in flight before is sent again."""
        rows, bulk = [], []
        for mid, entry in list(self._inflight.items()):
            if entry.epoch < epoch:
                del self._inflight[mid]
                if entry.row_id is not None:
                    rows.append(entry.row_id)
                elif entry.bulk is not None and entry.source is not None:
                    bulk.append((entry.source, entry.bulk))
        rows.extend(self._refused)
        self._refused.clear()
        for quiet in self._quiet.values():
            quiet.probing = False  # a probe in flight is taken again with the rest
        self.outbox.release(rows)
        for source, msg in bulk:
            source.lost(msg)
        self.stats.resent += len(rows) + len(bulk)

    def _apply_acks(self) -> None:
        done: list[int] = []
        unheard: dict[int, list[int]] = {}  # priority -> rows nobody heard
        heard: set[int] = set()  # priorities somebody heard
        acks, self._acks = self._acks, []
        for mid, epoch, accepted, listened in acks:
            entry = self._inflight.get(mid)
            if entry is None or entry.epoch != epoch:
                continue  # the status message, or an ack from a connection already forgotten
            del self._inflight[mid]
            if entry.row_id is not None:
                if accepted and not listened and not entry.retain:
                    unheard.setdefault(entry.priority, []).append(entry.row_id)
                elif accepted:
                    done.append(entry.row_id)
                    if listened:
                        heard.add(entry.priority)
                else:  # kept, and not retried on this connection: no hot loop on a refusal
                    self._refused.append(entry.row_id)
                    self.stats.refused += 1
            elif entry.source is not None and entry.bulk is not None:
                if accepted:
                    entry.source.acked(entry.bulk)
                else:
                    entry.source.lost(entry.bulk)
                    self.stats.refused += 1
        if done:
            self.outbox.ack(done)
            self.stats.acked += len(done)
        for prio in heard - unheard.keys():
            if self._quiet.pop(prio, None) is not None:
                log.warning("%s: messages of priority %d are heard again", self.client.device, prio)
        for prio, rows in unheard.items():
            self._pause_unheard(prio, rows)

    def _pause_unheard(self, prio: int, rows: list[int]) -> None:
        """The broker dropped rows for want of a subscriber: give them back, pause their
        priority."""
        self.outbox.release(rows)
        self.stats.unheard += len(rows)
        quiet = self._quiet.get(prio)
        if quiet is None:
            log.warning(
                "%s: nobody subscribes to messages of priority %d at the broker: "
                "keeping them, probing again one at a time",
                self.client.device,
                prio,
            )
            quiet = self._quiet[prio] = _Quiet(Backoff(UNHEARD_MIN_S, UNHEARD_MAX_S))
        quiet.until = time.monotonic() + quiet.pauses.next()
        quiet.probing = False

    def _fill_window(self) -> None:
        room = self.client.capacity - len(self._inflight)  # see UplinkClient.capacity
        if room <= 0:
            return
        rows = self.outbox.take(room, skip=self._quiet.keys()) + self._probes(room)
        for i, row in enumerate(rows):
            sent = self.client.publish(row.topic, row.payload, qos=1, retain=row.retain)
            if sent is None:  # the link went down: give the rest back
                self.outbox.release([r.id for r in rows[i:]])
                return
            self._inflight[sent.mid] = _InFlight(
                sent.epoch, row_id=row.id, priority=row.priority, retain=row.retain
            )
            self.stats.published += 1
        if len(rows) == room or not self._bulk:
            return  # urgent rows may still wait: bulk only when the outbox is empty
        self._fill_bulk(room - len(rows))

    def _probes(self, room: int) -> list[OutboxRow]:
        """One row of each quiet priority whose pause is over (within what room is left)."""
        now = time.monotonic()
        rows: list[OutboxRow] = []
        for prio, quiet in self._quiet.items():
            if quiet.probing or now < quiet.until or len(rows) >= room:
                continue
            probe = self.outbox.take(1, only=prio)
            if probe:
                quiet.probing = True
                rows += probe
        return rows

    def _fill_bulk(self, room: int) -> None:
        cap = max(1, int(self.client.capacity * self.bulk_share))
        in_bulk = sum(1 for e in self._inflight.values() if e.bulk is not None)
        room = min(room, cap - in_bulk)
        idle_sources = 0
        while room > 0 and idle_sources < len(self._bulk):
            source = self._bulk[self._bulk_turn % len(self._bulk)]
            self._bulk_turn += 1
            msg = source.next_message()
            if msg is None:
                idle_sources += 1
                continue
            idle_sources = 0
            sent = self.client.publish(msg.topic, msg.payload, qos=1, retain=msg.retain)
            if sent is None:
                source.lost(msg)
                return
            self._inflight[sent.mid] = _InFlight(sent.epoch, bulk=msg, source=source)
            self.stats.bulk_published += 1
            room -= 1
