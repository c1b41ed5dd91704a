"""Killed boxes lose nothing: SIGKILL with a backlog, restart, count unique ids at the station.

Two processes are killed: a small uplink process draining a large backlog (messages in flight
are lost with it), and the real agent (`roadside agent run`) on real footage while the broker
is away.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

from roadside.agent.uplink.outbox import ACK_BATCH
from roadside.testing.broker import LocalBroker
from roadside.testing.clients import Subscriber, kinds
from roadside.testing.configs import agent_config
from roadside.testing.ports import free_port
from roadside.testing.waiting import eventually
from roadside.wire.messages import EventMsg, HealthMsg, StatusMsg
from roadside.wire.topics import topic

DEVICE = "box-1"

ROADSIDE = str(Path(sys.executable).with_name("roadside"))

# A box reduced to its uplink: stores N events (all on disk before it prints), then sends.
CHILD = r"""
import sys, time
from pathlib import Path
from roadside.config.agent import MqttConfig, UplinkConfig
from roadside.wire.messages import EventMsg
from roadside.agent.uplink import Uplink
from roadside.ids import new_id

port, data, produce, ids_file, exit_when_done, window = sys.argv[1:7]
up = Uplink("box-1", MqttConfig(host="127.0.0.1", port=int(port), max_inflight=int(window),
                                reconnect_min_s=0.05, reconnect_max_s=0.3),
            UplinkConfig(outbox_sync="normal"), data, heartbeat=False)
ids = []
for i in range(int(produce)):
    now = time.time()
    msg = EventMsg(id=new_id(), phase="s", label="car", score=0.7, first_seen=now, last_seen=now,
                   box=(0.1, 0.2, 0.05, 0.04), track=i)
    up.sink.publish("event", msg)
    ids.append(msg.id)
tmp = Path(ids_file + ".tmp")
tmp.write_text("\n".join(ids))
tmp.rename(ids_file)
up.start()
if exit_when_done == "1":
    up.client.wait_connected(30)
    while up.outbox.rows:
        time.sleep(0.05)
    up.stop()
else:
    while True:
        time.sleep(1)
"""


def child(tmp_path: Path, port: int, produce: int, name: str, exit_when_done: bool, window: int):
    script = tmp_path / "box.py"
    script.write_text(CHILD)
    ids_file = tmp_path / f"{name}.ids"
    proc = subprocess.Popen(
        [
            sys.executable,
            str(script),
            str(port),
            str(tmp_path / "data"),
            str(produce),
            str(ids_file),
            "1" if exit_when_done else "0",
            str(window),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, ids_file


def event_ids(station: Subscriber) -> list[str]:
    return [json.loads(m.payload)["id"] for m in kinds(station.messages, "event")]


@pytest.mark.slow
def test_sigkill_while_draining_loses_nothing(tmp_path: Path):
    n = 3000
    broker = LocalBroker(tmp_path / "broker").start()
    station = Subscriber(broker.port)
    broker.stop()  # the box fills its outbox while the broker is away
    # A narrow window keeps the drain slow enough to be caught in the middle.
    proc, ids_file = child(tmp_path, broker.port, n, "first", exit_when_done=False, window=2)
    try:
        assert eventually(ids_file.exists, 30), (
            proc.stderr.read() if proc.poll() is not None else ""
        )
        produced = set(ids_file.read_text().split())
        assert len(produced) == n
        broker.start()
        assert station.wait(lambda m: len(kinds(m, "event")) >= 300, 30)
        proc.send_signal(signal.SIGKILL)  # mid-drain: whatever paho held in RAM dies here
        proc.wait(10)
        at_kill = len(set(event_ids(station)))
        assert at_kill < n, "the backlog drained before the kill: nothing was tested"

        # The broker says the box is gone: a retained offline status from the last will.
        watcher = Subscriber(
            broker.port, (topic(DEVICE, "status"),), client_id="watcher", clean=True
        )
        try:
            assert watcher.wait(
                lambda m: any(StatusMsg.decode(x.payload).state == "offline" for x in m), 20
            )
            will = [StatusMsg.decode(x.payload) for x in watcher.messages][-1]
            assert will.state == "offline" and will.reason == "lost"
        finally:
            watcher.close()

        again, _ = child(tmp_path, broker.port, 0, "second", exit_when_done=True, window=20)
        assert again.wait(60) == 0, again.stderr.read()
        assert station.wait(lambda m: len(set(event_ids(station))) >= n, 30)
        got = event_ids(station)
        assert set(got) == produced  # every event, none invented
        # Repeats: what was in flight, and acknowledged rows whose batched delete was pending.
        assert len(got) - len(set(got)) <= ACK_BATCH + 2 * 20

        # The clean stop's goodbye is sent after the backlog: it may still be on its way when
        # the last event has arrived.
        def last_status(m: list) -> StatusMsg | None:
            statuses = kinds(m, "status")
            return StatusMsg.decode(statuses[-1].payload) if statuses else None

        assert station.wait(lambda m: getattr(last_status(m), "reason", None) == "stop", 20)
        last = last_status(station.messages)
        assert last is not None and last.state == "offline" and last.reason == "stop"
    finally:
        if proc.poll() is None:
            proc.kill()
        station.close()
        broker.stop()


def event_pairs(msgs: list) -> set[tuple[str, str]]:
    """(id, k): an event's start and end share the id."""
    decoded = [EventMsg.decode(x.payload) for x in kinds(msgs, "event")]
    return {(m.id, m.phase) for m in decoded}


