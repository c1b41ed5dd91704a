"""GPIO devices on gpiozero's own mock pins: the status LED, the door switch, IR light, PIR.

``Device.pin_factory = MockFactory()`` is gpiozero's seam for exactly this: the device
classes run unchanged and the mock pins record every level change with its duration.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPin

from roadside.agent.frames import Frame
from roadside.agent.hardware import checks as box_checks
from roadside.agent.hardware.ir_light import BrightnessMeter, DayNight, IrLight, NightSchedule
from roadside.agent.hardware.liveness import BoxState, LinkSummary, PipelineLiveness
from roadside.agent.hardware.pir import PirSensor, WakeGate
from roadside.agent.hardware.status_led import PATTERNS, TICK_S, StatusLed
from roadside.agent.hardware.watchdog import SystemdNotifier, Watchdog
from roadside.agent.pipeline import PipelineStats
from roadside.agent.vision.motion import MotionGate
from roadside.config.agent import (
    HardwareConfig,
    IrLightConfig,
    MotionConfig,
    PirConfig,
    WatchdogConfig,
    parse_config,
)
from roadside.testing.configs import agent_config
from roadside.testing.waiting import eventually


@pytest.fixture
def pins() -> Iterator[MockFactory]:
    previous = Device.pin_factory
    factory = MockFactory()
    Device.pin_factory = factory
    yield factory
    factory.reset()
    Device.pin_factory = previous


@pytest.fixture(scope="module")
def road_frame(footage: Path) -> np.ndarray:
    cap = cv2.VideoCapture(str(footage / "motorway_overpass.mp4"))
    ok, image = cap.read()
    cap.release()
    assert ok
    return image


@pytest.fixture(scope="module")
def lores_road(road_frame: np.ndarray) -> np.ndarray:
    """The road at the size of the detection stream the brightness meter reads."""
    return cv2.resize(road_frame, (320, 180), interpolation=cv2.INTER_AREA)


# -- status LED ---------------------------------------------------------------------------
def expected_runs(pattern: tuple[int, ...]) -> list[tuple[bool, int]]:
    """A pattern's cycle as (level, ticks) runs, starting with an "on" run."""
    runs: list[tuple[bool, int]] = []
    for v in pattern:
        if runs and runs[-1][0] == bool(v):
            runs[-1] = (bool(v), runs[-1][1] + 1)
        else:
            runs.append((bool(v), 1))
    if len(runs) > 1 and runs[0][0] == runs[-1][0]:
        runs[0] = (runs[0][0], runs[0][1] + runs.pop()[1])
    while not runs[0][0]:
        runs.append(runs.pop(0))
    return runs


def observed_runs(pin: MockPin, start: int) -> list[tuple[bool, int]]:
    """Complete runs recorded on the pin after index ``start``, in ticks, from an "on" run."""
    states = pin.states[start:]
    runs = [
        (states[i - 1].state, round(states[i].timestamp / TICK_S)) for i in range(2, len(states))
    ]  # the first run after the change is partial
    while runs and not runs[0][0]:
        runs.pop(0)
    return runs


def assert_pattern(pin: MockPin, start: int, state: BoxState) -> None:
    want = expected_runs(PATTERNS[state])
    assert eventually(lambda: len(observed_runs(pin, start)) >= len(want) + 1, 6), pin.states
    got = observed_runs(pin, start)[: len(want)]
    rotations = [want[i:] + want[:i] for i in range(len(want)) if want[i][0]]
    assert got in rotations, (state, got, want)  # the cycle, from whichever flash came first


