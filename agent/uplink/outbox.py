"""The durable outbox: every message the box sends waits here, on disk, until the broker acks it.

paho-mqtt keeps unacknowledged QoS 1 messages in RAM only, so a restart or a power cut would
lose them; the outbox is a SQLite table in WAL mode instead. A row is written (and, with
``sync="full"``, on disk) before any attempt to send it, leased to the sender while it is in
flight, and deleted only when the broker's PUBACK comes back. A crash between publish and
PUBACK means the row is sent again after the restart: delivery is at least once, and the
station removes the repeat by the message id.

Order: rows go out by priority (replies, events, counts, health), oldest first within a
priority. After a reconnect, rows written since the link came back ("live") go before the
backlog of the same priority, so hours of stored events do not hold back the present; each
stream stays in order.

Bounded size: ``max_rows`` and ``max_bytes`` (topic + payload bytes). Past either, room is made
down to 95 % of the bound, least urgent priority first and oldest first: health messages are
dropped, count messages are folded pairwise (intervals joined, numbers added: totals are
kept, resolution is lost) and then dropped, then events, then replies. Rows in flight are never
touched. Every drop and fold is counted per kind in the database itself, so losses survive
restarts and are reported in the health heartbeat.

A full card is a state, not a crash (``DiskState``): when SQLite answers "database or disk is
full", room is made inside the file as above (the least urgent rows go first, events and
replies last) and the message is tried once more; one that still does not fit is counted as
``full`` in the losses and ``put`` returns 0. The outbox stays ``FULL`` (``disk_full``, for
the heartbeat) until there is room again: the file grew past its size when it filled, holds
1 MiB of free pages, or a probe every 5 s finds that it could grow; nothing is retried in a
loop.

A damaged file is moved aside and an empty one started (``roadside.statefile``): the box keeps
working, and the loss is counted as ``damaged`` in the new file, so the heartbeat says so.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from roadside.ids import new_id
from roadside.statefile import MovedAside, StateSchema, open_state_file
from roadside.wire.messages import CountMsg, LineCounts

log = logging.getLogger(__name__)

SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    priority INTEGER NOT NULL,
    kind TEXT NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    retain INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_order ON outbox (priority, id);
CREATE TABLE IF NOT EXISTS losses (kind TEXT PRIMARY KEY, n INTEGER NOT NULL);
"""
SCHEMA = StateSchema("outbox", (SCHEMA_V1,))
BUSY_TIMEOUT_S = 5.0
_NO_LIMIT = 1 << 62
ACK_BATCH = 128  # acknowledged rows are deleted from the file this many at a time ...
ACK_FLUSH_S = 0.25  # ... or at least this often (a crash repeats at most these)
READ_AHEAD = 256  # rows read from the file per query when the sender takes
ROOM_FRACTION = 0.95  # making room goes down to this fraction of the bound, not just under it
FOLD = "fold"  # the losses key counting count messages merged into a neighbour
DAMAGED = "damaged"  # the losses key counting outbox files found damaged and started anew
FULL = "full"  # the losses key counting messages not stored because the card was full
FULL_SHED_FRACTION = 10  # on a full card, 1/10 of the rows are shed to make room inside the file
FULL_SHED_STEPS = 3  # ... then 2/10, then 4/10, before the message is given up
ROOM_BACK_BYTES = 1024 * 1024  # this much room (inside the file, or on the card) ends FULL
PROBE_S = 5.0  # while FULL, whether the file can grow again is tried this often


class DiskState(StrEnum):
    """Whether the outbox's file can take new messages."""

    OK = "ok"
    FULL = "full"  # the card (or the file's page limit) is full: shedding by priority


def _is_full(exc: sqlite3.Error) -> bool:
    return "full" in str(exc).lower()


class Priority(IntEnum):
    """Link priorities, most urgent first. BULK is never stored: bulk sources feed the sender."""

    REPLY = 0
    EVENT = 1
    COUNT = 2
    HEALTH = 3
    BULK = 4


KIND_PRIORITY: dict[str, Priority] = {
    "reply": Priority.REPLY,
    "event": Priority.EVENT,
    "count": Priority.COUNT,
    "health": Priority.HEALTH,
}


