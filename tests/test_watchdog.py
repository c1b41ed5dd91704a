"""The systemd watchdog: sd_notify on a real datagram socket, with the real agent.

The end-to-end test runs ``roadside agent run`` the way systemd does (NOTIFY_SOCKET and
WATCHDOG_USEC in its environment) on a camera that is a named pipe carrying an MPEG-TS
stream of the real footage, written at camera pace by the test. When the test stops writing
(the pipe stays open: a hung camera, not a closed one), the pings must stop while the process
is still running; when frames come back, so do the pings.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import av
import pytest
import tomli_w

from roadside.agent.hardware.liveness import (
    BoxState,
    LinkSummary,
    PipelineLiveness,
    box_state,
)
from roadside.agent.hardware.watchdog import SystemdNotifier
from roadside.agent.pipeline import PipelineStats
from roadside.config.agent import WatchdogConfig
from roadside.testing.configs import agent_config

ROADSIDE = str(Path(sys.executable).with_name("roadside"))


class NotifyListener(threading.Thread):
    """What systemd would receive: every datagram on the notify socket, with its arrival time."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(name="notify-listener", daemon=True)
        self.sock = sock
        self.messages: list[tuple[float, dict[str, str]]] = []
        self.cond = threading.Condition()
        self.stopping = threading.Event()

    def run(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stopping.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
            with self.cond:
                self.messages.append((time.monotonic(), fields))
                self.cond.notify_all()

    def wait_for(
        self, predicate: Callable[[list[tuple[float, dict[str, str]]]], object], timeout: float
    ) -> object:
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self.messages), timeout)

    def since(self, t: float) -> list[dict[str, str]]:
        with self.cond:
            return [m for at, m in self.messages if at >= t]


class TsCamera(threading.Thread):
    """Writes the footage as MPEG-TS into a named pipe at camera pace, looping.

    Clearing ``flowing`` hangs the camera: nothing more is written but the pipe stays open,
    so the reader blocks exactly as on a stuck capture. ``done`` ends and closes it.
    """

    def __init__(self, fifo: Path, footage: Path) -> None:
        super().__init__(name="ts-camera", daemon=True)
        self.fifo = fifo
        self.footage = footage
        self.flowing = threading.Event()
        self.flowing.set()
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with (
                av.open(str(self.footage)) as src,
                av.open(str(self.fifo), "w", format="mpegts") as out,
            ):
                self._stream(src, out)
        except (BrokenPipeError, av.error.FFmpegError, OSError) as exc:
            if not self.done.is_set():
                self.error = exc

    def _stream(self, src: av.container.InputContainer, out: av.container.OutputContainer) -> None:
        ist = src.streams.video[0]
        ost = out.add_stream_from_template(ist)
        tb = float(ist.time_base)
        offset, start = 0, time.monotonic()
        while not self.done.is_set():
            src.seek(0)
            end = offset
            for pkt in src.demux(ist):
                if pkt.dts is None or pkt.pts is None:
                    continue
                if not self.flowing.is_set():
                    paused = time.monotonic()
                    while not (self.flowing.wait(0.1) or self.done.is_set()):
                        pass
                    start += time.monotonic() - paused
                if self.done.is_set():
                    return
                end = max(end, offset + pkt.pts + (pkt.duration or 0))
                due = start + (offset + pkt.pts) * tb
                self.done.wait(max(0.0, due - time.monotonic()))  # a camera's pace
                pkt.pts += offset
                pkt.dts += offset
                pkt.stream = ost
                out.mux(pkt)
            offset = end