@pytest.mark.slow
def test_led_patterns_follow_pipeline_and_link_state(pins: MockFactory) -> None:
    stats = PipelineStats()
    link = {"now": LinkSummary(True)}
    liveness = PipelineLiveness(stats, WatchdogConfig(frame_timeout_s=0.6, detect_timeout_s=5))
    led = StatusLed(17)
    watchdog = Watchdog(
        liveness,
        SystemdNotifier({}),
        link=lambda: link["now"],
        tick_s=0.05,
        listeners=[led.show],
    )
    pin = pins.pin(17)
    feeding = threading.Event()
    stop = threading.Event()

    def pipeline() -> None:  # frames and detector answers, as the pipeline thread records them
        while not stop.wait(0.05):
            if feeding.is_set():
                stats.frames += 1
                stats.last_frame_mono = stats.last_detect_mono = time.monotonic()

    feeder = threading.Thread(target=pipeline, daemon=True)
    feeder.start()
    watchdog.start()
    try:
        assert eventually(lambda: led.state is BoxState.STARTING, 2)
        assert_pattern(pin, 0, BoxState.STARTING)

        mark = len(pin.states)
        stats.started_mono = time.monotonic()
        feeding.set()
        assert eventually(lambda: led.state is BoxState.ONLINE, 2)
        assert pin.state  # steady on
        steady = len(pin.states)
        assert not eventually(lambda: len(pin.states) > steady, 4 * TICK_S)
        assert mark < steady

        mark = len(pin.states)
        link["now"] = LinkSummary(False, queued=42)  # the 4G link drops: events queue
        assert eventually(lambda: led.state is BoxState.OFFLINE, 2)
        assert_pattern(pin, mark, BoxState.OFFLINE)

        mark = len(pin.states)
        feeding.clear()  # the camera stalls
        assert eventually(lambda: led.state is BoxState.FAULT, 3)
        assert_pattern(pin, mark, BoxState.FAULT)

        feeding.set()  # and recovers, back online
        link["now"] = LinkSummary(True)
        assert eventually(lambda: led.state is BoxState.ONLINE and pin.state, 3)
    finally:
        stop.set()
        watchdog.stop()
        led.close()
        feeder.join(timeout=2)
    # Four states, four rhythms a technician can tell apart.
    assert len({tuple(expected_runs(p)) for p in PATTERNS.values()}) == len(PATTERNS)


@pytest.mark.slow
def test_led_follows_the_real_station_link(pins: MockFactory, broker, tmp_path: Path) -> None:
    """The uplink against a real mosquitto: broker away -> double flash, back -> steady."""
    from roadside.agent.hardware.liveness import link_probe
    from roadside.agent.uplink.link import Uplink
    from roadside.config.agent import MqttConfig, UplinkConfig
    from roadside.ids import new_id
    from roadside.wire.messages import EventMsg

    mqtt = MqttConfig(host="127.0.0.1", port=broker.port, reconnect_min_s=0.2, reconnect_max_s=0.5)
    uplink = Uplink("led-box", mqtt, UplinkConfig(stop_flush_s=0), tmp_path, heartbeat=False)
    stats = PipelineStats(frames=1, started_mono=time.monotonic())
    stats.last_frame_mono = stats.last_detect_mono = time.monotonic()
    liveness = PipelineLiveness(stats, WatchdogConfig(frame_timeout_s=600, detect_timeout_s=600))
    led = StatusLed(17)
    watchdog = Watchdog(
        liveness, SystemdNotifier({}), link=link_probe(uplink), tick_s=0.05, listeners=[led.show]
    )
    pin = pins.pin(17)
    uplink.start()
    watchdog.start()
    try:
        assert eventually(lambda: led.state is BoxState.ONLINE, 15)
        broker.stop()
        assert eventually(lambda: led.state is BoxState.OFFLINE, 15)
        mark = len(pin.states)
        now = time.time()
        uplink.publish(
            "event",
            EventMsg(
                id=new_id(),
                phase="s",
                label="car",
                score=0.9,
                first_seen=now,
                last_seen=now,
                box=(0.1, 0.1, 0.2, 0.2),
                track=1,
            ),
        )
        assert link_probe(uplink)().describe() == "link offline, 1 queued"
        assert_pattern(pin, mark, BoxState.OFFLINE)
        broker.start()
        station = _station(broker.port)  # the queued event goes once somebody listens
        try:
            assert eventually(lambda: led.state is BoxState.ONLINE and uplink.queued == 0, 20)
        finally:
            station.disconnect()
            station.loop_stop()
    finally:
        watchdog.stop()
        led.close()
        uplink.stop()


