"""The command channel on a real mosquitto: replies, repeats, clips, snapshots, cancel, fuzz.

The box side is the agent's uplink, transfer sender and command channel; the station side is
the central receiver; the "officer" is a plain MQTT client sending commands. Clips are cut
by stream copy from real footage; snapshots come from real frames and a real detector run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from roadside.agent.commands.channel import INBOX_FILE, REQUESTS_FILE, CommandChannel
from roadside.agent.commands.jobs import ClipError
from roadside.agent.commands.snapshots import BestFrames
from roadside.agent.frames import Frame, LatestFrame
from roadside.agent.recording.clipcut import ClipResult
from roadside.agent.transfer.sender import TransferSender
from roadside.agent.uplink import Uplink
from roadside.central.config import BrokerConfig
from roadside.central.receiver import clip_receiver
from roadside.central.receiver_service import ReceiverService
from roadside.config.agent import (
    CommandsConfig,
    MqttConfig,
    TransferConfig,
    UplinkConfig,
    parse_config,
)
from roadside.ids import new_id
from roadside.testing.waiting import wait_until
from roadside.wire.commands import COMMANDS, ErrorCode, ReplyMsg
from roadside.wire.messages import EventMsg, Message
from roadside.wire.topics import CMD, EVENT, REPLY, ROOT, topic

FINAL = ("done", "error")


class FootageClips:
    """A clip maker over one real video file, taken as recorded from ``t0`` (epoch s).

    Cuts by stream copy from the keyframe at or before ``start``, like the recorder's cutter.
    """

    def __init__(self, path: Path, t0: float) -> None:
        self.path = path
        self.t0 = t0
        with av.open(str(path)) as c:
            self.duration = c.duration / 1e6

    def retained(self) -> dict[str, float]:
        return {"from": self.t0, "to": self.t0 + self.duration}

    def cut(self, start: float, end: float, out: Path, quality: str) -> ClipResult:
        t1 = self.t0 + self.duration
        if end <= self.t0 or start >= t1:
            raise ClipError(
                f"no footage between {start:.0f} and {end:.0f}: the box holds "
                f"{self.t0:.0f} to {t1:.0f}",
                ErrorCode.OUT_OF_RANGE,
            )
        lo, hi = max(0.0, start - self.t0), min(self.duration, end - self.t0)
        first = last = None
        with av.open(str(self.path)) as inp, av.open(str(out), "w") as dst:
            ins = inp.streams.video[0]
            ost = dst.add_stream_from_template(ins)
            tb = float(ins.time_base)
            inp.seek(int(lo / tb), stream=ins, backward=True, any_frame=False)
            for pkt in inp.demux(ins):
                if pkt.dts is None or pkt.pts is None:
                    continue
                t = pkt.pts * tb
                if t > hi:
                    break
                if first is None:
                    if not pkt.is_keyframe:
                        continue
                    first = t
                last = t + (pkt.duration or 0) * tb
                pkt.stream = ost
                dst.mux(pkt)
        assert first is not None and last is not None
        return ClipResult(out, self.t0 + first, self.t0 + last, [])


class Officer:
    """Sends commands and collects every reply, by request id."""

    def __init__(self, port: int) -> None:
        self.replies: dict[str, list[ReplyMsg]] = defaultdict(list)
        self.raw: list[bytes] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"officer-{new_id()}")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(f"{ROOT}/+/{REPLY}/+", qos=1)
        self.client.loop_start()

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        reply = ReplyMsg.decode(msg.payload)  # every reply must parse
        assert msg.topic.endswith(f"/{REPLY}/{reply.request_id}")
        with self._lock:
            self.replies[reply.request_id].append(reply)

    def send(self, device: str, name: str, payload: bytes | dict) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(topic(device, f"{CMD}/{name}"), data, qos=1).wait_for_publish(5)

    def finals(self, rq: str) -> list[ReplyMsg]:
        with self._lock:
            return [r for r in self.replies.get(rq, []) if r.state in FINAL]

    def final(self, rq: str, timeout: float = 10.0) -> ReplyMsg:
        wait_until(lambda: self.finals(rq), timeout, f"the final reply to {rq}")
        return self.finals(rq)[0]

    def ask(
        self,
        device: str,
        name: str,
        params: dict | None = None,
        timeout: float = 10.0,
        **envelope: object,
    ) -> ReplyMsg:
        rq = new_id()
        self.send(
            device, name, {"v": 1, "id": rq, "by": "officer@station", "p": params or {}, **envelope}
        )
        return self.final(rq, timeout)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Box:
    """The agent's command side on a real broker."""

    def __init__(
        self,
        device: str,
        data_dir: Path,
        port: int,
        clips: FootageClips | None,
        latest: LatestFrame | None = None,
        best: BestFrames | None = None,
        **transfer: object,
    ) -> None:
        self.device = device
        self.uplink = Uplink(
            device,
            MqttConfig(host="127.0.0.1", port=port),
            UplinkConfig(),
            data_dir,
            heartbeat=False,
        )
        self.sender = TransferSender(self.uplink, data_dir, TransferConfig(**transfer))
        self.channel = CommandChannel(
            self.uplink,
            self.sender,
            CommandsConfig(max_clip_s=600),
            data_dir,
            clips=clips,
            latest=latest,
            best=best,
        )

    def start(self) -> Box:
        self.sender.start()
        self.channel.start()
        self.uplink.start()
        assert self.uplink.client.wait_connected(10)
        return self

    def ready(self, officer: Officer) -> Box:
        """Wait until the box answers (its subscription is made on the broker)."""
        for _ in range(20):
            rq = new_id()
            officer.send(self.device, "ping", {"id": rq, "by": "test"})
            try:
                officer.final(rq, timeout=0.5)
                return self
            except AssertionError:
                continue
        raise AssertionError(f"{self.device} never answered a ping")

    def stop(self) -> None:
        self.channel.stop()
        self.sender.stop()
        self.uplink.stop()