def priority_of(kind: str) -> Priority:
    """The priority of a topic kind (``reply/<id>`` counts as ``reply``); unknown kinds: EVENT."""
    return KIND_PRIORITY.get(kind.split("/", 1)[0], Priority.EVENT)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One stored message, leased to the sender until ``ack`` or ``release``."""

    id: int
    priority: int
    topic: str
    payload: bytes
    retain: bool


@dataclass(frozen=True, slots=True)
class OutboxStats:
    depth: int  # rows stored (in flight included)
    in_flight: int  # rows leased to the sender
    bytes: int  # topic + payload bytes stored
    losses: dict[str, int]  # per kind since the outbox was made; "fold" counts folded counts


@dataclass(slots=True)
class _Lease:
    priority: int
    size: int


@dataclass(slots=True)
class _Stream:
    """Where reading one priority's live or backlog rows has got to."""

    cursor: int = 0  # highest id read from the file
    ahead: collections.deque[OutboxRow] = field(default_factory=collections.deque)


class Outbox:
    """A durable, bounded, prioritised message queue in one SQLite file.

    Threading: the pipeline thread and the heartbeat call ``put``; the sender thread calls
    ``take``, ``ack`` and ``release``; any thread reads ``stats``. One lock guards the SQLite
    connection and the in-memory bookkeeping (leases, cursors, counters); every call holds it
    briefly. Listeners added with ``on_put`` are called after the lock is released.
    """

    def __init__(
        self,
        path: str | Path,
        max_rows: int = 500_000,
        max_bytes: int = 64 * 1024 * 1024,
        sync: str = "full",
    ) -> None:
        self.path = Path(path)
        self.max_rows = max_rows
        self.max_bytes = max_bytes
        self._put_sync: Literal["FULL", "NORMAL"] = "FULL" if sync == "full" else "NORMAL"
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        self.moved_aside: MovedAside | None = None  # set when the file was found damaged
        self._db = self._open()
        self._sync_mode = self._put_sync
        self._count: dict[int, int] = {}  # rows per priority
        self._bytes = 0
        self._leased: dict[int, _Lease] = {}
        self._leased_per: dict[int, int] = {}
        self._acked: set[int] = set()  # acknowledged, not yet deleted from the file
        self._acked_flush_mono = time.monotonic()
        self._streams: dict[tuple[int, bool], _Stream] = {}  # (priority, live) -> read position
        self._live_mark = 0
        self._tried_upto: dict[int, int] = {}  # highest id ever leased per priority
        self.disk = DiskState.OK
        self._full_pages = 0  # the file's pages when it filled: growing past it means room
        self._next_probe = 0.0
        self._unstored = 0  # messages lost to a full card, not yet written to the losses
        self._load_counters()
        self._fresh_from = self._last_id + 1  # rows below may have been sent by an earlier run

    # -- opening ------------------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        """Open the file; a damaged one is replaced by an empty one (roadside.statefile),
        and what it held is counted as lost (``DAMAGED`` in the losses, so the heartbeat
        reports it)."""
        state = open_state_file(
            self.path, SCHEMA, synchronous=self._put_sync, busy_timeout_s=BUSY_TIMEOUT_S
        )
        self.moved_aside = state.moved_aside
        db = state.db
        db.execute("PRAGMA journal_size_limit=4194304")
        if state.moved_aside is not None:
            db.execute(
                "INSERT INTO losses (kind, n) VALUES (?, 1) "
                "ON CONFLICT (kind) DO UPDATE SET n = n + 1",
                (DAMAGED,),
            )
        return db

    def _load_counters(self) -> None:
        for prio, n, size in self._db.execute(
            "SELECT priority, count(*), "
            "coalesce(sum(length(CAST(topic AS BLOB)) + length(payload)), 0) "
            "FROM outbox GROUP BY priority"
        ):
            self._count[prio] = n
            self._bytes += size
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox'").fetchone()
        self._last_id = row[0] if row else 0

    # -- writing ------------------------------------------------------------------------
    def on_put(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` (from the putting thread) after every stored message."""
        self._listeners.append(listener)

    def put(
        self, topic: str, payload: bytes, priority: int, kind: str, retain: bool = False
    ) -> int:
        """Store one message; returns its row id (0 when a full card left no room for it).
        With sync="full" it is on disk on return."""
        size = len(topic.encode()) + len(payload)
        with self._lock:
            try:
                if self._over(extra_rows=1, extra_bytes=size):
                    self._make_room(extra_rows=1, extra_bytes=size)
                self._set_sync(self._put_sync)
                rowid = self._insert(topic, payload, priority, kind, retain)
            except sqlite3.OperationalError as exc:
                if not _is_full(exc):
                    raise
                rowid = self._put_on_full_card(exc, topic, payload, priority, kind, retain)
                if rowid == 0:
                    return 0
            else:
                self._check_room_back()
            self._last_id = rowid
            self._count[int(priority)] = self._count.get(int(priority), 0) + 1
            self._bytes += size
        for listener in self._listeners:
            listener()
        return rowid

    def _insert(self, topic: str, payload: bytes, priority: int, kind: str, retain: bool) -> int:
        cur = self._db.execute(
            "INSERT INTO outbox (priority, kind, topic, payload, retain, created) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (int(priority), kind, topic, payload, int(retain), time.time()),
        )
        return cur.lastrowid or 0

    def _put_on_full_card(
        self,
        exc: sqlite3.Error,
        topic: str,
        payload: bytes,
        priority: int,
        kind: str,
        retain: bool,
    ) -> int:
        """Free pages inside the file by shedding the least urgent rows, then try once more;
        a message that still does not fit is counted and dropped (0)."""
        if self.disk is DiskState.OK:
            self.disk = DiskState.FULL
            self._full_pages = self._pages()
            self._next_probe = time.monotonic() + PROBE_S
            log.error("outbox: the card is full (%s): shedding the least urgent messages", exc)
        # Rows freed from pages still in use free no page: shed more, a few times at most.
        for step in range(FULL_SHED_STEPS):
            if self.rows - len(self._leased) <= 0:
                break
            try:
                self._shed(max(1, (self.rows << step) // FULL_SHED_FRACTION), 0)
                return self._insert(topic, payload, priority, kind, retain)
            except sqlite3.OperationalError as again:
                if not _is_full(again):
                    raise
        self._unstored += 1
        log.debug("outbox: the card is full: a %s message was not stored", kind.split("/")[0])
        return 0

    def _check_room_back(self) -> None:
        """Leave the FULL state once there is room: the file grew past its size when it
        filled, or has ``ROOM_BACK_BYTES`` free inside, or (tried every ``PROBE_S``) both the
        filesystem and SQLite let it grow by a page more than it has free."""
        if self.disk is DiskState.OK:
            return
        if self._pages() <= self._full_pages and not self._room_inside_or_probed():
            return
        self.disk = DiskState.OK
        lost, self._unstored = self._unstored, 0
        if lost:
            try:
                self._add_losses({FULL: lost})
            except sqlite3.OperationalError:
                self._unstored = lost  # written at the next chance
        log.warning("outbox: room on the card again (%d messages were lost while full)", lost)

    def _room_inside_or_probed(self) -> bool:
        page = int(self._db.execute("PRAGMA page_size").fetchone()[0])
        free_pages = int(self._db.execute("PRAGMA freelist_count").fetchone()[0])
        if free_pages * page >= ROOM_BACK_BYTES:
            return True
        now = time.monotonic()
        if now < self._next_probe:
            return False
        self._next_probe = now + PROBE_S
        want = (free_pages + 1) * page
        try:
            if shutil.disk_usage(self.path.parent).free < want + ROOM_BACK_BYTES:
                return False
        except OSError:
            return False
        # Allocating pages past the free ones is what a full file refuses (its page limit);
        # rolled back, nothing is written.
        self._db.execute("SAVEPOINT probe")
        try:
            self._db.execute(
                "INSERT INTO outbox (priority, kind, topic, payload, created) "
                "VALUES (?, 'probe', '', zeroblob(?), 0)",
                (int(Priority.BULK), want),
            )
            return True
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
                raise
            return False
        finally:
            self._db.execute("ROLLBACK TO probe")
            self._db.execute("RELEASE probe")

    def _rollback(self) -> None:
        """Roll back the open transaction, if SQLite has not already (it may, on a full disk)."""
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def _pages(self) -> int:
        return int(self._db.execute("PRAGMA page_count").fetchone()[0])

    @property
    def disk_full(self) -> bool:
        return self.disk is DiskState.FULL

    # -- the sender's side --------------------------------------------------------------
    def mark_live(self) -> None:
        """The link just came up: rows stored from now on go before the backlog."""
        with self._lock:
            self._live_mark = self._last_id
            for (_prio, live), stream in self._streams.items():
                if live:  # what it read ahead now belongs to the backlog, which re-reads it
                    stream.ahead.clear()
                    stream.cursor = 0

    def take(
        self, limit: int, skip: Collection[int] = (), only: int | None = None
    ) -> list[OutboxRow]:
        """Lease up to ``limit`` rows not in flight, most urgent first (see the module doc),
        leaving the priorities in ``skip`` alone (or taking only priority ``only``)."""
        out: list[OutboxRow] = []
        with self._lock:
            for prio in sorted(self._count):
                if len(out) >= limit:
                    break
                if prio in skip or (only is not None and prio != only):
                    continue
                if self._count[prio] - self._leased_per.get(prio, 0) <= 0:
                    continue
                self._take_from(prio, True, self._live_mark, _NO_LIMIT, limit - len(out), out)
                if len(out) < limit and self._live_mark > 0:
                    self._take_from(prio, False, 0, self._live_mark, limit - len(out), out)
        return out

    def _take_from(
        self, prio: int, live: bool, after: int, upto: int, want: int, out: list[OutboxRow]
    ) -> None:
        """Lease rows with after < id <= upto at one priority, in id order, skipping rows in
        flight; reads the file ``READ_AHEAD`` rows at a time."""
        stream = self._streams.setdefault((prio, live), _Stream())
        while want > 0:
            if not stream.ahead:
                start = max(stream.cursor, after)
                if start >= upto:
                    return
                rows = self._db.execute(
                    "SELECT id, topic, payload, retain FROM outbox "
                    "WHERE priority = ? AND id > ? AND id <= ? ORDER BY id LIMIT ?",
                    (prio, start, upto, READ_AHEAD),
                ).fetchall()
                if not rows:
                    return
                stream.ahead.extend(
                    OutboxRow(rid, prio, topic, bytes(payload), bool(retain))
                    for rid, topic, payload, retain in rows
                )
                stream.cursor = rows[-1][0]
            row = stream.ahead.popleft()
            if row.id in self._leased or row.id in self._acked:
                continue
            self._leased[row.id] = _Lease(prio, len(row.topic.encode()) + len(row.payload))
            self._leased_per[prio] = self._leased_per.get(prio, 0) + 1
            if row.id > self._tried_upto.get(prio, 0):
                self._tried_upto[prio] = row.id
            out.append(row)
            want -= 1

    def _rewind(self, prio: int | None = None, to_id: int | None = None) -> None:
        """Forget what was read ahead (of one priority, or all) and re-read from ``to_id``
        on: rows were given back, changed or deleted behind the cursors."""
        for (p, _live), stream in self._streams.items():
            if prio is not None and p != prio:
                continue
            if stream.ahead:
                stream.cursor = min(stream.cursor, stream.ahead[0].id - 1)
                stream.ahead.clear()
            if to_id is not None:
                stream.cursor = min(stream.cursor, to_id - 1)

    def ack(self, rowids: Iterable[int]) -> None:
        """The broker has these: they are gone from the queue at once and deleted from the
        file in batches (a delete lost to a crash only means a harmless repeat)."""
        with self._lock:
            for rid in rowids:
                lease = self._leased.pop(rid, None)
                if lease is not None:
                    self._forget(lease)
                    self._acked.add(rid)
            if self._acked and (
                len(self._acked) >= ACK_BATCH
                or time.monotonic() - self._acked_flush_mono >= ACK_FLUSH_S
            ):
                self._delete_acked()

    def flush(self) -> None:
        """Delete acknowledged rows from the file now (the sender calls it when idle)."""
        with self._lock:
            self._delete_acked()

    def _delete_acked(self) -> None:
        if self._acked:
            self._set_sync("NORMAL")
            self._db.execute("BEGIN")
            try:
                self._db.executemany("DELETE FROM outbox WHERE id = ?", [(r,) for r in self._acked])
                self._db.execute("COMMIT")
            except sqlite3.OperationalError as exc:
                self._rollback()
                if not _is_full(exc):
                    raise
                # No room even for the journal of a delete: the rows stay acknowledged in
                # memory (never sent again) and are deleted at a later flush.
                log.warning("outbox: cannot delete acknowledged rows yet: %s", exc)
                self._acked_flush_mono = time.monotonic()
                return
            self._acked.clear()
        self._acked_flush_mono = time.monotonic()

    def release(self, rowids: Iterable[int] | None = None) -> None:
        """Give rows in flight back (all of them when None): they will be taken again."""
        with self._lock:
            ids = list(self._leased) if rowids is None else [r for r in rowids if r in self._leased]
            for rid in sorted(ids, reverse=True):
                lease = self._leased.pop(rid)
                self._leased_per[lease.priority] -= 1
                self._rewind(lease.priority, rid)

    def _forget(self, lease: _Lease) -> None:
        self._leased_per[lease.priority] -= 1
        self._count[lease.priority] -= 1
        self._bytes -= lease.size

    # -- bounded size -------------------------------------------------------------------
    def _over(self, extra_rows: int = 0, extra_bytes: int = 0) -> bool:
        return self.rows + extra_rows > self.max_rows or self._bytes + extra_bytes > self.max_bytes

    def _make_room(self, extra_rows: int, extra_bytes: int) -> None:
        """Fold and drop, least urgent priority first, until 95 % of the bounds are free."""
        self._shed(
            self.rows + extra_rows - int(self.max_rows * ROOM_FRACTION),
            self._bytes + extra_bytes - int(self.max_bytes * ROOM_FRACTION),
        )

    def _shed(self, need_rows: int, need_bytes: int) -> None:
        """Fold and drop, least urgent priority first, until ``need_rows`` rows or
        ``need_bytes`` bytes are gone."""
        self._delete_acked()
        self._rewind()  # rows read ahead may be folded or dropped below
        self._db.execute("BEGIN")
        try:
            for prio in sorted(self._count, reverse=True):
                if need_rows <= 0 and need_bytes <= 0:
                    break
                if prio == Priority.COUNT:
                    rows, size = self._fold_counts(need_rows, need_bytes)
                    need_rows -= rows
                    need_bytes -= size
                    if need_rows <= 0 and need_bytes <= 0:
                        break
                rows, size = self._drop_oldest(prio, need_rows, need_bytes)
                need_rows -= rows
                need_bytes -= size
            self._db.execute("COMMIT")
        except BaseException:
            self._rollback()
            self._reload_counters()
            raise

    def _drop_oldest(self, prio: int, need_rows: int, need_bytes: int) -> tuple[int, int]:
        doomed: list[tuple[int, str, int]] = []
        freed_rows = freed_bytes = 0
        for rowid, kind, size in self._db.execute(
            "SELECT id, kind, length(CAST(topic AS BLOB)) + length(payload) FROM outbox "
            "WHERE priority = ? ORDER BY id",
            (prio,),
        ):
            if need_rows - freed_rows <= 0 and need_bytes - freed_bytes <= 0:
                break
            if rowid in self._leased or rowid in self._acked:
                continue
            doomed.append((rowid, kind, size))
            freed_rows += 1
            freed_bytes += size
        self._db.executemany("DELETE FROM outbox WHERE id = ?", [(d[0],) for d in doomed])
        losses: dict[str, int] = {}
        for _rowid, kind, _size in doomed:
            base = kind.split("/", 1)[0]
            losses[base] = losses.get(base, 0) + 1
        self._add_losses(losses)
        self._count[prio] -= freed_rows
        self._bytes -= freed_bytes
        if doomed:
            log.warning("outbox full: dropped %s", ", ".join(f"{n} {k}" for k, n in losses.items()))
        return freed_rows, freed_bytes

    def _fold_counts(self, need_rows: int, need_bytes: int) -> tuple[int, int]:
        """Join neighbouring count messages never sent, pairwise, oldest first.

        Only rows no earlier run and no earlier attempt of this run may have delivered are
        folded, so a fold never counts an interval twice at the station.
        """
        first = max(self._fresh_from, self._tried_upto.get(Priority.COUNT, 0) + 1)
        rows = self._db.execute(
            "SELECT id, topic, payload FROM outbox WHERE priority = ? AND kind = 'count' "
            "AND id >= ? ORDER BY id",
            (int(Priority.COUNT), first),
        ).fetchall()
        freed_rows = freed_bytes = 0
        for (id_a, topic_a, pay_a), (id_b, topic_b, pay_b) in zip(
            rows[0::2], rows[1::2], strict=False
        ):
            if need_rows - freed_rows <= 0 and need_bytes - freed_bytes <= 0:
                break
            if topic_a != topic_b:
                continue
            try:
                a, b = CountMsg.decode(pay_a), CountMsg.decode(pay_b)
            except ValidationError:
                continue
            totals = dict(a.counts)
            for label, n in b.counts.items():
                totals[label] = totals.get(label, 0) + n
            joined = CountMsg(
                id=new_id(),
                start=min(a.start, b.start),
                end=max(a.end, b.end),
                counts=totals,
                lines=_add_lines(a.lines, b.lines),
            ).encode()
            self._db.execute("UPDATE outbox SET payload = ? WHERE id = ?", (joined, id_a))
            self._db.execute("DELETE FROM outbox WHERE id = ?", (id_b,))
            freed_rows += 1
            freed_bytes += len(pay_a) + len(pay_b) - len(joined) + len(topic_b.encode())
        if freed_rows:
            self._add_losses({FOLD: freed_rows})
            self._count[Priority.COUNT] -= freed_rows
            self._bytes -= freed_bytes
            log.warning("outbox full: folded %d count messages into their neighbours", freed_rows)
        return freed_rows, freed_bytes

    def _add_losses(self, losses: dict[str, int]) -> None:
        self._db.executemany(
            "INSERT INTO losses (kind, n) VALUES (?, ?) "
            "ON CONFLICT (kind) DO UPDATE SET n = n + excluded.n",
            list(losses.items()),
        )

    def _reload_counters(self) -> None:
        self._count.clear()
        self._bytes = 0
        self._load_counters()
        for lease in self._leased.values():
            self._count.setdefault(lease.priority, 0)

    # -- reading ------------------------------------------------------------------------
    @property
    def rows(self) -> int:
        """Messages stored, in flight included (a lock-free read: exact enough for reports)."""
        return sum(list(self._count.values()))

    def pending(self) -> int:
        """Rows stored and not in flight."""
        with self._lock:
            return self.rows - len(self._leased)

    def stats(self) -> OutboxStats:
        with self._lock:
            losses = dict(self._db.execute("SELECT kind, n FROM losses").fetchall())
            if self._unstored:
                losses[FULL] = losses.get(FULL, 0) + self._unstored
            return OutboxStats(self.rows, len(self._leased), self._bytes, losses)

    def file_bytes(self) -> int:
        """Bytes the outbox occupies on disk (database, WAL and shared-memory files)."""
        total = 0
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                total += Path(f"{self.path}{suffix}").stat().st_size
        return total

    # -- housekeeping -------------------------------------------------------------------
    def _set_sync(self, mode: Literal["FULL", "NORMAL"]) -> None:
        if mode != self._sync_mode:
            self._db.execute(f"PRAGMA synchronous={mode}")
            self._sync_mode = mode

    def close(self) -> None:
        with self._lock:
            self._delete_acked()
            self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _add_lines(a: LineCounts | None, b: LineCounts | None) -> LineCounts | None:
    """Line crossings of two folded counts, added (``CountMsg.lines``)."""
    if not a or not b:
        return a or b
    out = {line: {c: dict(d) for c, d in by_class.items()} for line, by_class in a.items()}
    for line, by_class in b.items():
        for label, by_dir in by_class.items():
            held = out.setdefault(line, {}).setdefault(label, {})
            for direction, n in by_dir.items():
                held[direction] = held.get(direction, 0) + n
    return out
