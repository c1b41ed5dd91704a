"""Health readings from /proc and /sys, and the heartbeat message built from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from roadside.agent.hardware import health
from roadside.agent.uplink import HealthReporter, Outbox, PipelineCounters, UplinkClient
from roadside.agent.uplink.heartbeat import Heartbeat
from roadside.config.agent import MqttConfig
from roadside.wire.messages import HealthMsg


def test_host_readings_from_this_machine():
    host = health.read_host()
    assert host.uptime_s is not None and host.uptime_s > 0
    assert host.load_1m is not None and host.load_1m >= 0
    assert host.mem_total_mib and 0 < host.mem_used_mib <= host.mem_total_mib
    used, free = health.disk_mib("/")
    assert used > 0 and free > 0


def test_cpu_temperature_prefers_the_cpu_zone(tmp_path: Path):
    for name, kind, millideg in [
        ("thermal_zone0", "acpitz", "27800"),
        ("thermal_zone1", "x86_pkg_temp", "51250"),
    ]:
        zone = tmp_path / name
        zone.mkdir()
        (zone / "type").write_text(kind + "\n")
        (zone / "temp").write_text(millideg + "\n")
    assert health.cpu_temp_c(tmp_path) == 51.2
    assert health.cpu_temp_c(tmp_path / "absent") is None


def test_pi_throttled_flags(tmp_path: Path):
    flags = tmp_path / "get_throttled"
    flags.write_text("50005\n")
    value = health.throttled(flags)
    assert value == 0x50005
    assert value & health.UNDER_VOLTAGE_NOW and value & health.UNDER_VOLTAGE_SINCE_BOOT


def test_memory_from_meminfo(tmp_path: Path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(
        "MemTotal:        3884096 kB\nMemFree:          512000 kB\nMemAvailable:    2859072 kB\n"
    )
    assert health.memory_mib(meminfo) == ((3884096 - 2859072) // 1024, 3884096 // 1024)
    assert health.memory_mib(tmp_path / "missing") is None


def test_tree_bytes_counts_files_below(tmp_path: Path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "seg1.ts").write_bytes(b"x" * 1000)
    (tmp_path / "seg0.ts").write_bytes(b"y" * 500)
    assert health.tree_bytes(tmp_path) == 1500
    assert health.tree_bytes(tmp_path / "nope") is None


def test_heartbeat_message_is_compact_and_complete(tmp_path: Path):
    (tmp_path / "segments").mkdir()
    (tmp_path / "segments" / "s.ts").write_bytes(b"z" * 3 * 1024 * 1024)
    with Outbox(tmp_path / "outbox.db", sync="normal") as box:
        client = UplinkClient(MqttConfig(host="127.0.0.1", port=1), "box-1")
        counters = PipelineCounters(
            frames_in=1500, frames_out=1490, frames_dropped=10, detect_latency_s=0.0123
        )
        reporter = HealthReporter(tmp_path, box, client, lambda: counters)
        sent: list[HealthMsg] = []
        beat = Heartbeat(reporter, sent.append, period_s=3600)
        beat.beat()
        msg = sent[0]
        assert (msg.frames_in, msg.frames_out, msg.frames_dropped, msg.detect_latency_ms) == (
            1500,
            1490,
            10,
            12.3,
        )
        assert msg.link_up == 0 and msg.reconnects == 0 and msg.outbox_depth == 0
        assert msg.disk_mib is not None and msg.disk_mib["seg"] == 3.0 and msg.disk_mib["free"] > 0
        assert msg.uptime_s and msg.memory_mib
        payload = msg.encode()
        assert len(payload) < 320
        assert HealthMsg.decode(payload) == msg
        if health.cpu_temp_c() is None:  # readings a box cannot take are left out
            assert b'"tc"' not in payload


class _Watch:
    """The station's view: health and event messages of one box, as the broker delivers them."""

    def __init__(self, port: int, device: str) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        from roadside.wire.topics import EVENT, HEALTH, topic

        self.health: list[HealthMsg] = []
        self.events: list[str] = []
        self._health_topic = topic(device, HEALTH)
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="watch-full-card")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([(self._health_topic, 1), (topic(device, EVENT), 1)])
        self.client.loop_start()

    def _on_message(self, _c: object, _u: object, msg: object) -> None:
        if msg.topic == self._health_topic:  # type: ignore[attr-defined]
            self.health.append(HealthMsg.decode(msg.payload))  # type: ignore[attr-defined]
        else:
            self.events.append(msg.topic)  # type: ignore[attr-defined]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.mark.slow
def test_a_full_card_is_reported_and_outlived(broker, tmp_path: Path, footage: Path) -> None:
    """The real agent, its outbox's file unable to grow (SQLITE_FULL, as on a full SD card)
    while the station is away: it keeps running, its heartbeat says the card is full, and
    events and health flow as before once there is room again."""
    import threading

    from roadside.agent.assembly import assemble
    from roadside.config.agent import parse_config
    from roadside.testing.configs import agent_config
    from roadside.testing.waiting import wait_until

    doc = agent_config(
        tmp_path,
        footage / "motorway_overpass.mp4",
        events={"sinks": ["mqtt"]},
        uplink={"health_period_s": 1},
    )
    doc["source"].update(pace="native", loop=True)
    doc["mqtt"] = {
        "host": "127.0.0.1",
        "port": broker.port,
        "reconnect_min_s": 0.1,
        "reconnect_max_s": 0.5,
    }
    agent = assemble(parse_config(doc))
    assert agent.uplink is not None
    outbox = agent.uplink.outbox
    runner = threading.Thread(target=agent.run, kwargs={"duration": 240}, daemon=True)
    runner.start()
    watch = None
    try:
        wait_until(lambda: agent.uplink.connected, 20, "the link")  # type: ignore[union-attr]
        broker.stop()  # the station is away: what the box makes stays in the outbox
        wait_until(lambda: outbox.rows >= 5, 60, "messages waiting in the outbox")
        with outbox._lock:  # the file may not grow past what it holds now
            pages = outbox._db.execute("PRAGMA page_count").fetchone()[0]
            outbox._db.execute(f"PRAGMA max_page_count = {pages}")
        wait_until(
            lambda: outbox.disk_full or not runner.is_alive(), 120, "the card to be found full"
        )
        assert runner.is_alive(), "the agent stopped on a full card"
        broker.start()
        watch = _Watch(broker.port, "test-box")
        wait_until(
            lambda: any((h.disk_mib or {}).get("full") == 1 for h in watch.health),
            60,
            "a heartbeat saying the card is full",
        )
        with outbox._lock:  # room again
            outbox._db.execute("PRAGMA max_page_count = 1073741823")
        wait_until(lambda: not outbox.disk_full, 30, "the outbox to find room")
        seen = len(watch.events)
        wait_until(
            lambda: len(watch.events) > seen and "full" not in (watch.health[-1].disk_mib or {}),
            60,
            "events, and a heartbeat without the full card",
        )
        assert runner.is_alive()
    finally:
        agent.pipeline.stop()
        runner.join(30)
        if watch is not None:
            watch.close()
    assert not runner.is_alive()