class Rig:
    def __init__(self, root: Path, port: int, footage: Path) -> None:
        self.root = root
        self.rx = clip_receiver(root / "incoming", root / "files")
        self.svc = ReceiverService(
            BrokerConfig(host="127.0.0.1", port=port), self.rx, client_id="rig-receiver"
        ).start()
        self.clips = FootageClips(footage / "motorway_overpass.mp4", time.time() - 3600)
        self.latest = LatestFrame()
        with av.open(str(footage / "pedestrians_arcade.mp4")) as c:
            image = next(c.decode(video=0)).to_ndarray(format="bgr24")
        self.latest(Frame(image=image, time=time.time(), mono=time.monotonic(), index=0))
        self.best = BestFrames(root / "best", 10, 320, 80)
        self.box = Box("box-1", root / "box", port, self.clips, self.latest, self.best).start()
        self.officer = Officer(port)
        self.box.ready(self.officer)
        assert self.svc.connected.wait(10)

    def close(self) -> None:
        self.officer.close()
        self.box.stop()
        self.svc.stop()
        self.rx.close()


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory, footage: Path) -> Iterator[Rig]:
    from roadside.testing.broker import LocalBroker

    root = tmp_path_factory.mktemp("commands")
    with LocalBroker(root / "broker") as b:
        r = Rig(root, b.port, footage)
        r.port = b.port  # type: ignore[attr-defined]
        yield r
        r.close()


def test_ping_and_status(rig: Rig) -> None:
    pong = rig.officer.ask("box-1", "ping")
    assert pong.state == "done" and abs(pong.result["t"] - time.time()) < 5
    status = rig.officer.ask("box-1", "status")
    assert status.state == "done"
    assert status.result["link"] == 1 and isinstance(status.result["transfers"], list)
    assert status.result["rec"]["from"] == rig.clips.t0


