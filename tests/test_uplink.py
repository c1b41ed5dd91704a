"""The uplink against a real mosquitto: order, outages, status, priorities, subscriptions."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from roadside.agent.uplink import BulkMessage, Inbound, Priority, Uplink
from roadside.config.agent import UplinkConfig
from roadside.ids import new_id
from roadside.testing.broker import LocalBroker
from roadside.testing.clients import Subscriber, kinds
from roadside.testing.configs import mqtt_config
from roadside.testing.messages import event
from roadside.wire.messages import CountMsg, EventMsg, HealthMsg, StatusMsg
from roadside.wire.topics import kind_of, topic

DEVICE = "box-1"


def make_uplink(
    tmp_path: Path,
    port: int,
    heartbeat: bool = False,
    uplink_cfg: UplinkConfig | None = None,
    **kw: object,
) -> Uplink:
    return Uplink(
        DEVICE,
        mqtt_config(port, **kw),
        uplink_cfg or UplinkConfig(outbox_sync="normal"),
        tmp_path / "data",
        heartbeat=heartbeat,
    )


@pytest.fixture
def station(broker: LocalBroker):
    sub = Subscriber(broker.port)
    yield sub
    sub.close()


def test_online_events_arrive_in_order_with_valid_schema(tmp_path, broker, station):
    up = make_uplink(tmp_path, broker.port, heartbeat=True)
    with up:
        assert up.client.wait_connected(10)
        # The first health report was measured at start, racing the connection; this one
        # is measured with the link up.
        assert up.heartbeat is not None
        up.heartbeat.beat()
        sent = [event(i, "s" if i % 2 else "e") for i in range(300)]
        for msg in sent:
            up.sink.publish("event", msg)
        up.sink.publish("count", CountMsg(id=new_id(), start=1.0, end=61.0, counts={"car": 300}))
        assert station.wait(
            lambda m: (
                len(kinds(m, "event")) == 300 and kinds(m, "count") and len(kinds(m, "health")) == 2
            )
        )
    received = kinds(station.messages, "event")
    assert [EventMsg.decode(m.payload) for m in received] == sent  # order and content
    assert all(m.qos == 1 and not m.retain for m in received)
    assert station.of_kind("count")[0].counts == {"car": 300}
    at_start, connected = station.of_kind("health")  # in the order they were measured
    assert isinstance(at_start, HealthMsg) and at_start.link_up is not None
    assert isinstance(connected, HealthMsg) and connected.link_up == 1
    statuses = station.of_kind("status")
    assert [s.state for s in statuses] == ["online", "offline"]
    assert statuses[-1].reason == "stop" and statuses[0].software


def test_event_payload_is_compact():
    """A typical event fits the 200 B budget; even the busiest stays close to it."""
    assert len(event(7).encode()) <= 200
    busiest = EventMsg(
        id=new_id(),
        phase="e",
        label="motorcycle",
        score=0.93,
        first_seen=1795888343.66,
        last_seen=1795888399.72,
        box=(0.572, 0.162, 0.048, 0.043),
        track=10234,
        direction="NW",
        zones=["left-lanes", "right-lanes"],
        unsynced=1,
    )
    assert len(busiest.encode()) <= 224


def test_events_produced_while_broker_down_all_arrive(tmp_path, broker, station):
    up = make_uplink(tmp_path, broker.port)
    with up:
        assert up.client.wait_connected(10)
        broker.stop()
        deadline = time.monotonic() + 10
        while up.connected and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not up.connected
        sent = [event(i) for i in range(200)]
        for msg in sent:
            up.sink.publish("event", msg)
        assert up.outbox.rows == 200  # all waiting, durable
        broker.start()
        assert station.wait(
            lambda m: len({json.loads(x.payload)["id"] for x in kinds(m, "event")}) == 200, 30
        )
        assert up.sender.drain(10)
        assert up.outbox.rows == 0
        assert up.client.state().reconnects >= 1
    got = {EventMsg.decode(m.payload).id for m in kinds(station.messages, "event")}
    assert got == {m.id for m in sent}


@pytest.mark.slow
def test_events_nobody_heard_after_a_broker_restart_arrive(tmp_path, broker):
    """mosquitto does not restore a shared subscription from its persistence: after a restart
    the broker answers "no matching subscribers" until the station subscribes again. The box
    keeps such messages and offers them again, so the station gets every one."""
    shared = ("$share/station/roadside/v1/+/event",)
    Subscriber(broker.port, shared, client_id="station-1").close()  # session kept at the broker
    broker.stop()
    broker.start()
    up = make_uplink(tmp_path, broker.port)
    with up:
        assert up.client.wait_connected(10)
        sent = [event(i) for i in range(50)]
        for msg in sent:
            up.sink.publish("event", msg)
        deadline = time.monotonic() + 10
        while up.sender.stats.unheard == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert up.sender.stats.unheard > 0  # the broker dropped them for want of a subscriber
        station = Subscriber(broker.port, shared, client_id="station-1")
        try:
            assert station.wait(
                lambda m: len({json.loads(x.payload)["id"] for x in kinds(m, "event")}) == 50, 30
            )
        finally:
            station.close()
        assert up.sender.drain(10)
        assert up.outbox.rows == 0


@pytest.mark.slow
def test_a_kind_nobody_hears_is_kept_and_holds_back_no_other(tmp_path, broker):
    """The station takes events only: health messages are kept in the outbox and probed one at
    a time (not resent in bulk), while every event goes through."""
    station = Subscriber(broker.port, ("roadside/v1/+/event",), client_id="events-only", clean=True)
    up = make_uplink(tmp_path, broker.port)
    try:
        with up:
            assert up.client.wait_connected(10)
            for _ in range(200):
                up.publish("health", HealthMsg(id=new_id(), at=time.time()))
            sent = [event(i) for i in range(30)]
            for msg in sent:
                up.sink.publish("event", msg)
            assert station.wait(lambda m: len(kinds(m, "event")) == 30, 20)
            time.sleep(3)  # pauses of 1 s, then 2 s: a probe or two more
            health_rows = up.outbox.rows
            published = up.sender.stats.published
        assert health_rows == 200  # every health message is still kept
        assert {EventMsg.decode(m.payload).id for m in kinds(station.messages, "event")} == {
            m.id for m in sent
        }
        # the events, one window of health messages at most, then single probes
        assert published <= 30 + up.client.capacity + 5, published
    finally:
        station.close()


def test_backlog_goes_out_by_priority(tmp_path, broker, station):
    """Replies, events, counts, health: stored in the reverse order, sent most urgent first."""
    up = make_uplink(tmp_path, broker.port)
    up.publish("health", HealthMsg(id=new_id(), at=1.0))
    up.publish("count", CountMsg(id=new_id(), start=1.0, end=2.0, counts={"car": 1}))
    up.sink.publish("event", event(1))
    up.publish("reply/req-1", EventMsg.model_validate(event(2).model_dump()))  # any message
    with up:
        assert station.wait(lambda m: len([x for x in m if "status" not in x.topic]) == 4)
    order = [kind_of(m.topic) for m in station.messages if "status" not in m.topic]
    assert order == ["reply/req-1", "event", "count", "health"]


def test_live_events_go_before_the_backlog(tmp_path, broker, station):
    """After a reconnect, a new event does not wait behind the stored ones; both stay in order."""
    up = make_uplink(tmp_path, broker.port, max_inflight=1)
    backlog = [event(i) for i in range(400)]
    for msg in backlog:
        up.sink.publish("event", msg)
    with up:
        assert up.client.wait_connected(10)
        live = [event(1000 + i) for i in range(5)]
        for msg in live:
            up.sink.publish("event", msg)
        assert station.wait(lambda m: len(kinds(m, "event")) >= 405)
    ids = [EventMsg.decode(m.payload).id for m in kinds(station.messages, "event")]
    positions = [ids.index(m.id) for m in live]
    assert positions == sorted(positions)
    assert max(positions) < 100, "live events waited behind the backlog"
    assert [i for i in ids if i not in {m.id for m in live}] == [m.id for m in backlog]


def test_retained_offline_after_clean_stop(tmp_path, broker):
    up = make_uplink(tmp_path, broker.port)
    with up:
        assert up.client.wait_connected(10)
    late = Subscriber(broker.port, (topic(DEVICE, "status"),), client_id="late", clean=True)
    try:
        assert late.wait(lambda m: len(m) == 1)
        status = StatusMsg.decode(late.messages[0].payload)
        assert late.messages[0].retain and status.state == "offline" and status.reason == "stop"
    finally:
        late.close()


def test_commands_reach_subscribers_across_a_broker_restart(tmp_path, broker):
    up = make_uplink(tmp_path, broker.port)
    got: list[Inbound] = []
    arrived = threading.Event()
    attempt = 0

    def on_command(msg: Inbound) -> None:
        got.append(msg)
        # The officer repeats a command until the box hears it, so spare copies of the first
        # attempt's may still arrive after the restart (the broker keeps them for the box's
        # session): only this attempt's command counts.
        if json.loads(msg.payload)["n"] == attempt:
            arrived.set()

    officer = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="officer", protocol=mqtt.MQTTv5)
    up.subscribe("cmd/#", on_command)  # before the link is up: sent on connect
    with up:
        assert up.client.wait_connected(10)
        for attempt in range(2):
            if attempt:
                broker.restart()
                assert up.client.wait_connected(10)
                deadline = time.monotonic() + 10
                while up.client.state().connects < 2 and time.monotonic() < deadline:
                    time.sleep(0.01)
            arrived.clear()
            officer.connect("127.0.0.1", broker.port)
            officer.loop_start()
            # The subscription may still be on its way: publish until the box hears it.
            deadline = time.monotonic() + 10
            while not arrived.wait(0.2) and time.monotonic() < deadline:
                officer.publish(topic(DEVICE, "cmd/ping"), b'{"n":%d}' % attempt, qos=1)
            officer.disconnect()
            officer.loop_stop()
            assert arrived.is_set(), f"no command after {'restart' if attempt else 'start'}"
    assert {m.topic for m in got} == {topic(DEVICE, "cmd/ping")}
    assert {json.loads(m.payload)["n"] for m in got} == {0, 1}


def test_link_listeners_hear_the_link_come_and_go(tmp_path, broker):
    up = make_uplink(tmp_path, broker.port)
    heard: list[bool] = []
    up.add_link_listener(heard.append)
    with up:
        assert up.client.wait_connected(10)
        assert heard == [True]
        broker.restart()
        deadline = time.monotonic() + 10
        while len(heard) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert heard == [True, False, True]
    assert heard == [True, False, True]  # a clean stop is not a drop


class ChunkSource:
    """A bulk source handing out numbered chunks (a transfer), as fast as it is asked."""

    def __init__(self, n: int, size: int) -> None:
        self.todo = list(range(n))
        self.size = size
        self.done: set[int] = set()
        self.handed = 0

    def next_message(self) -> BulkMessage | None:
        if not self.todo:
            return None
        i = self.todo.pop(0)
        self.handed += 1
        return BulkMessage(topic(DEVICE, f"xfer/t1/{i}"), bytes(self.size), token=i)

    def acked(self, msg: BulkMessage) -> None:
        self.done.add(int(msg.token))  # type: ignore[call-overload]

    def lost(self, msg: BulkMessage) -> None:
        self.todo.insert(0, int(msg.token))  # type: ignore[call-overload]


def chunks_seen(msgs: list[mqtt.MQTTMessage]) -> int:
    return sum(1 for m in msgs if "/xfer/" in m.topic)


@pytest.mark.slow
def test_bulk_transfer_does_not_hold_back_events(tmp_path, broker, station):
    up = make_uplink(tmp_path, broker.port)
    chunks = ChunkSource(2000, 2048)
    up.add_bulk(chunks)
    with up:
        assert station.wait(lambda m: chunks_seen(m) >= 200)
        handed_before = chunks.handed
        sent = [event(i) for i in range(5)]
        for msg in sent:
            up.sink.publish("event", msg)
        deadline = time.monotonic() + 10
        while up.outbox.rows and time.monotonic() < deadline:  # acked by the broker
            time.sleep(0.001)
        handed_after = chunks.handed
        assert up.outbox.rows == 0
        assert station.wait(lambda m: chunks_seen(m) >= 2000, 60)
        assert station.wait(lambda m: len(kinds(m, "event")) == 5)
        assert up.sender.drain(10)
    # The events overtook the transfer: at most a few windows of chunks went out meanwhile.
    assert handed_after - handed_before <= 3 * up.client.capacity
    assert handed_after < 2000
    assert chunks.done == set(range(2000))
    chunk_ids = {int(m.topic.rsplit("/", 1)[1]) for m in station.messages if "/xfer/" in m.topic}
    assert chunk_ids == set(range(2000))


def test_priority_constants_follow_the_contract():
    assert Priority.REPLY < Priority.EVENT < Priority.COUNT < Priority.HEALTH < Priority.BULK
