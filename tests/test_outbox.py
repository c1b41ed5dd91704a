"""The durable outbox on real SQLite files: order, leases, durability and the size policy."""

from __future__ import annotations

import itertools
import sqlite3
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roadside.agent.uplink.outbox import FOLD, Outbox, Priority, priority_of
from roadside.ids import new_id
from roadside.wire.messages import CountMsg, EventMsg, HealthMsg

T = "roadside/v1/box/"


def ev(i: int) -> bytes:
    return EventMsg(
        id=new_id(),
        phase="s",
        label="car",
        score=0.5,
        first_seen=float(i),
        last_seen=float(i) + 1,
        box=(0.1, 0.1, 0.1, 0.1),
        track=i,
    ).encode()


def count(i: int, n: int = 1) -> bytes:
    return CountMsg(id=new_id(), start=60.0 * i, end=60.0 * (i + 1), counts={"car": n}).encode()


def health(i: int) -> bytes:
    return HealthMsg(id=new_id(), at=float(i), outbox_depth=i).encode()


def put(box: Outbox, kind: str, payload: bytes) -> int:
    return box.put(T + kind, payload, priority_of(kind), kind)


def test_takes_most_urgent_first_and_oldest_first(tmp_path: Path):
    with Outbox(tmp_path / "o.db", sync="normal") as box:
        order = []
        for i in range(3):
            order.append(("health", put(box, "health", health(i))))
            order.append(("count", put(box, "count", count(i))))
            order.append(("event", put(box, "event", ev(i))))
        order.append(("reply", box.put(T + "reply/r1", b"{}", Priority.REPLY, "reply/r1")))
        rows = box.take(100)
        kinds = [r.topic.rsplit("/", 1)[-1] if "reply" not in r.topic else "reply" for r in rows]
        assert kinds == ["reply"] + ["event"] * 3 + ["count"] * 3 + ["health"] * 3
        for prio in {r.priority for r in rows}:
            ids = [r.id for r in rows if r.priority == prio]
            assert ids == sorted(ids)
        assert box.take(10) == []  # all in flight
        box.ack([r.id for r in rows[:4]])
        assert box.stats().depth == 6 and box.stats().in_flight == 6


def test_rows_survive_a_restart_and_leases_do_not(tmp_path: Path):
    path = tmp_path / "o.db"
    box = Outbox(path)
    payloads = [ev(i) for i in range(5)]
    for p in payloads:
        put(box, "event", p)
    taken = box.take(3)
    box.ack([taken[0].id])  # acknowledged: gone for good, even if the delete was batched
    box.close()  # the other two were in flight: they come back after the restart
    with Outbox(path) as again:
        rows = again.take(10)
        assert [r.payload for r in rows] == payloads[1:]
        assert again.stats().depth == 4


def test_a_killed_writer_loses_nothing_committed(tmp_path: Path):
    """Rows put and never closed (the process died) are there for the next opener."""
    path = tmp_path / "o.db"
    box = Outbox(path)
    for i in range(20):
        put(box, "event", ev(i))
    # No close(): a second connection sees every committed row, as a restart would.
    with Outbox(path) as other:
        assert other.stats().depth == 20
    box.close()


def test_live_rows_go_before_the_backlog(tmp_path: Path):
    with Outbox(tmp_path / "o.db", sync="normal") as box:
        backlog = [put(box, "event", ev(i)) for i in range(5)]
        box.mark_live()
        live = [put(box, "event", ev(10 + i)) for i in range(3)]
        first = box.take(4)
        assert [r.id for r in first] == live + backlog[:1]
        more_live = put(box, "event", ev(20))
        rest = box.take(10)
        assert [r.id for r in rest] == [more_live, *backlog[1:]]