def test_state_files_found_damaged_are_listed_in_the_status(rig: Rig) -> None:
    """A box whose command files were damaged starts anyway, and says so when asked."""
    data_dir = rig.root / "box-damaged"
    data_dir.mkdir()
    for name in (INBOX_FILE, REQUESTS_FILE):
        (data_dir / name).write_bytes(b"\x00garbage from a failing card" * 200)
    box = Box("box-2", data_dir, rig.port, None).start()  # type: ignore[attr-defined]
    try:
        box.ready(rig.officer)
        status = rig.officer.ask("box-2", "status")
    finally:
        box.stop()
    assert status.state == "done"
    listed = {d["file"]: d for d in status.result["damaged"]}
    assert set(listed) == {INBOX_FILE, REQUESTS_FILE}
    for name, report in listed.items():
        assert (data_dir / report["aside"]).read_bytes().startswith(b"\x00garbage")
        assert report["aside"].startswith(f"{name}.damaged-") and report["why"]
    assert "damaged" not in rig.officer.ask("box-1", "status").result


@pytest.mark.parametrize(
    ("name", "params", "code", "words"),
    [
        ("launch", {}, ErrorCode.UNKNOWN_COMMAND, "clip, snapshot"),
        ("clip", {"from": 10.0}, ErrorCode.BAD_PARAMS, "p.to"),
        ("clip", {"from": 20.0, "to": 10.0}, ErrorCode.BAD_PARAMS, "'to' must be after 'from'"),
        ("clip", {"from": "10:14", "to": 20.0}, ErrorCode.BAD_PARAMS, "p.from"),
        ("clip", {"from": 0.0, "to": 5000.0}, ErrorCode.TOO_LARGE, "600 s at most"),
        ("clip", {"from": 1.0, "to": 2.0, "form": 3}, ErrorCode.BAD_PARAMS, "unknown field"),
        ("ping", {"x": 1}, ErrorCode.BAD_PARAMS, "p.x"),
        ("snapshot", {"event": "../../etc/passwd"}, ErrorCode.BAD_PARAMS, "p.event"),
        ("cancel", {"target": "NOPE"}, ErrorCode.NOT_FOUND, "NOPE"),
    ],
)
def test_bad_requests_get_clear_errors(
    rig: Rig, name: str, params: dict, code: str, words: str
) -> None:
    reply = rig.officer.ask("box-1", name, params)
    assert (reply.state, reply.code) == ("error", code)
    assert words in (reply.detail or "")


def test_expired_request_is_refused(rig: Rig) -> None:
    reply = rig.officer.ask("box-1", "ping", exp=time.time() - 10)
    assert (reply.state, reply.code) == ("error", ErrorCode.EXPIRED)


def test_repeated_request_id_runs_once(rig: Rig) -> None:
    rq = new_id()
    ask = {
        "v": 1,
        "id": rq,
        "by": "officer@station",
        "p": {"from": rig.clips.t0 + 1, "to": rig.clips.t0 + 3},
    }
    rig.officer.send("box-1", "clip", ask)
    first = rig.officer.final(rq, 20)
    rig.officer.send("box-1", "clip", ask)
    wait_until(lambda: len(rig.officer.finals(rq)) == 2, 10, "the repeated final reply")
    again = rig.officer.finals(rq)[1]
    assert again.id == first.id  # the same message again: the station drops the copy
    assert rig.box.channel.stats.repeats >= 1
    transfers = rig.box.sender.store._select("WHERE rq = ?", (rq,))
    assert len(transfers) == 1


@pytest.mark.slow
def test_clip_is_cut_uploaded_and_verified(rig: Rig) -> None:
    t0 = rig.clips.t0
    reply = rig.officer.ask("box-1", "clip", {"from": t0 + 2.0, "to": t0 + 8.0}, timeout=30)
    assert reply.state == "done", reply
    r = reply.result
    assert r["actual_from"] <= t0 + 2.0 + 0.05 and r["actual_to"] >= t0 + 7.9
    assert (r["from"], r["to"], r["quality"]) == (t0 + 2.0, t0 + 8.0, "original")
    state = rig.rx.state(reply.transfer_id)
    stored = Path(state["path"])
    assert hashlib.sha256(stored.read_bytes()).hexdigest() == r["sha256"]
    assert stored.stat().st_size == r["bytes"]
    with av.open(str(stored)) as c:
        frames = sum(1 for _ in c.decode(video=0))
    assert frames >= 5.9 * 29
    progress = [m for m in rig.officer.replies[reply.request_id] if m.state == "progress"]
    assert progress and progress[0].detail in ("queued", "cutting the clip")
    assert not list((rig.root / "box" / "outgoing").glob(f"{reply.request_id}*"))