def outbox_events(db_path: Path) -> set[tuple[str, str]]:
    """The events stored in an agent's outbox (read-only; none while it is being created)."""
    try:
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT payload FROM outbox WHERE kind = 'event'").fetchall()
    except sqlite3.OperationalError:
        return set()
    return {(m.id, m.phase) for m in (EventMsg.decode(r[0]) for r in rows)}


@pytest.mark.slow
def test_agent_killed_with_a_backlog_sends_it_after_restart(tmp_path: Path, footage: Path):
    port = free_port()
    doc = agent_config(
        tmp_path,
        footage / "motorway_overpass.mp4",
        events={"sinks": ["mqtt"], "count_interval_s": 2.0},
        mqtt={"host": "127.0.0.1", "port": port, "reconnect_min_s": 0.05, "reconnect_max_s": 0.5},
        uplink={"health_period_s": 60.0},
    )
    doc["device"] = DEVICE
    doc["source"]["loop"] = True
    config = tmp_path / "agent.toml"
    config.write_text(tomli_w.dumps(doc))
    outbox = Path(doc["data_dir"]) / "outbox.db"

    # 1. The broker is away; the agent stores events, and is killed.
    first = subprocess.Popen(
        [ROADSIDE, "agent", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert eventually(lambda: outbox.exists() and len(outbox_events(outbox)) >= 6, 90), (
            first.stderr.read() if first.poll() is not None else "no events stored"
        )
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    stored = outbox_events(outbox)

    # 2. The broker is back; the agent runs again, then stops cleanly.
    broker = LocalBroker(tmp_path / "broker", port=port).start()
    station = Subscriber(port)
    doc["source"]["loop"] = False
    config.write_text(tomli_w.dumps(doc))
    try:
        second = subprocess.run(
            [ROADSIDE, "agent", "run", "--config", str(config), "--duration", "4"],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ},
        )
        assert second.returncode == 0, second.stderr
        new_events = int(re.search(r"(\d+) event messages", second.stderr).group(1))
        want = len(stored) + new_events
        assert station.wait(lambda m: len(event_pairs(m)) >= want, 30)
        got = event_pairs(station.messages)
        assert stored <= got and len(got) == want  # the backlog, then this run's own
        health = [HealthMsg.decode(x.payload) for x in kinds(station.messages, "health")]
        assert health and health[0].outbox_depth is not None
        statuses = [StatusMsg.decode(x.payload) for x in kinds(station.messages, "status")]
        assert statuses[0].state == "online" and statuses[0].model
        assert statuses[-1].state == "offline" and statuses[-1].reason == "stop"
        assert len(outbox_events(outbox)) == 0
    finally:
        station.close()
        broker.stop()


def test_a_logged_event_is_already_in_the_outbox(
    tmp_path: Path, models_dir: Path, footage: Path
) -> None:
    """The agent writes each message to the outbox before any local log (jsonl, console): a
    SIGKILL between the two may leave a queued message unlogged, never a logged one unqueued,
    so the box's own log is a lower bound of what the station will get."""
    from roadside.agent.assembly import assemble
    from roadside.agent.events.sinks import JsonlSink
    from roadside.agent.uplink.sink import MqttSink
    from roadside.config.agent import parse_config

    doc = agent_config(
        tmp_path,
        footage / "traffic_frames.mp4",
        detector={"models_dir": str(models_dir)},
        events={"sinks": ["jsonl", "mqtt"], "jsonl_path": str(tmp_path / "e")},
    )
    doc["mqtt"] = {"host": "127.0.0.1", "port": free_port()}
    agent = assemble(parse_config(doc))
    try:
        kinds_in_order = [type(s) for s in agent.sinks.sinks]
        assert kinds_in_order.index(MqttSink) < kinds_in_order.index(JsonlSink)
    finally:
        agent.source.close()
        assert agent.uplink is not None
        agent.uplink.outbox.close()
