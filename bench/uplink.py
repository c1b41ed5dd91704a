"""Uplink benchmark: bytes per event, backlog drain rate, frame-to-station latency.

    .venv/bin/python bench/uplink.py [--seconds 25] [--backlog 10000] [--rounds 3]

1. Latency, online: the real pipeline (SSD MobileNet on the overpass clip, played at its own
   frame rate like a camera) with the MQTT sink, its durable outbox (sync = full) and sender,
   to a real mosquitto; for each event, the time from the capture of the frame that produced
   it to its arrival at a station subscriber.
2. Bytes: the same events as sent, against a Frigate-style ``frigate/events`` message built
   from the same detection (fields listed in docs/protocol.md), payload and MQTT framing.
3. Drain: ``--backlog`` events (the real ones, with fresh ids) stored while the broker is away,
   then the time from the link coming up to the last PUBACK; beside it a bare paho-mqtt QoS 1
   loop publishing the same payloads to the same broker, same in-flight window. Alternated
   ``--rounds`` times (the machine is shared); medians.

The last line is ``RESULT event_bytes=<x> drain_eps=<y> drain_vs_bare=<r> latency_p99_ms=<z>``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from roadside.agent.frames import Frame
from roadside.agent.pipeline import Pipeline
from roadside.agent.sources import open_source
from roadside.agent.uplink import Uplink
from roadside.agent.vision.detector import Detector
from roadside.config.agent import parse_config
from roadside.ids import new_id
from roadside.testing.broker import LocalBroker
from roadside.testing.shared import footage_dir, models_dir
from roadside.wire.messages import EventMsg, Message
from roadside.wire.topics import topic

DEVICE = "junction-07"
CLIP = "motorway_overpass.mp4"
FRAME_W, FRAME_H = 960, 540  # the clip's size: Frigate reports boxes in pixels
WINDOW = 20  # in-flight window for both the uplink and the bare loop (the config default)


def start_broker(workdir: Path) -> LocalBroker:
    # As root, mosquitto drops to its own user, which cannot write the bench's folder.
    return LocalBroker(workdir).start()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


# -- framing --------------------------------------------------------------------------------
def publish_bytes(topic_name: str, payload: bytes, qos: int, v5: bool) -> int:
    """Bytes of one MQTT PUBLISH packet: fixed header, topic, packet id, properties, payload."""
    remaining = 2 + len(topic_name.encode()) + (2 if qos else 0) + (1 if v5 else 0) + len(payload)
    length_bytes = 1 if remaining < 128 else 2 if remaining < 16384 else 3
    return 1 + length_bytes + remaining


def frigate_event(msg: EventMsg, camera: str) -> bytes:
    """A ``frigate/events`` "end" message for the same detection, as Frigate publishes it."""
    x, y, w, h = msg.box
    box = [
        round(x * FRAME_W),
        round(y * FRAME_H),
        round((x + w) * FRAME_W),
        round((y + h) * FRAME_H),
    ]
    area = (box[2] - box[0]) * (box[3] - box[1])
    side = max(320, round(1.5 * max(box[2] - box[0], box[3] - box[1])))
    cx, cy = (box[0] + box[2]) // 2, (box[1] + box[3]) // 2
    rx, ry = (
        min(max(0, cx - side // 2), FRAME_W - side),
        min(max(0, cy - side // 2), FRAME_H - side),
    )
    region = [rx, max(0, ry), rx + side, max(0, ry) + side]
    state = {
        "id": f"{msg.first_seen:.6f}-{msg.id[-6:].lower()}",
        "camera": camera,
        "frame_time": msg.last_seen,
        "snapshot": {
            "frame_time": msg.last_seen,
            "box": box,
            "area": area,
            "region": region,
            "score": msg.score,
            "attributes": [],
        },
        "label": msg.label,
        "sub_label": None,
        "top_score": msg.score,
        "false_positive": False,
        "start_time": msg.first_seen,
        "end_time": msg.last_seen if msg.phase == "e" else None,
        "score": msg.score,
        "box": box,
        "area": area,
        "ratio": round((box[2] - box[0]) / max(1, box[3] - box[1]), 6),
        "region": region,
        "current_zones": list(msg.zones or []),
        "entered_zones": list(msg.zones or []),
        "thumbnail": None,
        "has_snapshot": False,
        "has_clip": False,
        "active": True,
        "stationary": False,
        "motionless_count": 0,
        "position_changes": 1,
        "attributes": {},
        "current_attributes": [],
    }
    kind = "end" if msg.phase == "e" else "new"
    return json.dumps({"type": kind, "before": state, "after": state}).encode()


# -- 1. online latency, real pipeline -------------------------------------------------------
class Station:
    """A subscriber that notes when each event arrives."""

    def __init__(self, port: int, device: str = DEVICE, client_id: str = "station") -> None:
        self.arrived: dict[tuple[str, str], float] = {}
        self.ready = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.on_connect = lambda c, *_: c.subscribe(topic(device, "event"), 1)
        self.client.on_subscribe = lambda *_: self.ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.ready.wait(10)

    def _on_message(self, _c: object, _u: object, m: mqtt.MQTTMessage) -> None:
        body = json.loads(m.payload)
        self.arrived.setdefault((body["id"], body["k"]), time.monotonic())

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class Stamp:
    """A sink placed before the MQTT sink: notes which frame each event came from."""

    def __init__(self) -> None:
        self.frame_mono = 0.0
        self.sent: dict[tuple[str, str], float] = {}  # event -> capture of its frame
        self.emitted: dict[tuple[str, str], float] = {}  # event -> handed to the sinks
        self.events: list[EventMsg] = []

    def publish(self, kind: str, msg: Message) -> None:
        if isinstance(msg, EventMsg):
            self.sent[(msg.id, msg.phase)] = self.frame_mono
            self.emitted[(msg.id, msg.phase)] = time.monotonic()
            self.events.append(msg)

    def close(self) -> None:
        pass


def online_run(work: Path, port: int, seconds: float) -> tuple[Stamp, Station, Pipeline]:
    cfg = parse_config(
        {
            "device": DEVICE,
            "data_dir": str(work / "online"),
            "source": {
                "kind": "file",
                "path": str(footage_dir() / CLIP),
                "loop": True,
                "pace": "native",
            },
            "detector": {"models_dir": str(models_dir())},
            "events": {
                "sinks": ["mqtt"],
                "zones": [
                    {"name": "left-lanes", "polygon": [[0, 0.3], [0.5, 0.3], [0.5, 1], [0, 1]]},
                    {"name": "right-lanes", "polygon": [[0.5, 0.3], [1, 0.3], [1, 1], [0.5, 1]]},
                ],
            },
            "mqtt": {"host": "127.0.0.1", "port": port},
        },
        "bench",
    )
    station = Station(port)
    stamp = Stamp()
    source = open_source(cfg.source)
    holder: dict[str, Pipeline] = {}
    uplink = Uplink.from_config(cfg)
    pipeline = Pipeline(cfg, source, Detector(cfg.detector), [stamp, uplink.sink])
    holder["p"] = pipeline
    original_step = pipeline.step

    def step(frame: Frame) -> None:
        stamp.frame_mono = frame.mono
        original_step(frame)

    pipeline.step = step  # type: ignore[method-assign]
    uplink.start()
    uplink.client.wait_connected(10)
    try:
        pipeline.run(seconds)
    finally:
        source.close()
        uplink.sender.drain(10)
        uplink.stop()
    deadline = time.monotonic() + 10
    while len(station.arrived) < len(stamp.sent) and time.monotonic() < deadline:
        time.sleep(0.05)
    station.close()
    return stamp, station, pipeline


# -- 3. drain --------------------------------------------------------------------------------
def bare_loop(port: int, payloads: list[bytes]) -> float:
    """paho-mqtt alone: publish every payload at QoS 1, wait for the last PUBACK."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"bare-{new_id()}", protocol=mqtt.MQTTv5
    )
    client.max_inflight_messages_set(WINDOW)
    done = threading.Event()
    acked = [0]

    def on_publish(*_: object) -> None:
        acked[0] += 1
        if acked[0] == len(payloads):
            done.set()

    client.on_publish = on_publish
    connected = threading.Event()
    client.on_connect = lambda *_: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    connected.wait(10)
    name = topic("bare", "event")
    t0 = time.monotonic()
    for payload in payloads:
        client.publish(name, payload, qos=1)
    done.wait(120)
    elapsed = time.monotonic() - t0
    client.disconnect()
    client.loop_stop()
    return len(payloads) / elapsed