def test_clip_outside_the_recordings_says_what_is_kept(rig: Rig) -> None:
    reply = rig.officer.ask("box-1", "clip", {"from": rig.clips.t0 - 500, "to": rig.clips.t0 - 400})
    assert (reply.state, reply.code) == ("error", ErrorCode.OUT_OF_RANGE)
    assert f"{rig.clips.t0:.0f}" in (reply.detail or "")


def test_clip_over_the_byte_cap_is_refused(rig: Rig) -> None:
    reply = rig.officer.ask(
        "box-1", "clip", {"from": rig.clips.t0, "to": rig.clips.t0 + 10, "max_bytes": 2048}
    )
    assert (reply.state, reply.code) == ("error", ErrorCode.TOO_LARGE)
    assert "quality 'low'" in (reply.detail or "")


def test_snapshot_now_is_a_small_jpeg(rig: Rig) -> None:
    reply = rig.officer.ask("box-1", "snapshot", timeout=20)
    assert reply.state == "done", reply
    data = Path(rig.rx.state(reply.transfer_id)["path"]).read_bytes()
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[1] == 640
    assert len(data) < 150_000


@pytest.mark.slow
def test_snapshot_of_an_event_is_its_best_frame(
    rig: Rig, footage: Path, tmp_path: Path, models_dir: Path
) -> None:
    from roadside.agent.pipeline import Pipeline
    from roadside.agent.sources import open_source
    from roadside.agent.vision.detector import Detector
    from roadside.testing.configs import agent_config

    class Events:
        def __init__(self) -> None:
            self.ids: list[str] = []

        def publish(self, kind: str, msg: Message) -> None:
            if kind == "event" and msg.id not in self.ids:
                self.ids.append(msg.id)

        def close(self) -> None: ...

    cfg = parse_config(
        agent_config(
            tmp_path, footage / "traffic_frames.mp4", detector={"models_dir": str(models_dir)}
        )
    )
    events = Events()
    source = open_source(cfg.source)
    pipeline = Pipeline(cfg, source, Detector(cfg.detector), [events], observers=[rig.best.observe])
    pipeline.run(duration=20)
    source.close()
    rig.best.flush()  # as the agent does when it stops
    assert events.ids, "the footage should give at least one event"
    reply = rig.officer.ask("box-1", "snapshot", {"event": events.ids[0]}, timeout=20)
    assert reply.state == "done", reply
    assert reply.result["event"] == events.ids[0]
    data = Path(rig.rx.state(reply.transfer_id)["path"]).read_bytes()
    assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape[1] == 320
    kept = sorted((rig.root / "best").glob("*.jpg"))
    assert 1 <= len(kept) <= 10
    missing = rig.officer.ask("box-1", "snapshot", {"event": new_id()})
    assert (missing.state, missing.code) == ("error", ErrorCode.NOT_FOUND)


def test_cancel_stops_a_running_upload(rig: Rig, tmp_path: Path) -> None:
    slow = Box("box-slow", tmp_path / "slow", rig.port, rig.clips, kbps=100).start()
    slow.ready(rig.officer)
    try:
        rq = new_id()
        rig.officer.send(
            "box-slow",
            "clip",
            {
                "id": rq,
                "by": "officer@station",
                "p": {"from": rig.clips.t0, "to": rig.clips.t0 + 10},
            },
        )
        wait_until(
            lambda: any(m.transfer_id for m in rig.officer.replies.get(rq, [])),
            20,
            "the upload to start",
        )
        done = rig.officer.ask("box-slow", "cancel", {"target": rq})
        assert done.state == "done" and done.result["cancelled"] == rq
        final = rig.officer.final(rq)
        assert (final.state, final.code) == ("error", ErrorCode.CANCELLED)
        wait_until(
            lambda: (
                rig.rx.state(final.transfer_id)
                and rig.rx.state(final.transfer_id)["state"] == "fail"
            ),
            10,
            "the station to drop the partial file",
        )
    finally:
        slow.stop()