def _station(port: int):
    """A plain subscriber to every box's messages."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.connect("127.0.0.1", port)
    client.subscribe("roadside/#", qos=1)
    client.loop_start()
    return client


def test_broker_check_against_a_real_broker(broker) -> None:
    from roadside.agent.hardware.checks import CheckWarning
    from roadside.config.agent import MqttConfig
    from roadside.errors import RoadsideError

    mqtt = MqttConfig(host="127.0.0.1", port=broker.port)
    assert f"127.0.0.1:{broker.port} reachable" in box_checks.broker(mqtt, required=True)
    broker.stop()
    with pytest.raises(RoadsideError, match="unreachable"):
        box_checks.broker(mqtt, required=True)
    with pytest.raises(CheckWarning, match="not used"):
        box_checks.broker(mqtt, required=False)


# -- tamper --------------------------------------------------------------------------------
@pytest.mark.slow
def test_opening_the_door_sends_an_event_and_keeps_a_snapshot(
    pins: MockFactory, tmp_path: Path, footage: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real agent on real footage, with the door switch on a mock pin."""
    from roadside.agent.assembly import assemble

    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)  # not a service here

    events = tmp_path / "events.jsonl"
    doc = agent_config(
        tmp_path,
        footage / "motorway_overpass.mp4",
        events={"sinks": ["jsonl"], "jsonl_path": str(events)},
        hardware={"tamper": {"pin": 22}},
    )
    doc["source"].update(pace="native", loop=True)
    cfg = parse_config(doc)
    switch = pins.pin(22)
    agent = assemble(cfg)
    assert agent.hardware.tamper is not None
    switch.drive_low()  # the shut door holds the switch closed
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    try:
        assert eventually(lambda: agent.pipeline.stats.frames > 5, 30)
        assert agent.hardware.tamper.events == 0
        switch.drive_high()  # the door is forced
        assert eventually(lambda: agent.hardware.tamper.last_snapshot is not None, 5)
        switch.drive_low()  # and shut again
        assert eventually(lambda: agent.hardware.tamper.events == 2, 5)
    finally:
        agent.pipeline.stop()
        runner.join(timeout=30)
    lines = [json.loads(ln) for ln in events.read_text().splitlines()]
    tamper = [m for m in lines if m.get("c") == "tamper"]
    assert [m["k"] for m in tamper] == ["s", "e"]
    assert tamper[0]["id"] == tamper[1]["id"] and tamper[0]["t0"] <= tamper[1]["t1"]
    snap = tmp_path / "data" / "snapshots" / f"{tamper[0]['id']}.jpg"
    image = cv2.imread(str(snap))
    assert image is not None and image.shape == (540, 960, 3)  # the camera's frame, whole
    assert image.std() > 20  # a picture of the road, not a blank


def test_a_door_open_at_start_is_reported(
    pins: MockFactory, tmp_path: Path, road_frame: np.ndarray
) -> None:
    from roadside.agent.frames import LatestFrame
    from roadside.agent.hardware.tamper import SnapshotStore, TamperSwitch

    sent: list[tuple[str, object]] = []
    latest = LatestFrame()
    latest(Frame(road_frame, time.time(), time.monotonic(), 0))
    cfg = HardwareConfig(tamper={"pin": 5, "keep_snapshots": 2}).tamper
    assert cfg is not None
    switch = TamperSwitch(
        cfg,
        lambda kind, msg: sent.append((kind, msg)),
        latest,
        SnapshotStore(tmp_path / "snaps", keep=2),
    )
    try:
        switch.check_at_start()  # pulled up, nothing holds it: the door is open
        assert [(k, m.label, m.phase) for k, m in sent] == [("event", "tamper", "s")]
        for _ in range(3):  # snapshots are bounded: only the newest two stay
            pins.pin(5).drive_low()
            pins.pin(5).drive_high()
        assert len(list((tmp_path / "snaps").glob("*.jpg"))) == 2
        assert [m.phase for _, m in sent] == ["s", "e", "s", "e", "s", "e", "s"]
    finally:
        switch.close()


# -- IR light ------------------------------------------------------------------------------
def _dusk_to_dawn(
    road_frame: np.ndarray, ir_gain: float, seed: int = 7
) -> Iterator[tuple[float, Callable[[bool], np.ndarray]]]:
    """An evening, night and morning in 1-second frames: real road, scaled light, noise.

    Yields (time, render) where render(ir_on) gives the frame the camera would see; the IR
    light adds ``ir_gain`` grey levels of its own.
    """
    rng = np.random.default_rng(seed)
    base = float(road_frame[::16, ::16].mean())
    day, night = 1.0, 12.0 / base
    light = np.concatenate(
        [
            np.full(120, day),
            np.linspace(day, night, 600),
            np.full(900, night),
            np.linspace(night, day, 600),
            np.full(120, day),
        ]
    )
    for t, level in enumerate(light):
        wobble = level * (1 + rng.normal(0, 0.08))  # clouds, headlights, AE hunting

        def render(ir_on: bool, wobble: float = wobble) -> np.ndarray:
            lit = road_frame.astype(np.float32) * wobble + (ir_gain if ir_on else 0.0)
            return np.clip(lit, 0, 255).astype(np.uint8)

        yield float(t), render


def _run_night(
    road_frame: np.ndarray, cfg: IrLightConfig, ir_gain: float
) -> tuple[IrLight, list[bool]]:
    seen: list[bool] = []
    ir = IrLight(cfg, BrightnessMeter(every_s=1.0), listeners=[seen.append])
    for t, render in _dusk_to_dawn(road_frame, ir_gain):
        ir.meter(Frame(render(ir.night), t, t, int(t)))
        ir.tick(now=t)
    return ir, seen


