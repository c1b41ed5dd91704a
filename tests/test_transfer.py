"""Chunked uploads box -> station over a real mosquitto, through the bad-link proxy.

The box side is the agent's own uplink and transfer sender; the station side is the central
receiver service. Files are real footage.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import av
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from waiting import wait_until

from roadside.agent.transfer.sender import TransferSender
from roadside.agent.transfer.store import TransferRecord
from roadside.agent.uplink import Uplink
from roadside.badlink import BadLink, LinkShape
from roadside.central.config import BrokerConfig
from roadside.central.receiver import clip_receiver
from roadside.central.receiver_service import ReceiverService
from roadside.config.agent import MqttConfig, TransferConfig, UplinkConfig
from roadside.ids import new_id
from roadside.transfer.receiver import TransferReceiver
from roadside.wire.commands import ErrorCode
from roadside.wire.messages import EventMsg
from roadside.wire.topics import EVENT, XFER, XFER_ABORT, topic, xfer_topic
from roadside.wire.transfer import XferAbort, unpack_chunk

DEVICE = "junction-07"
ROOT = Path(__file__).resolve().parents[1]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def concat_copy(src: Path, out: Path, times: int) -> None:
    """A longer real clip: the footage played ``times`` times, by stream copy."""
    with av.open(str(src)) as inp, av.open(str(out), "w") as dst:
        ins = inp.streams.video[0]
        ost = dst.add_stream_from_template(ins)
        offset = 0
        for _ in range(times):
            inp.seek(0)
            last = 0
            for pkt in inp.demux(ins):
                if pkt.dts is None:
                    continue
                pkt.dts += offset
                pkt.pts += offset
                last = max(last, pkt.pts + (pkt.duration or 0))
                pkt.stream = ost
                dst.mux(pkt)
            offset = last


@pytest.fixture(scope="module")
def big_clip(footage: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clip") / "motorway_x2.mp4"
    concat_copy(footage / "motorway_overpass.mp4", out, 2)
    assert out.stat().st_size >= 2_000_000
    return out


class Station:
    """The central receiver on the broker, restartable."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.port = port
        self.rx: TransferReceiver | None = None
        self.svc: ReceiverService | None = None

    def start(self) -> Station:
        self.rx = clip_receiver(self.root / "incoming", self.root / "files")
        self.svc = ReceiverService(
            BrokerConfig(host="127.0.0.1", port=self.port), self.rx, client_id="test-receiver"
        ).start()
        assert self.svc.connected.wait(10)
        return self

    def stop(self) -> None:
        if self.svc is not None:
            self.svc.stop()
        if self.rx is not None:
            self.rx.close()
        self.svc = self.rx = None

    def held(self, xid: str) -> int:
        state = self.rx.state(xid) if self.rx else None
        if not state:
            return 0
        return state["chunks"] if state["state"] == "done" else state["held"]


class Box:
    """The box side: the agent's uplink and transfer sender on a data dir."""

    def __init__(self, data_dir: Path, port: int, **transfer: object) -> None:
        mqtt_cfg = MqttConfig(
            host="127.0.0.1", port=port, reconnect_min_s=0.1, reconnect_max_s=0.5, keepalive_s=10
        )
        self.uplink = Uplink(DEVICE, mqtt_cfg, UplinkConfig(), data_dir, heartbeat=False)
        self.sender = TransferSender(self.uplink, data_dir, TransferConfig(**transfer))
        self.finished: list[TransferRecord] = []
        self.progress: list[float] = []
        self.sender.on_finished.append(self.finished.append)
        self.sender.on_progress.append(lambda _rec, frac: self.progress.append(frac))

    def start(self) -> Box:
        self.sender.start()
        self.uplink.start()
        return self

    def stop(self) -> None:
        self.sender.stop()
        self.uplink.stop()

    def send(self, path: Path, **kw: object) -> TransferRecord:
        copy = self.sender.outgoing / f"{new_id()}{path.suffix}"
        copy.write_bytes(path.read_bytes())
        return self.sender.send_file(copy, "clip", path.name, **kw)


