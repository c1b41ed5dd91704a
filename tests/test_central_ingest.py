"""Ingest workers against a real mosquitto: shared subscriptions, exactly-once storage on
SQLite and PostgreSQL, nothing lost across a killed worker, device online/offline, replies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion

from roadside.central.ingest import IngestWorker
from roadside.central.store import Store, queries
from roadside.central.store import tables as T
from roadside.ids import new_id
from roadside.testing.clients import BoxPublisher
from roadside.testing.configs import central_config
from roadside.testing.messages import count, event_pair, health, status
from roadside.testing.waiting import wait_until
from roadside.wire.commands import ReplyMsg
from roadside.wire.topics import topic

ROOT = Path(__file__).resolve().parents[1]


def _counts(store: Store) -> dict[str, int]:
    with store.connect() as conn:
        return queries.table_counts(conn)


def _phases(store: Store) -> dict[str, int]:
    with store.connect() as conn:
        rows = conn.execute(
            sa.select(T.events.c.phase, sa.func.count()).group_by(T.events.c.phase)
        ).all()
    return dict(rows)


@pytest.mark.slow
def test_two_workers_on_one_shared_subscription_store_each_event_once(
    broker,
    tmp_path: Path,
    db_url: str,
) -> None:
    cfg = central_config(tmp_path, broker.port, db_url, ingest={"batch_max": 50})
    stores = [Store(cfg.database_url), Store(cfg.database_url)]
    workers = [IngestWorker(cfg, s, str(i)).start() for i, s in enumerate(stores, 1)]
    assert all(w.wait_connected(10) for w in workers)
    pub = BoxPublisher(broker.port)
    n_events, sent = 300, 0
    t = time.time() - 3600
    for i in range(n_events):
        start, end = event_pair(t + i, "car" if i % 3 else "person", i)
        for msg in (start, start, end, end):  # every message twice, as after a reconnect
            pub.send(f"box-{i % 2}", "event", msg)
            sent += 1
    for device in ("box-0", "box-1"):
        c = count(t, {"car": 2})
        pub.send(device, "count", c)
        pub.send(device, "count", c)
        pub.send(device, "health", health(outbox_depth=0, clock_synced=1))
        sent += 3
    pub.close()
    wait_until(
        lambda: sum(w.stats.received for w in workers) >= sent,
        60,
        "both workers to take every message",
    )
    for w in workers:
        w.stop()
    assert all(w.stats.received > 0 for w in workers), "the broker shares the load"
    assert sum(w.stats.received for w in workers) == sent
    n = _counts(stores[0])
    assert (n["events"], n["counts"], n["health"], n["devices"]) == (n_events, 2, 2, 2)
    assert _phases(stores[0]) == {"e": n_events}
    assert n["rejects"] == 0
    for s in stores:
        s.close()


def _central_toml(tmp_path: Path, port: int) -> Path:
    path = tmp_path / "central.toml"
    path.write_text(
        f'data_dir = "{tmp_path / "central"}"\n[broker]\nport = {port}\n[ingest]\nbatch_max = 20\n'
    )
    return path


def _start_service(config: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "roadside"),
            "-v",
            "central",
            "run",
            "--config",
            str(config),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "ab"),
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.mark.slow
def test_a_worker_killed_mid_stream_loses_nothing(broker, tmp_path: Path) -> None:
    config = _central_toml(tmp_path, broker.port)
    store = Store(f"sqlite:///{tmp_path / 'central' / 'central.db'}")
    service = _start_service(config, tmp_path / "central-1.log")
    try:
        wait_until(
            lambda: "connected" in (tmp_path / "central-1.log").read_text(),
            30,
            "the service to connect",
        )
        pub = BoxPublisher(broker.port)
        ids = []
        t = time.time() - 600
        for i in range(2000):
            start, end = event_pair(t + i * 0.01, track=i)
            ids.append(start.id)
            pub.send("box-k", "event", start)
            pub.send("box-k", "event", end)
        pub.flush()
        wait_until(lambda: _counts(store)["events"] > 0, 30, "the first events stored")
        service.send_signal(signal.SIGKILL)  # mid-stream: some taken, not all acknowledged
        service.wait(10)
        stored_at_kill = _counts(store)["events"]
        for i in range(2000, 2200):  # the box goes on while the station is down
            start, end = event_pair(t + i * 0.01, track=i)
            ids.append(start.id)
            pub.send("box-k", "event", start)
            pub.send("box-k", "event", end)
        pub.close()
        service = _start_service(config, tmp_path / "central-2.log")
        wait_until(
            lambda: _phases(store).get("e", 0) == len(ids),
            60,
            "every event's end stored after the restart",
        )
    finally:
        service.send_signal(signal.SIGTERM)
        service.wait(20)
    assert stored_at_kill < len(ids)
    with store.connect() as conn:
        stored = conn.execute(sa.select(T.events.c.id)).scalars().all()
    assert sorted(stored) == sorted(ids)
    assert service.returncode == 0
    store.close()


@pytest.mark.slow
def test_status_last_will_and_replies(broker, tmp_path: Path) -> None:
    cfg = central_config(tmp_path, broker.port)
    pub = BoxPublisher(broker.port)
    pub.send("box-s", "status", status("online"), retain=True)  # before any worker runs
    pub.flush()
    store = Store(cfg.database_url)
    worker = IngestWorker(cfg, store).start()

    def device() -> dict:
        with store.connect() as conn:
            rows = queries.devices(conn)
        return rows[0] if rows else {}

    wait_until(lambda: device().get("online") is True, 20, "the retained online status")
    # A box whose link dies: the broker publishes its last will
    box = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="box-w", protocol=mqtt.MQTTv5)
    box.will_set(topic("box-w", "status"), status("offline", "lost").encode(), qos=1, retain=True)
    box.connect("127.0.0.1", broker.port, keepalive=5)
    box.loop_start()
    pub.send("box-w", "status", status("online"), retain=True)
    pub.flush()
    wait_until(
        lambda: any(d["device"] == "box-w" and d["online"] for d in _devices(store)),
        20,
        "box-w online",
    )
    box.loop_stop()
    box.socket().close()  # no DISCONNECT: the broker sends the will
    wait_until(
        lambda: any(
            d["device"] == "box-w" and d["online"] is False and d["status"]["reason"] == "lost"
            for d in _devices(store)
        ),
        30,
        "box-w's last will",
    )
    # A reply closes the officer's audit row; a later copy does not reopen it
    rq = new_id()
    store.audit.open(rq, "officer@desk", "clip", "box-s", {"from": 1.0, "to": 2.0})
    for reply in (
        ReplyMsg(id=new_id(), request_id=rq, state="progress", progress=0.5, detail="cutting"),
        ReplyMsg(id=new_id(), request_id=rq, state="done", result={"bytes": 10}),
        ReplyMsg(id=new_id(), request_id=rq, state="error", code="failed", detail="late copy"),
    ):
        pub.send("box-s", f"reply/{rq}", reply)
    pub.close()
    wait_until(lambda: _audit(store, rq)["state"] == "done", 20, "the final reply")
    worker.stop()
    row = _audit(store, rq)
    assert row["result"] == {"bytes": 10} and row["finished"] is not None
    assert row["detail"] is None
    store.close()


def _devices(store: Store) -> list[dict]:
    with store.connect() as conn:
        return queries.devices(conn)


def _audit(store: Store, request_id: str) -> dict:
    with store.connect() as conn:
        return queries.audit(conn, request_id=request_id)[0]