def test_requests_survive_a_restart_of_the_channel(rig: Rig, tmp_path: Path) -> None:
    box = Box("box-restart", tmp_path / "r", rig.port, rig.clips).start().ready(rig.officer)
    rq = new_id()
    rig.officer.send("box-restart", "ping", {"id": rq, "by": "o"})
    first = rig.officer.final(rq)
    box.stop()
    box = Box("box-restart", tmp_path / "r", rig.port, rig.clips).start().ready(rig.officer)
    try:
        rig.officer.send("box-restart", "ping", {"id": rq, "by": "o"})
        wait_until(lambda: len(rig.officer.finals(rq)) == 2, 10, "the stored reply")
        assert rig.officer.finals(rq)[1].id == first.id
    finally:
        box.stop()


# -- fuzzing: whatever arrives, the box answers each addressable request with an error --------
_counter = iter(range(10**9))
ids = st.builds(
    lambda tail: f"F{next(_counter)}-{tail}"[:64],
    st.from_regex(r"[0-9A-Za-z_-]{0,40}", fullmatch=True),
)
junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from(["../../etc/passwd", "/dev/sda", "C:\\Windows", "cmd/#", "+", ""]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
numbers = st.integers(min_value=-(10**30), max_value=10**30) | st.floats(
    allow_nan=False, allow_infinity=False
)


@st.composite
def bad_requests(draw: st.DrawFn) -> tuple[str, bytes, str]:
    """(command name, payload, request id): each payload has at least one defect."""
    rq = draw(ids)
    name = draw(st.sampled_from([*COMMANDS, "../../etc", "reboot", "clip/extra"]))
    defect = draw(
        st.sampled_from(
            ["types", "range", "unknown", "big", "utf8", "paths", "not_object", "envelope"]
        )
    )
    body: dict = {"v": 1, "id": rq, "by": "fuzz"}
    if defect == "types":
        body["p"] = draw(st.lists(junk, max_size=2) | st.text(max_size=5) | st.integers())
    elif defect == "range":
        name = "clip"
        a, b = draw(numbers), draw(numbers)
        reverse = draw(st.booleans())
        lo, hi = (max(a, b), min(a, b)) if reverse else (min(a, b), max(a, b) + 10**7)
        body["p"] = {"from": lo, "to": hi}
    elif defect == "unknown":
        body["p"] = {draw(st.sampled_from(["form", "til", "path", "x"])): draw(junk)}
    elif defect == "big":
        body["p"] = {"pad": "a" * (1 << 20)}
    elif defect == "utf8":
        raw = b'{"v":1,"id":"' + rq.encode() + b'","by":"\xff\xfe' + draw(st.binary(max_size=20))
        return name, raw + b'"}', rq
    elif defect == "paths":
        name = draw(st.sampled_from(["snapshot", "cancel"]))
        path = draw(st.sampled_from(["../../etc/passwd", "/var/lib/roadside/x", "a/../../b"]))
        body["p"] = {"event": path} if name == "snapshot" else {"target": path}
    elif defect == "not_object":
        return name, json.dumps([body, draw(junk)]).encode(), rq
    else:
        body[draw(st.sampled_from(["by", "exp", "p"]))] = draw(
            st.lists(junk, min_size=1, max_size=2)
        )
        body["extra_field"] = draw(junk)
    return name, json.dumps(body).encode(), rq


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(request=bad_requests())
@pytest.mark.slow
def test_fuzzed_commands_each_get_one_error(rig: Rig, request: tuple[str, bytes, str]) -> None:
    name, payload, rq = request
    rig.officer.send("box-1", name, payload)
    reply = rig.officer.final(rq, timeout=10)
    assert reply.state == "error", (name, payload[:200], reply)
    assert reply.code in vars(ErrorCode).values()
    assert reply.detail


def test_after_fuzzing_the_box_is_up_and_answered_once(rig: Rig) -> None:
    assert rig.box.channel._thread is not None and rig.box.channel._thread.is_alive()
    assert rig.officer.ask("box-1", "ping").state == "done"
    for rq, replies in rig.officer.replies.items():
        finals = {r.id for r in replies if r.state in FINAL}
        assert len(finals) <= 1, (rq, replies)
    assert rig.box.channel.stats.busy == 0


@pytest.mark.slow
def test_the_running_agent_answers_snapshots(
    rig: Rig, tmp_path: Path, footage: Path, models_dir: Path
) -> None:
    """The whole agent: pipeline, uplink and command side assembled from one config."""
    from roadside.agent.assembly import assemble
    from roadside.testing.configs import agent_config

    doc = agent_config(
        tmp_path,
        footage / "motorway_overpass.mp4",
        detector={"models_dir": str(models_dir)},
        events={"sinks": ["mqtt"]},
    )
    doc["source"].update(pace="native", loop=True)
    doc["device"] = "agent-box"
    doc["mqtt"] = {"host": "127.0.0.1", "port": rig.port}  # type: ignore[attr-defined]
    agent = assemble(parse_config(doc))
    ended: list[str] = []
    watch = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="event-watch")
    watch.on_message = lambda _c, _u, m: (
        ended.append(EventMsg.decode(m.payload).id)
        if EventMsg.decode(m.payload).phase == "e"
        else None
    )
    watch.connect("127.0.0.1", rig.port)  # type: ignore[attr-defined]
    watch.subscribe(topic("agent-box", EVENT), qos=1)
    watch.loop_start()
    runner = threading.Thread(target=agent.run, kwargs={"duration": 60}, daemon=True)
    runner.start()
    try:
        agent.device = "agent-box"  # type: ignore[attr-defined]
        Box.ready(agent, rig.officer)  # type: ignore[arg-type]
        now = rig.officer.ask("agent-box", "snapshot", timeout=20)
        assert now.state == "done", now
        wait_until(lambda: ended, 30, "an event to end")
        best = rig.officer.ask("agent-box", "snapshot", {"event": ended[0]}, timeout=20)
        assert best.state == "done", best
        for reply in (now, best):
            data = Path(rig.rx.state(reply.transfer_id)["path"]).read_bytes()
            assert cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is not None
    finally:
        agent.pipeline.stop()
        runner.join(30)
        watch.loop_stop()
    assert not runner.is_alive()