def _write_config(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(tomli_w.dumps(doc))
    return path


def _pings(msgs: list[dict[str, str]]) -> int:
    return sum(1 for m in msgs if m.get("WATCHDOG") == "1")


@pytest.mark.timeout(120)
@pytest.mark.slow
def test_agent_pings_while_healthy_and_stops_when_the_camera_hangs(
    tmp_path: Path, footage: Path
) -> None:
    name = f"roadside-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)  # abstract namespace, written @name in NOTIFY_SOCKET like systemd
    listener = NotifyListener(sock)
    listener.start()
    fifo = tmp_path / "camera.ts"
    os.mkfifo(fifo)
    camera = TsCamera(fifo, footage / "motorway_overpass.mp4")
    camera.start()
    doc = agent_config(
        tmp_path,
        fifo,
        hardware={
            "watchdog": {"frame_timeout_s": 1.0, "detect_timeout_s": 5.0, "status_interval_s": 1.0}
        },
    )
    doc["source"] = {"kind": "device", "path": str(fifo), "reconnect_max_s": 1.0}
    env = {**os.environ, "NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "400000"}
    proc = subprocess.Popen(
        [ROADSIDE, "-v", "agent", "run", "--config", str(_write_config(tmp_path, doc))],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # READY once the pipeline runs, then pings every half period, STATUS with fps.
        assert listener.wait_for(lambda ms: any(m.get("READY") == "1" for _, m in ms), 90), (
            "no READY=1",
            listener.since(0),
        )
        assert listener.wait_for(lambda ms: _pings([m for _, m in ms]) >= 4, 30)
        first = [m for _, m in listener.messages]
        ready_at = next(i for i, m in enumerate(first) if m.get("READY") == "1")
        assert _pings(first[:ready_at]) == 0  # never alive before ready
        running = [m["STATUS"] for m in first if m.get("STATUS", "").startswith("running")]
        assert running and "fps" in running[-1] and "no uplink" in running[-1]

        # The camera hangs: the pipe stays open, nothing more comes.
        camera.flowing.clear()
        assert listener.wait_for(
            lambda ms: any("stalled" in m.get("STATUS", "") for _, m in ms), 20
        ), listener.since(0)
        stalled_at = next(at for at, m in listener.messages if "stalled" in m.get("STATUS", ""))
        # Several ping periods pass without a ping while the agent is still running.
        appeared = listener.wait_for(
            lambda ms: _pings([m for at, m in ms if at >= stalled_at]), 1.5
        )
        assert not appeared, listener.since(stalled_at)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""

        # Frames come back: so do the pings.
        resumed_at = time.monotonic()
        camera.flowing.set()
        assert listener.wait_for(
            lambda ms: _pings([m for at, m in ms if at >= resumed_at]) >= 2, 30
        ), listener.since(resumed_at)
        assert camera.error is None, camera.error
    finally:
        camera.done.set()
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        listener.stopping.set()
        listener.join(timeout=2)
        sock.close()
        camera.join(timeout=5)


# -- the protocol and the judgement, in process --------------------------------------------
def test_notifier_speaks_to_a_socket_path_and_honours_watchdog_pid(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(5)
    try:
        env = {
            "NOTIFY_SOCKET": str(path),
            "WATCHDOG_USEC": "2000000",
            "WATCHDOG_PID": str(os.getpid()),
        }
        notifier = SystemdNotifier(env)
        assert notifier.enabled and notifier.watchdog_s == 2.0
        assert notifier.send(READY=1, STATUS="running: 15.0 fps")
        assert server.recv(1024).decode().splitlines() == ["READY=1", "STATUS=running: 15.0 fps"]
        notifier.close()
        # WATCHDOG_PID names another process (a wrapper's child): no pings from us.
        other = SystemdNotifier({**env, "WATCHDOG_PID": str(os.getpid() + 1)})
        assert other.enabled and other.watchdog_s is None
        other.close()
    finally:
        server.close()
    off = SystemdNotifier({})
    assert not off.enabled and off.watchdog_s is None and off.send(READY=1) is False


def test_liveness_follows_frames_and_the_detector() -> None:
    stats = PipelineStats()
    judge = PipelineLiveness(
        stats, WatchdogConfig(frame_timeout_s=10, detect_timeout_s=30), keepalive_s=2.0
    )
    v = judge.check(now=100.0)
    assert not v.ready and v.healthy  # starting is not a fault
    assert box_state(v, None) is BoxState.STARTING
    stats.started_mono, stats.frames = 100.0, 1
    stats.last_frame_mono = stats.last_detect_mono = 101.0
    v = judge.check(now=105.0)
    assert v.ready and v.healthy
    assert box_state(v, LinkSummary(True)) is BoxState.ONLINE
    assert box_state(v, LinkSummary(False, 12)) is BoxState.OFFLINE
    v = judge.check(now=111.5)  # 10.5 s without a frame
    assert not v.healthy and "no frame" in v.reason
    assert box_state(v, LinkSummary(True)) is BoxState.FAULT
    stats.last_frame_mono = 133.0  # frames again, but the detector last answered at 101
    v = judge.check(now=133.5)  # 32.5 s > keepalive 2 + 30
    assert not v.healthy and "detector" in v.reason
    stats.last_detect_mono = 133.0
    assert judge.check(now=133.5).healthy