def uplink_drain(work: Path, port: int, payloads: list[bytes], run: int) -> float:
    """The uplink: the backlog is stored first (the outage), then the link comes up."""
    cfg = parse_config(
        {
            "device": DEVICE,
            "data_dir": str(work / f"drain-{run}"),
            "source": {"kind": "file", "path": "unused.mp4"},
            "mqtt": {
                "host": "127.0.0.1",
                "port": port,
                "max_inflight": WINDOW,
                "client_id": f"drain-{run}",
            },
            "uplink": {"outbox_sync": "normal"},  # the fill is not measured, only the drain
        },
        "bench",
    )
    uplink = Uplink(DEVICE, cfg.mqtt, cfg.uplink, cfg.data_dir, heartbeat=False)
    name = topic(DEVICE, "event")
    for payload in payloads:
        uplink.outbox.put(name, payload, 1, "event")
    t0 = time.monotonic()
    uplink.start()
    while uplink.outbox.rows:
        time.sleep(0.002)
    elapsed = time.monotonic() - t0
    uplink.stop()
    return len(payloads) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=25.0, help="online run length")
    parser.add_argument("--backlog", type=int, default=10_000, help="events in the outage")
    parser.add_argument("--rounds", type=int, default=3, help="drain measurements of each")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="roadside-bench-uplink-"))
    broker = start_broker(work / "broker")
    try:
        print(
            f"online: real pipeline on {CLIP} at its frame rate for {args.seconds:.0f} s ...",
            flush=True,
        )
        stamp, station, pipeline = online_run(work, broker.port, args.seconds)
        events = stamp.events
        if not events:
            raise SystemExit("no events from the footage: nothing to measure")

        # 2. bytes
        ours = [len(e.encode()) for e in events]
        ours_wire = [publish_bytes(topic(DEVICE, "event"), e.encode(), 1, True) for e in events]
        frig = [len(frigate_event(e, "junction_07")) for e in events]
        frig_wire = [
            publish_bytes("frigate/events", frigate_event(e, "junction_07"), 0, False)
            for e in events
        ]
        med = statistics.median(ours)
        print(
            f"bytes: {len(events)} events; payload median {med:.0f} B (max {max(ours)}), "
            f"with MQTT 5 QoS 1 framing {statistics.median(ours_wire):.0f} B"
        )
        print(
            f"bytes: Frigate-style frigate/events of the same detections: payload median "
            f"{statistics.median(frig):.0f} B, with MQTT 3.1.1 QoS 0 framing "
            f"{statistics.median(frig_wire):.0f} B -> ours is "
            f"{statistics.median(frig) / med:.1f}x smaller"
        )

        # 1. latency
        lat = [
            (station.arrived[k] - t) * 1000 for k, t in stamp.sent.items() if k in station.arrived
        ]
        missing = len(stamp.sent) - len(lat)
        det_ms = pipeline.stats.detect_latency_s * 1000
        p50, p99 = percentile(lat, 50), percentile(lat, 99)
        link = [
            (station.arrived[k] - t) * 1000
            for k, t in stamp.emitted.items()
            if k in station.arrived
        ]
        print(
            f"latency: frame capture -> station, {len(lat)} events ({missing} missing): "
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(lat):.1f} ms "
            f"(last detector run {det_ms:.1f} ms)"
        )
        print(
            f"latency: of which sink -> station (outbox fsync, sender, broker): "
            f"p50 {percentile(link, 50):.1f} ms, p99 {percentile(link, 99):.1f} ms"
        )

        # 3. drain
        payloads = [
            e.model_copy(update={"id": new_id()}).encode()
            for e in (events[i % len(events)] for i in range(args.backlog))
        ]
        bare_runs, our_runs = [], []
        # A station takes the messages, as in the field (the box keeps what nobody hears).
        listening = Station(broker.port, "+", "drain-station")
        for run in range(args.rounds):
            bare_runs.append(bare_loop(broker.port, payloads))
            our_runs.append(uplink_drain(work, broker.port, payloads, run))
            print(
                f"drain round {run + 1}: bare paho {bare_runs[-1]:.0f} msg/s, "
                f"uplink {our_runs[-1]:.0f} msg/s",
                flush=True,
            )
        listening.close()
        bare, drain = statistics.median(bare_runs), statistics.median(our_runs)
        print(
            f"drain: {args.backlog} events after an outage: uplink {drain:.0f} msg/s "
            f"(outbox -> PUBACK -> delete), bare paho QoS 1 loop {bare:.0f} msg/s, "
            f"ratio {drain / bare:.2f} (window {WINDOW})"
        )
        print(
            f"RESULT event_bytes={med:.0f} drain_eps={drain:.0f} "
            f"drain_vs_bare={drain / bare:.2f} latency_p99_ms={p99:.0f}"
        )
    finally:
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