@pytest.mark.slow
def test_a_command_acknowledged_just_before_a_kill_runs_after_the_restart(
    broker, tmp_path: Path
) -> None:
    """The broker has had its PUBACK, the command thread never ran (the box was killed): the
    command waits in the box's inbox on disk, and the next start answers it."""
    officer = Officer(broker.port)
    first = Box("box-k", tmp_path / "box", broker.port, None)
    # the link takes commands in, but the command thread is never started
    first.uplink.subscribe(f"{CMD}/#", first.channel._on_message)
    first.uplink.start()
    assert first.uplink.client.wait_connected(10)
    rq = new_id()
    for _ in range(40):  # until the box's subscription is in place and the command is in
        officer.send("box-k", "ping", {"id": rq, "by": "test"})
        time.sleep(0.25)
        if first.channel.inbox.waiting():
            break
    assert first.channel.inbox.waiting(), "the command never reached the box"
    first.uplink.stop()
    first.channel.requests.close()
    first.channel.inbox.close()
    assert officer.finals(rq) == []  # nothing answered it

    second = Box("box-k", tmp_path / "box", broker.port, None).start()
    try:
        reply = officer.final(rq, timeout=15)
        assert reply.request_id == rq and reply.state == "done"
        assert second.channel.stats.recovered >= 1
        wait_until(lambda: not second.channel.inbox.waiting(), 5, "an empty inbox")
    finally:
        second.stop()
        officer.close()


def _burst(officer: Officer, device: str, name: str, bodies: list[dict]) -> None:
    """Publish every body at once (QoS 1), as fast as paho sends, and wait for the PUBACKs."""
    infos = [
        officer.client.publish(topic(device, f"{CMD}/{name}"), json.dumps(b).encode(), qos=1)
        for b in bodies
    ]
    for info in infos:
        info.wait_for_publish(30)