class Tap:
    """A plain subscriber counting every chunk the broker got, by offset."""

    def __init__(self, port: int, parts: str = "+") -> None:
        self.offsets: Counter[int] = Counter()
        self.bytes = 0
        self.messages: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"tap-{new_id()}")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic(DEVICE, f"{XFER}/+/{parts}"), qos=1)
        self.client.loop_start()

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/d"):
            offset, data = unpack_chunk(msg.payload)
            self.offsets[offset] += 1
            self.bytes += len(data)
        else:
            self.messages.append((msg.topic, msg.payload))

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def station(tmp_path: Path, broker) -> Iterator[Station]:
    st = Station(tmp_path / "station", broker.port).start()
    yield st
    st.stop()


def test_clip_arrives_intact_across_cuts(
    tmp_path: Path, broker, station: Station, big_clip: Path
) -> None:
    shape = LinkShape(latency_s=0.02, up_kbps=6000, down_kbps=6000, down_for_s=0.3)
    with BadLink(broker.port, shape=shape) as link:
        box = Box(tmp_path / "box", link.port).start()
        try:
            rec = box.send(big_clip)
            total = rec.chunks
            for i in range(1, 7):  # six cuts, spread over the upload by the station's progress
                wait_until(
                    lambda i=i: station.held(rec.xid) >= total * i // 8,
                    60,
                    f"{i}/8 of the chunks at the station",
                )
                if station.held(rec.xid) < total:
                    link.cut()
            wait_until(lambda: box.finished, 60, "the transfer to end")
        finally:
            box.stop()
        assert link.stats.cuts >= 5
        assert box.uplink.client.state().connects >= 6
    done = box.finished[0]
    assert done.state == "done", (done.code, done.msg)
    state = station.rx.state(rec.xid)
    assert sha256(Path(state["path"])) == sha256(big_clip)
    assert box.progress and max(box.progress) > 0.5
    assert not Path(rec.path).exists()  # the box's copy is gone once the station has it


def write_box_config(path: Path, data_dir: Path, port: int, footage: Path, models: Path) -> None:
    path.write_text(f"""
device = "{DEVICE}"
data_dir = "{data_dir}"
[source]
kind = "file"
path = "{footage / "traffic_frames.mp4"}"
loop = true
[detector]
models_dir = "{models}"
[events]
sinks = ["mqtt"]
[mqtt]
host = "127.0.0.1"
port = {port}
reconnect_min_s = 0.1
reconnect_max_s = 0.5
keepalive_s = 10
[transfer]
chunk_kib = 16
window = 4
""")


def test_box_restart_resumes_without_starting_over(
    tmp_path: Path, broker, station: Station, footage: Path, models_dir: Path
) -> None:
    """Started by ``roadside agent upload``, killed; the agent resumes it, is killed in turn,
    and the next agent run finishes it: nothing the station held is sent again."""
    clip = footage / "motorway_overpass.mp4"
    shape = LinkShape(latency_s=0.03, up_kbps=3000, down_kbps=3000)
    tap = Tap(broker.port)
    roadside = str(Path(sys.executable).parent / "roadside")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with BadLink(broker.port, shape=shape) as link:
        cfg = tmp_path / "box.toml"
        write_box_config(cfg, tmp_path / "box", link.port, footage, models_dir)

        def start(*args: str) -> subprocess.Popen:
            return subprocess.Popen(
                [roadside, "agent", *args, "--config", str(cfg)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )

        def kill_when(proc: subprocess.Popen, chunks: int) -> None:
            try:
                wait_until(
                    lambda: station.rx.stats.chunks >= chunks, 60, f"{chunks} chunks at the station"
                )
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)

        kill_when(start("upload", str(clip)), 30)
        kill_when(start("run"), station.rx.stats.chunks + 30)
        held_at_kill = station.rx.stats.chunks
        assert held_at_kill < 115  # killed mid-transfer (the file has 121 chunks)
        last = start("run")
        try:
            wait_until(lambda: station.rx.stats.done == 1, 60, "the file at the station")
        finally:
            last.send_signal(signal.SIGTERM)
            assert last.wait(30) == 0
    tap.close()
    (one,) = station.rx.transfers(DEVICE)  # one transfer, whatever the restarts
    xid = one["xid"]
    state = station.rx.state(xid)
    assert sha256(Path(state["path"])) == sha256(clip)
    window_bytes = 4 * 16 * 1024
    twice = tap.bytes - clip.stat().st_size
    assert 0 <= twice < window_bytes, f"{twice} bytes sent twice over two restarts"
    assert station.rx.stats.dup_bytes < window_bytes
    assert len(tap.offsets) == state["chunks"]