@pytest.mark.slow
def test_ir_relay_switches_with_brightness_once_each_way(
    pins: MockFactory, lores_road: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = IrLightConfig(pin=27, on_below=35, off_above=90, confirm_s=20, hold_s=300)
    with caplog.at_level(logging.INFO, logger="roadside.agent.hardware.ir_light"):
        ir, seen = _run_night(lores_road, cfg, ir_gain=30.0)  # the IR light lifts the scene 30
    relay = pins.pin(27)
    assert seen == [True, False]  # night once, day once: the noise and the IR glow did not flap
    switches = [(r.levelno, r.getMessage()) for r in caplog.records if "IR light" in r.getMessage()]
    assert [(level, msg.split(" (")[0]) for level, msg in switches] == [
        (logging.INFO, "night: IR light on"),  # as docs/hardware.md quotes it, at INFO
        (logging.INFO, "day: IR light off"),
    ]
    assert [s.state for s in relay.states[1:]] == [True, False]
    on_for = relay.states[2].timestamp  # the relay's own record of how long it stayed on
    assert on_for >= 0 and ir.switches == 2
    ir.stop()


@pytest.mark.slow
def test_ir_relay_hold_time_caps_switching_even_when_the_light_fools_the_meter(
    pins: MockFactory, lores_road: np.ndarray
) -> None:
    """An IR light so strong it lifts the night scene above ``off_above``: the hold time
    still bounds how often the relay may switch (once per hold_s at most)."""
    cfg = IrLightConfig(pin=27, on_below=35, off_above=60, confirm_s=5, hold_s=300)
    ir, seen = _run_night(lores_road, cfg, ir_gain=120.0)
    duration = 2340
    assert 2 <= len(seen) <= duration // 300 + 1
    ir.stop()


def test_day_night_band_ignores_levels_inside_it() -> None:
    dn = DayNight(on_below=35, off_above=90, confirm_s=10, hold_s=0)
    assert not dn.update(30, now=0) and not dn.update(30, now=9)  # not yet confirmed
    assert dn.update(30, now=10)
    assert all(dn.update(level, now=20 + i) for i, level in enumerate([50, 89, 70, 36, 88]))
    assert dn.update(95, now=40) and not dn.update(95, now=50)
    with pytest.raises(ValueError):
        DayNight(on_below=50, off_above=40, confirm_s=0, hold_s=0)


def test_ir_by_schedule_across_midnight(pins: MockFactory) -> None:
    import datetime as dt

    sched = NightSchedule("19:00", "06:30")
    day = dt.datetime(2024, 6, 1)
    assert sched.is_night(day.replace(hour=23)) and sched.is_night(day.replace(hour=3))
    assert not sched.is_night(day.replace(hour=12)) and not sched.is_night(
        day.replace(hour=6, minute=30)
    )
    clock = {"now": day.replace(hour=18, minute=59)}
    ir = IrLight(
        IrLightConfig(pin=4, mode="schedule", active_high=False), clock=lambda: clock["now"]
    )
    relay = pins.pin(4)
    assert not ir.tick() and relay.state  # active low relay board: off is a high pin
    clock["now"] = day.replace(hour=19, minute=1)
    assert ir.tick() and not relay.state
    ir.stop()


# -- PIR -----------------------------------------------------------------------------------
def test_pir_wakes_the_detector_on_a_still_scene(
    pins: MockFactory, road_frame: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    gate = WakeGate(MotionGate(MotionConfig()))
    pir = PirSensor(PirConfig(pin=23, wake_s=0.5), gate)
    try:
        assert gate.update(road_frame)  # the first frame is always looked at
        assert not gate.update(road_frame)  # nothing moves
        with caplog.at_level(logging.INFO, logger="roadside.agent.hardware.pir"):
            pins.pin(23).drive_high()  # someone walks past in the dark
            assert eventually(lambda: gate.update(road_frame), 2)
        assert pir.triggers == 1
        said = [(r.levelno, r.getMessage()) for r in caplog.records]
        assert (logging.INFO, "PIR: motion, detector awake for 0 s") in said  # as documented
        pins.pin(23).drive_low()
        assert eventually(lambda: not gate.update(road_frame), 3)  # wake_s runs out
    finally:
        pir.close()


# -- agent check -----------------------------------------------------------------------------
def test_check_claims_configured_pins(pins: MockFactory) -> None:
    hw = HardwareConfig(
        status_led={"pin": "GPIO17"}, ir_light={"pin": 27}, tamper={"pin": 22}, pir={"pin": 23}
    )
    detail = box_checks.gpio(hw)
    assert "MockFactory" in detail and "status_led GPIO17" in detail and "door OPEN" in detail
    pins.pin(17)  # the check released them: they can be claimed again
    from gpiozero import LED

    LED(17).close()
    assert box_checks.gpio(HardwareConfig()) == "no pins configured"


def test_pins_are_validated_in_the_config(tmp_path: Path, footage: Path) -> None:
    from roadside.errors import ConfigError

    doc = agent_config(
        tmp_path,
        footage / "traffic_frames.mp4",
        hardware={"status_led": {"pin": 17}, "pir": {"pin": "GPIO17"}},
    )
    with pytest.raises(ConfigError, match=r"hardware.pir.pin = 'GPIO17' is already used"):
        parse_config(doc)
    doc["hardware"] = {"ir_light": {"on_below": 80, "off_above": 60}}
    with pytest.raises(ConfigError, match="off_above must be greater than on_below"):
        parse_config(doc)


def test_the_documented_hardware_tables_are_valid() -> None:
    """examples/agent.toml ships its pin tables commented out; uncommented, they load."""
    import re
    import tomllib

    root = Path(__file__).resolve().parents[1]
    text = (root / "examples" / "agent.toml").read_text()
    uncommented = re.sub(r"^# (\[hardware\.\w+\]|[a-z_]+ = .*)$", r"\1", text, flags=re.M)
    doc = tomllib.loads(uncommented)
    doc["data_dir"] = "var/test"
    hw = parse_config(doc).hardware
    assert hw.pins() == {"status_led": 17, "ir_light": 27, "tamper": 22, "pir": 23}
    assert hw.ir_light is not None and hw.ir_light.active_high is False


@pytest.mark.slow
def test_agent_check_reports_pins_disk_clock_and_power(tmp_path: Path, footage: Path) -> None:
    """``roadside agent check`` end to end, pins on gpiozero's mock factory by environment."""
    import os
    import subprocess
    import sys

    import tomli_w

    from roadside.agent.clock import clock_state

    doc = agent_config(
        tmp_path,
        footage / "traffic_frames.mp4",
        hardware={"status_led": {"pin": 17}, "tamper": {"pin": 22}},
    )
    path = tmp_path / "agent.toml"
    path.write_text(tomli_w.dumps(doc))
    roadside = str(Path(sys.executable).with_name("roadside"))
    env = {**os.environ, "GPIOZERO_PIN_FACTORY": "mock", "COLUMNS": "200"}
    proc = subprocess.run(
        [roadside, "agent", "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {
        ln.split("│")[1].strip(): ln.split("│")[2].strip()
        for ln in proc.stdout.splitlines()
        if ln.count("│") >= 4
    }
    assert rows["gpio"] == "pass" and "MockFactory" in proc.stdout
    assert rows["disk"] == "pass" and "GiB free" in proc.stdout
    assert rows["clock"] == ("pass" if clock_state() else "warn")
    assert rows["power"] in ("pass", "warn")
    assert "broker" not in rows  # no [mqtt] section: nothing to reach


def test_disk_check_against_the_recording_budget(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from roadside.errors import RoadsideError

    free = __import__("shutil").disk_usage(tmp_path).free
    fits = SimpleNamespace(data_dir=str(tmp_path), recording=SimpleNamespace(max_bytes=1 << 20))
    assert "fits" in box_checks.disk(fits)  # type: ignore[arg-type]
    too_big = SimpleNamespace(
        data_dir=str(tmp_path / "not-yet"), recording=SimpleNamespace(max_bytes=free * 4)
    )
    with pytest.raises(RoadsideError, match="recording budget"):
        box_checks.disk(too_big)  # type: ignore[arg-type]


def test_disk_check_fails_when_keep_free_leaves_no_room_to_record(tmp_path: Path) -> None:
    """keep_free_bytes = "1TiB" on a card: the recorder would evict everything it writes."""
    from roadside.config.agent import parse_config
    from roadside.errors import RoadsideError
    from roadside.testing.configs import agent_config

    doc = agent_config(tmp_path, tmp_path / "camera.mp4")
    doc["recording"] = {"mode": "continuous", "budget_bytes": "8MiB", "keep_free_bytes": "16MiB"}
    assert "fits" in box_checks.disk(parse_config(doc))
    doc["recording"]["keep_free_bytes"] = "1TiB"
    with pytest.raises(RoadsideError) as failed:
        box_checks.disk(parse_config(doc))
    line = str(failed.value)
    assert "\n" not in line
    assert "recording.keep_free_bytes keeps 1024.0 GiB free, leaving nothing" in line
