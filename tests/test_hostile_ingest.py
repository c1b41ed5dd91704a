"""One bad box must not silence the station: poison messages and forged ids, end to end.

Real mosquitto, real ingest workers and the real clip receiver, on SQLite and PostgreSQL.
Each poison message is rejected and kept (truncated) in ``rejects`` while a good box's events
all arrive; a box naming another box's event, request or transfer changes none of its rows.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from roadside.central.config import BrokerConfig
from roadside.central.ingest import IngestWorker
from roadside.central.receiver import clip_receiver
from roadside.central.receiver_service import ReceiverService
from roadside.central.store import Store
from roadside.central.store import tables as T
from roadside.central.store.batch import REJECT_PAYLOAD_MAX
from roadside.ids import new_id
from roadside.testing import postgres
from roadside.testing.clients import BoxPublisher
from roadside.testing.configs import central_config
from roadside.testing.messages import event_pair
from roadside.testing.waiting import wait_until
from roadside.wire.commands import ReplyMsg
from roadside.wire.topics import xfer_topic
from roadside.wire.transfer import XferInit, pack_chunk

GOOD = "box-good"
BAD = "box-bad"
N_GOOD = 40  # events of the good box, sent after the poison


def _event(**change: object) -> bytes:
    start, _ = event_pair(time.time() - 60)
    body = json.loads(start.encode())
    body.update(change)
    return json.dumps(body).encode()


def _health(**change: object) -> bytes:
    body = {"v": 1, "id": new_id(), "t": time.time(), **change}
    return json.dumps(body).encode()


def _count(**change: object) -> bytes:
    now = time.time()
    body = {"v": 1, "id": new_id(), "t0": now - 60, "t1": now, "n": {"car": 1}, **change}
    return json.dumps(body).encode()


def _reply(rq: str, **change: object) -> tuple[str, bytes]:
    body = {"v": 1, "id": new_id(), "rq": rq, "st": "done", "r": {"bytes": 1}, **change}
    return f"reply/{rq}", json.dumps(body).encode()


# (name, topic kind, payload): each poisoned the store on SQLite or PostgreSQL, or stored
# what no column should hold (json.dumps writes NaN and Infinity as the bare words)
POISON: list[tuple[str, str, bytes]] = [
    ("event t0 NaN", "event", _event(t0=math.nan)),
    ("event t1 infinite", "event", _event(t1=math.inf)),
    ("event score NaN", "event", _event(s=math.nan)),
    ("event NaN in box", "event", _event(b=[0.1, math.nan, 0.1, 0.1])),
    ("event track 2**64", "event", _event(tr=2**64)),
    ("event track 2**31", "event", _event(tr=2**31)),
    ("event class of 33 characters", "event", _event(c="c" * 33)),
    ("event class of 1 MB", "event", _event(c="c" * 1_000_000)),
    ("event class with NUL", "event", _event(c="ca\x00r")),
    ("event direction of 5 characters", "event", _event(dir="NNEEE")),
    ("event 50,000 zones", "event", _event(z=[f"z{i}" for i in range(50_000)])),
    ("event zone of 1 kB", "event", _event(z=["z" * 1000])),
    ("health t NaN", "health", _health(t=math.nan)),
    ("health load infinite", "health", _health(ld=math.inf)),
    ("health uptime 2**64", "health", _health(up=2**64)),
    ("health 10,000 disk readings", "health", _health(dk={f"d{i}": 1.0 for i in range(10_000)})),
    ("count t0 NaN", "count", _count(t0=math.nan)),
    ("count n 2**64", "count", _count(n={"car": 2**64})),
    ("count class of 33 characters", "count", _count(n={"c" * 33: 1})),
    ("count line crossings 2**31", "count", _count(ln={"a": {"car": {"N": 2**31}}})),
    ("status t NaN", "status", _health(st="online", t=math.nan)),
    ("status software of 1 MB", "status", _health(st="online", sw="1" * 1_000_000)),
    ("8 MiB event", "event", b'{"pad":"' + b"x" * (8 << 20) + b'"}'),
]


def _events_of(store: Store, device: str) -> list[dict]:
    with store.connect() as conn:
        rows = conn.execute(sa.select(T.events).where(T.events.c.device == device)).mappings()
        return [dict(r) for r in rows]


def _rejects(store: Store) -> list[dict]:
    with store.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(T.rejects)).mappings()]


def _good_events(pub: BoxPublisher) -> set[str]:
    ids = set()
    t = time.time() - 600
    for i in range(N_GOOD):
        start, end = event_pair(t + i, "car", i)
        pub.send(GOOD, "event", start)
        pub.send(GOOD, "event", end)
        ids.add(start.id)
    return ids


def _audit(store: Store, rq: str) -> dict:
    with store.connect() as conn:
        row = conn.execute(sa.select(T.audit).where(T.audit.c.id == rq)).mappings().one()
        return dict(row)


@pytest.mark.slow
def test_poison_from_one_box_is_rejected_and_the_good_box_is_stored(
    broker, tmp_path: Path, db_url: str
) -> None:
    cfg = central_config(tmp_path, broker.port, db_url, ingest={"batch_max": 64})
    store = Store(cfg.database_url)
    rq = new_id()
    store.audit.open(rq, "officer@desk", "clip", BAD, {"from": 1.0, "to": 2.0})
    reply_poison = [
        ("reply result NaN", *_reply(rq, r={"bytes": math.nan})),
        ("reply result 2**64", *_reply(rq, r={"bytes": 2**64})),
        ("reply detail with NUL", *_reply(rq, st="error", code="failed", msg="a\x00b")),
        ("reply result nested 50 deep", *_reply(rq, r=json.loads('{"a":' * 50 + "1" + "}" * 50))),
    ]
    cases = POISON + [(name, kind, payload) for name, kind, payload in reply_poison]
    worker = IngestWorker(cfg, store).start()
    assert worker.wait_connected(10)
    pub = BoxPublisher(broker.port)
    for _name, kind, payload in cases:
        pub.send(BAD, kind, payload)
    good = _good_events(pub)
    pub.flush()
    wait_until(
        lambda: {e["id"] for e in _events_of(store, GOOD) if e["phase"] == "e"} == good,
        60,
        "every event of the good box, ended",
    )
    wait_until(lambda: len(_rejects(store)) >= len(cases), 20, "a reject for each poison")
    worker.stop()
    rejects = _rejects(store)
    assert len(rejects) == len(cases)
    assert worker.stats.rejected == len(cases)
    assert worker.stats.stored == 2 * N_GOOD
    kept = sorted(bytes(r["payload"]) for r in rejects)
    assert kept == sorted(payload[:REJECT_PAYLOAD_MAX] for _name, _kind, payload in cases)
    assert all(r["topic"].startswith(f"roadside/v1/{BAD}/") and r["reason"] for r in rejects)
    assert _events_of(store, BAD) == []
    with store.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(T.health)).scalar() == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(T.counts)).scalar() == 0
    assert _audit(store, rq)["state"] == "sent"
    store.close()


@pytest.mark.slow
def test_a_restarted_station_with_the_poison_still_queued_stores_the_rest(
    broker, tmp_path: Path, db_url: str
) -> None:
    cfg = central_config(tmp_path, broker.port, db_url)
    store = Store(cfg.database_url)
    first = IngestWorker(cfg, store).start()  # makes the persistent session, then goes away
    assert first.wait_connected(10)
    first.stop()
    pub = BoxPublisher(broker.port)
    pub.send(BAD, "event", _event(t0=math.nan))
    pub.send(BAD, "health", _health(t=math.nan))
    good = _good_events(pub)
    pub.flush()
    worker = IngestWorker(cfg, Store(cfg.database_url)).start()  # the broker redelivers
    wait_until(
        lambda: {e["id"] for e in _events_of(store, GOOD)} == good, 60, "the good box's events"
    )
    wait_until(lambda: len(_rejects(store)) == 2, 20, "both poison messages in rejects")
    worker.stop()
    assert worker.stats.rejected == 2
    worker.store.close()
    store.close()


def _refuse_track(store: Store, track: int) -> None:
    """The database itself refuses events of one track (as it would a value it cannot keep)."""
    with store.engine.begin() as conn:
        if store.engine.dialect.name == "postgresql":
            conn.exec_driver_sql(
                f"ALTER TABLE events ADD CONSTRAINT refused CHECK (track <> {track})"
            )
        else:
            conn.exec_driver_sql(
                f"CREATE TRIGGER refused BEFORE INSERT ON events WHEN NEW.track = {track} "
                "BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )


@pytest.mark.slow
def test_a_row_the_database_refuses_goes_to_rejects_and_its_batch_is_stored(
    broker, tmp_path: Path, db_url: str
) -> None:
    cfg = central_config(tmp_path, broker.port, db_url, ingest={"batch_max": 500})
    store = Store(cfg.database_url)
    _refuse_track(store, 4242)
    first = IngestWorker(cfg, store).start()
    assert first.wait_connected(10)
    first.stop()  # messages queue up, so they come in one batch
    pub = BoxPublisher(broker.port)
    poison, _ = event_pair(time.time(), "car", 4242)
    pub.send(BAD, "event", poison)
    good = _good_events(pub)
    pub.flush()
    worker = IngestWorker(cfg, store).start()
    wait_until(
        lambda: {e["id"] for e in _events_of(store, GOOD)} == good, 60, "the good box's events"
    )
    wait_until(lambda: len(_rejects(store)) == 1, 20, "the refused row in rejects")
    worker.stop()
    (row,) = _rejects(store)
    assert bytes(row["payload"]) == poison.encode()
    assert "the database refused it" in row["reason"]
    assert worker.stats.rejected == 1
    store.close()


def test_a_database_briefly_unable_to_write_turns_no_message_into_a_reject(
    broker, tmp_path: Path, pg_admin: str
) -> None:
    """The database fails the first writes with a transient error (a serialization failure,
    as under load): the worker waits and writes the same messages again; none is a reject."""
    with postgres.scratch_database(pg_admin) as url:
        cfg = central_config(tmp_path, broker.port, url)
        store = Store(cfg.database_url)
        with store.engine.begin() as conn:
            conn.exec_driver_sql("CREATE SEQUENCE busy_writes")
            conn.exec_driver_sql(
                "CREATE FUNCTION busy() RETURNS trigger AS $$ BEGIN "
                "IF nextval('busy_writes') <= 3 THEN RAISE EXCEPTION 'could not serialize' "
                "USING ERRCODE = '40001'; END IF; RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            conn.exec_driver_sql(
                "CREATE TRIGGER busy BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION busy()"
            )
        worker = IngestWorker(cfg, store).start()
        assert worker.wait_connected(10)
        pub = BoxPublisher(broker.port)
        start, _ = event_pair(time.time() - 30, "motorcycle", 5)
        pub.send(GOOD, "event", start)
        pub.flush()
        wait_until(lambda: _events_of(store, GOOD), 30, "the event, once the database writes")
        worker.stop()
        assert _rejects(store) == [] and worker.stats.rejected == 0
        assert worker.stats.db_errors >= 3
        pub.close()
        store.close()


@pytest.mark.slow
def test_a_box_cannot_end_another_boxs_event_or_answer_its_request(
    broker, tmp_path: Path, db_url: str
) -> None:
    cfg = central_config(tmp_path, broker.port, db_url)
    store = Store(cfg.database_url)
    worker = IngestWorker(cfg, store).start()
    assert worker.wait_connected(10)
    pub = BoxPublisher(broker.port)
    start, end = event_pair(time.time() - 30, "person", 3)
    pub.send(GOOD, "event", start)
    pub.flush()
    wait_until(lambda: _events_of(store, GOOD), 20, "the good box's event")
    before = _events_of(store, GOOD)
    rq = new_id()
    store.audit.open(rq, "officer@desk", "clip", GOOD, {"from": 1.0, "to": 2.0})
    forged_end = end.model_copy(update={"label": "forged", "score": 1.0})
    pub.send(BAD, "event", forged_end)  # another box's event id
    forged = ReplyMsg(id=new_id(), request_id=rq, state="done", result={"bytes": 666})
    pub.send(BAD, f"reply/{rq}", forged)  # another box's request id, on its own topic
    pub.flush()
    wait_until(lambda: len(_rejects(store)) == 2, 20, "both forgeries in rejects")
    assert _events_of(store, GOOD) == before
    assert _events_of(store, BAD) == []
    row = _audit(store, rq)
    assert (row["state"], row["result"], row["finished"]) == ("sent", None, None)
    pub.send(GOOD, "event", end)  # the box's own end and answer still land
    pub.send(GOOD, f"reply/{rq}", ReplyMsg(id=new_id(), request_id=rq, state="done", result={}))
    pub.flush()
    wait_until(lambda: _audit(store, rq)["state"] == "done", 20, "the box's own reply")
    wait_until(lambda: _events_of(store, GOOD)[0]["phase"] == "e", 20, "the box's own end")
    worker.stop()
    assert _events_of(store, GOOD)[0]["cls"] == "person"
    assert worker.stats.rejected == 2
    store.close()


def _upload(pub: BoxPublisher, device: str, rq: str, data: bytes) -> str:
    init = XferInit(
        id=new_id(),
        kind="clip",
        request_id=rq,
        requester="officer@desk",
        name=f"{device}.mp4",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        chunk_size=1024,
        at=time.time(),
    )
    pub.send(device, f"xfer/{init.id}/init", init)
    for offset in range(0, len(data), 1024):
        pub.client.publish(
            xfer_topic(device, init.id, "d"), pack_chunk(offset, data[offset : offset + 1024]), 1
        )
    pub.flush()
    return init.id


@pytest.mark.slow
def test_a_transfer_naming_another_boxs_request_is_not_its_file(
    broker, tmp_path: Path, db_url: str
) -> None:
    store = Store(db_url)
    rx = clip_receiver(tmp_path / "incoming", tmp_path / "files", clips=store.clips)
    svc = ReceiverService(BrokerConfig(host="127.0.0.1", port=broker.port), rx).start()
    assert svc.connected.wait(10)
    rq = new_id()
    store.audit.open(rq, "officer@desk", "clip", GOOD, {"from": 1.0, "to": 2.0})
    pub = BoxPublisher(broker.port)
    own = _upload(pub, GOOD, rq, b"the good box's footage" * 100)
    wait_until(lambda: (store.clips.get(own) or {}).get("state") == "done", 20, "its clip")
    forged = _upload(pub, BAD, rq, b"the other box's footage" * 100)
    wait_until(lambda: (store.clips.get(forged) or {}).get("state") == "done", 20, "the forgery")
    row = store.clips.for_request(rq)
    assert row is not None and row["id"] == own and row["device"] == GOOD
    assert Path(row["path"]).read_bytes() == b"the good box's footage" * 100
    svc.stop()
    rx.close()
    store.close()