def test_station_restart_mid_transfer(
    tmp_path: Path, broker, station: Station, footage: Path
) -> None:
    clip = footage / "motorway_overpass.mp4"
    shape = LinkShape(latency_s=0.02, up_kbps=4000, down_kbps=4000)
    with BadLink(broker.port, shape=shape) as link:
        box = Box(tmp_path / "box", link.port, ack_timeout_s=2).start()
        try:
            rec = box.send(clip)
            wait_until(lambda: station.held(rec.xid) >= 40, 60, "40 chunks at the station")
            station.stop()
            station.start()
            wait_until(lambda: box.finished, 60, "the transfer to end")
        finally:
            box.stop()
    assert box.finished[0].state == "done"
    state = station.rx.state(rec.xid)
    assert sha256(Path(state["path"])) == sha256(clip)
    assert state["dup_bytes"] < 8 * 16 * 1024


def test_cancel_tells_the_station_to_drop_it(
    tmp_path: Path, broker, station: Station, footage: Path
) -> None:
    shape = LinkShape(latency_s=0.02, up_kbps=2000, down_kbps=2000)
    with BadLink(broker.port, shape=shape) as link:
        box = Box(tmp_path / "box", link.port).start()
        try:
            rec = box.send(footage / "motorway_overpass.mp4", rq="REQ-cancel")
            wait_until(lambda: station.held(rec.xid) >= 10, 30, "10 chunks at the station")
            assert box.sender.cancel("REQ-cancel") is not None
            wait_until(
                lambda: station.rx.state(rec.xid)["state"] == "fail",
                30,
                "the station to drop the transfer",
            )
            wait_until(lambda: box.finished, 10, "the box to end the transfer")
            assert box.sender.find("REQ-cancel").state == "failed"
        finally:
            box.stop()
    assert box.finished[0].code == ErrorCode.CANCELLED
    assert station.rx.state(rec.xid)["code"] == ErrorCode.CANCELLED
    assert not (tmp_path / "station" / "incoming" / f"{rec.xid}.part").exists()


def test_deadline_fails_clearly_when_nobody_answers(tmp_path: Path, broker) -> None:
    tap = Tap(broker.port, "abort")
    box = Box(tmp_path / "box", broker.port).start()
    try:
        rec = box.send(Path(__file__), deadline_s=1.5)  # no station is running
        wait_until(lambda: box.finished, 10, "the deadline")
        wait_until(lambda: tap.messages, 10, "the abort message")
    finally:
        box.stop()
        tap.close()
    failed = box.finished[0]
    assert (failed.state, failed.code) == ("failed", ErrorCode.DEADLINE)
    assert "did not finish within" in (failed.msg or "")
    assert tap.messages[0][0] == xfer_topic(DEVICE, rec.xid, XFER_ABORT)
    assert XferAbort.decode(tap.messages[0][1]).code == ErrorCode.DEADLINE


def test_events_keep_flowing_during_an_upload(
    tmp_path: Path, broker, station: Station, big_clip: Path
) -> None:
    shape = LinkShape(latency_s=0.05, up_kbps=512, down_kbps=512)
    seen: dict[str, float] = {}
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="events-tap")
    sub.on_message = lambda _c, _u, m: seen.setdefault(
        EventMsg.decode(m.payload).id, time.monotonic()
    )
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe(topic(DEVICE, EVENT), qos=1)
    sub.loop_start()
    sent: dict[str, float] = {}
    with BadLink(broker.port, shape=shape) as link:
        box = Box(tmp_path / "box", link.port, kbps=300).start()
        try:
            rec = box.send(big_clip)
            wait_until(lambda: station.held(rec.xid) >= 5, 30, "the upload to be under way")
            stop = threading.Event()
            for i in range(8):
                eid = new_id()
                msg = EventMsg(
                    id=eid,
                    phase="s",
                    label="car",
                    score=0.9,
                    first_seen=i,
                    last_seen=i,
                    box=(0, 0, 0.1, 0.1),
                    track=i,
                )
                sent[eid] = time.monotonic()
                box.uplink.publish(EVENT, msg)
                stop.wait(0.4)
            wait_until(lambda: len(seen) == len(sent), 30, "every event")
            assert station.held(rec.xid) < rec.chunks  # the upload was still going
        finally:
            box.stop()
            sub.loop_stop()
    delays = sorted(seen[e] - sent[e] for e in sent)
    assert delays[-1] < 1.0, delays  # a 16 KiB chunk alone takes 0.26 s at 512 kbit/s