@pytest.mark.slow
def test_a_flood_of_commands_gets_one_reply_each(broker, tmp_path: Path) -> None:
    """5,000 pings at once: the broker has every PUBACK, so every ping gets one final reply,
    done or busy; none is acknowledged and then lost."""
    officer = Officer(broker.port)
    box = Box("box-f", tmp_path / "box", broker.port, None).start()
    try:
        box.ready(officer)
        ids = [new_id() for _ in range(5000)]
        _burst(officer, "box-f", "ping", [{"id": rq, "by": "flood"} for rq in ids])
        wait_until(
            lambda: sum(1 for rq in ids if officer.finals(rq)) == len(ids),
            120,
            "a final reply to every ping",
        )
        finals = [officer.finals(rq) for rq in ids]
        assert all(len(f) == 1 for f in finals)
        codes = {f[0].code or f[0].state for f in finals}
        assert codes <= {"done", ErrorCode.BUSY}, codes
        assert box.channel.stats.busy == sum(1 for f in finals if f[0].code == ErrorCode.BUSY)
    finally:
        box.stop()
        officer.close()


def test_a_lone_surrogate_in_a_field_gets_one_error_reply(rig: Rig) -> None:
    """JSON may spell text that is no text ("\\ud800"): one error reply, and the box goes on."""
    rq = new_id()
    rig.officer.send(
        "box-1", "ping", b'{"v": 1, "id": "%s", "by": "\\ud800", "p": {}}' % rq.encode()
    )
    reply = rig.officer.final(rq)
    assert (reply.state, reply.code) == ("error", ErrorCode.BAD_REQUEST)
    assert "UTF-8" in (reply.detail or "")
    assert rig.officer.ask("box-1", "ping").state == "done"
    assert len(rig.officer.finals(rq)) == 1


def test_a_retained_command_is_not_run(rig: Rig) -> None:
    """A command the broker keeps as retained would be replayed at every reconnect: the box
    ignores it (and counts it), and answers the commands sent to it."""
    rq = new_id()
    body = json.dumps({"v": 1, "id": rq, "by": "officer@station", "p": {}}).encode()
    cmd_topic = topic("box-r", f"{CMD}/ping")
    rig.officer.client.publish(cmd_topic, body, qos=1, retain=True).wait_for_publish(5)
    box = Box("box-r", rig.root / "box-retained", rig.port, None).start()  # type: ignore[attr-defined]
    try:
        box.ready(rig.officer)  # the retained command came first, on subscribing
        assert rig.officer.ask("box-r", "ping").state == "done"
        assert rig.officer.replies.get(rq) is None
        assert box.channel.stats.retained == 1
    finally:
        rig.officer.client.publish(cmd_topic, b"", qos=1, retain=True).wait_for_publish(5)
        box.stop()


def test_best_frames_stay_within_their_byte_budget(tmp_path: Path, footage: Path) -> None:
    """Best frames share the card with the outbox: beyond ``max_bytes`` the oldest go."""
    from types import SimpleNamespace

    with av.open(str(footage / "pedestrians_arcade.mp4")) as c:
        frames = itertools.islice(c.decode(video=0), 12)
        images = [f.to_ndarray(format="bgr24") for f in frames]
    one = len(cv2.imencode(".jpg", cv2.resize(images[0], (320, 180)))[1])
    best = BestFrames(tmp_path / "best", 100, 320, 80, max_bytes=4 * one)
    events = []
    for i, image in enumerate(images):
        t = 1000.0 + i
        events.append(new_id())
        track = SimpleNamespace(track_id=i, event_id=events[-1], best_time=t, best_score=0.9)
        best.observe(Frame(image=image, time=t, mono=t, index=i), [track])  # type: ignore[list-item]
        best.observe(Frame(image=image, time=t + 0.5, mono=t + 0.5, index=i), [])
    kept = sorted(p.stem for p in (tmp_path / "best").glob("*.jpg"))
    assert sum(p.stat().st_size for p in (tmp_path / "best").glob("*.jpg")) <= 4 * one
    assert 2 <= len(kept) < len(images) and kept == sorted(events)[-len(kept) :]
    assert best.get(events[-1]) is not None and best.get(events[0]) is None