def test_released_rows_are_taken_again_in_order(tmp_path: Path):
    with Outbox(tmp_path / "o.db", sync="normal") as box:
        ids = [put(box, "event", ev(i)) for i in range(6)]
        taken = box.take(4)
        box.release([taken[1].id, taken[2].id])
        again = box.take(10)
        assert [r.id for r in again] == [ids[1], ids[2], ids[4], ids[5]]
        box.release()
        assert [r.id for r in box.take(10)] == ids


def test_full_outbox_drops_health_first_then_folds_counts(tmp_path: Path):
    with Outbox(tmp_path / "o.db", max_rows=100, sync="normal") as box:
        for i in range(30):
            put(box, "health", health(i))
        for i in range(40):
            put(box, "count", count(i, n=i + 1))
        for i in range(30):
            put(box, "event", ev(i))
        assert box.stats().depth == 100
        put(box, "event", ev(99))  # one too many: room is made down to 95 %
        stats = box.stats()
        assert stats.depth <= 95
        assert stats.losses.get("health", 0) >= 6 and "count" not in stats.losses
        assert "event" not in stats.losses and FOLD not in stats.losses
        # Fill on with events: health goes entirely, then counts are folded, totals kept.
        for i in range(40):
            put(box, "event", ev(100 + i))
        stats = box.stats()
        assert stats.depth <= 100
        assert stats.losses["health"] == 30
        assert stats.losses.get(FOLD, 0) > 0 and "event" not in stats.losses
        rows = box.take(1000)
        counts = [CountMsg.decode(r.payload) for r in rows if r.priority == Priority.COUNT]
        assert sum(c.counts["car"] for c in counts) == sum(range(1, 41))  # every car still counted
        assert counts[0].start == 0.0 and counts[-1].end == 40 * 60.0
        assert all(a.end <= b.start for a, b in itertools.pairwise(counts))
        assert sum(1 for r in rows if r.priority == Priority.EVENT) == 71


def test_events_go_last_and_every_loss_is_counted_across_restarts(tmp_path: Path):
    path = tmp_path / "o.db"
    with Outbox(path, max_rows=100, sync="normal") as box:
        put(box, "count", count(0))
        for i in range(300):
            put(box, "event", ev(i))
        stats = box.stats()
        assert stats.depth <= 100
        dropped = stats.losses["event"]
        assert stats.losses["count"] == 1 and dropped >= 200
        kept = [EventMsg.decode(r.payload).track for r in box.take(1000)]
        assert kept == list(range(300 - len(kept), 300))  # the newest events stay
    with Outbox(path, max_rows=100) as again:
        assert again.stats().losses["event"] == dropped


def test_byte_bound(tmp_path: Path):
    with Outbox(tmp_path / "o.db", max_bytes=64 * 1024, sync="normal") as box:
        for i in range(2000):
            put(box, "event", ev(i))
        stats = box.stats()
        assert stats.bytes <= 64 * 1024
        assert stats.losses["event"] > 0 and stats.depth + stats.losses["event"] == 2000


def test_rows_in_flight_are_never_dropped_nor_folded(tmp_path: Path):
    with Outbox(tmp_path / "o.db", max_rows=100, sync="normal") as box:
        for i in range(10):
            put(box, "count", count(i))
        flying = box.take(4)  # counts sent, not yet acknowledged
        box.release([r.id for r in flying[2:]])  # two come back: may have reached the broker
        for i in range(200):
            put(box, "event", ev(i))
        rows = box.take(1000)
        box.release([r.id for r in rows])
        left = {r.id for r in flying[:2]}
        assert not (left & {r.id for r in rows})  # still leased, untouched ...
        box.ack(left)
        assert box.stats().in_flight == 0  # ... and acknowledged normally
        tried = [flying[2].id, flying[3].id]
        with sqlite3.connect(tmp_path / "o.db") as db:
            for rid in tried:  # an attempted count is never folded (could count twice)
                row = db.execute("SELECT payload FROM outbox WHERE id = ?", (rid,)).fetchone()
                assert row is None or CountMsg.decode(row[0]).counts == {"car": 1}


def test_concurrent_producers_and_a_sender_lose_nothing(tmp_path: Path):
    box = Outbox(tmp_path / "o.db", sync="normal")
    produced: list[int] = []
    lock = threading.Lock()

    def producer(base: int) -> None:
        for i in range(300):
            rid = put(box, "event" if i % 3 else "count", ev(base + i))
            with lock:
                produced.append(rid)

    threads = [threading.Thread(target=producer, args=(k * 1000,)) for k in range(3)]
    for t in threads:
        t.start()
    acked: list[int] = []
    while any(t.is_alive() for t in threads) or box.pending():
        rows = box.take(37)
        box.ack(r.id for r in rows)
        acked.extend(r.id for r in rows)
    for t in threads:
        t.join()
    box.close()
    assert sorted(acked) == sorted(produced) and len(set(acked)) == 900


@pytest.mark.slow
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.sampled_from(["event", "count", "health"]), min_size=1, max_size=250))
def test_policy_never_drops_events_while_cheaper_rows_remain(tmp_path: Path, kinds: list[str]):
    path = tmp_path / f"p-{new_id()}.db"
    with Outbox(path, max_rows=100, sync="normal") as box:
        cars = 0
        for i, kind in enumerate(kinds):
            payload = {"event": ev, "count": lambda j: count(j, 2), "health": health}[kind](i)
            cars += 2 if kind == "count" else 0
            put(box, kind, payload)
            stats = box.stats()
            assert stats.depth <= 100
            if stats.losses.get("event"):
                rows = box.take(1000)
                assert not [r for r in rows if r.priority > Priority.EVENT]
                box.release()
        rows = box.take(1000)
        kept_cars = sum(
            CountMsg.decode(r.payload).counts["car"] for r in rows if r.priority == Priority.COUNT
        )
        assert kept_cars <= cars
        if not box.stats().losses.get("count"):  # folded, maybe, but never dropped: all counted
            assert kept_cars == cars


def _fill_the_card(box: Outbox) -> None:
    """The file may not grow past the pages it has: SQLite answers SQLITE_FULL, as on a full
    SD card."""
    with box._lock:
        pages = box._db.execute("PRAGMA page_count").fetchone()[0]
        box._db.execute(f"PRAGMA max_page_count = {pages}")


def _free_the_card(box: Outbox) -> None:
    with box._lock:
        box._db.execute("PRAGMA max_page_count = 1073741823")


def test_a_full_card_sheds_by_priority_and_recovers(tmp_path: Path):
    """SQLITE_FULL is a state: least urgent rows go first, events last; the outbox stores
    again by itself once there is room."""
    with Outbox(tmp_path / "o.db", sync="normal") as box:
        for i in range(300):
            put(box, "health", health(i))
            put(box, "event", ev(i))
        _fill_the_card(box)
        stored = [put(box, "event", ev(1000 + i)) for i in range(400)]
        assert box.disk_full
        losses = box.stats().losses
        assert losses["health"] == 300  # every health message went before any event
        assert all(stored) and losses.get("event", 0) < 400
        _free_the_card(box)
        for i in range(300):
            assert put(box, "event", ev(2000 + i)) > 0
        assert not box.disk_full


def test_a_message_no_room_can_be_made_for_is_counted_not_raised(tmp_path: Path):
    with Outbox(tmp_path / "o.db", sync="normal") as box:
        put(box, "event", ev(0))
        assert box.take(10)  # in flight: never shed
        _fill_the_card(box)
        big = b"x" * 20_000  # needs pages the file may not get
        assert [put(box, "event", big) for _ in range(3)] == [0, 0, 0]
        assert box.disk_full and box.stats().losses == {"full": 3}
        _free_the_card(box)
        assert put(box, "event", big) > 0 and not box.disk_full
    with Outbox(tmp_path / "o.db", sync="normal") as again:  # the loss is on disk
        assert again.stats().losses == {"full": 3}
