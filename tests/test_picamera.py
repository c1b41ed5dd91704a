"""The Pi camera source against the picamera2 stand-in, which plays the real footage.

The stand-in mirrors picamera2's API (and its refusals); its H.264 encoder is libx264 through
PyAV, as picamera2's own encoder on a Pi 5. What the adapter forwards to the recorder is
checked byte for byte against what the encoder produced: no re-encoding on the way.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import tomli_w

from roadside.agent.sources import open_source
from roadside.agent.sources import picamera_standin as standin
from roadside.agent.sources.picamera import Picamera2Source, load_api, lores_size
from roadside.config.agent import PicameraConfig, SourceConfig
from roadside.errors import SourceError
from roadside.testing.configs import agent_config

ROADSIDE = str(Path(sys.executable).with_name("roadside"))


class PacketLog:
    """The recorder's side of the contract: ``write_packet(data, pts_s, keyframe)``."""

    def __init__(self) -> None:
        self.packets: list[tuple[bytes, float, bool]] = []

    def write_packet(self, data: bytes, pts_s: float, keyframe: bool) -> None:
        self.packets.append((data, pts_s, keyframe))


@pytest.fixture
def scene(footage: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = footage / "motorway_overpass.mp4"
    monkeypatch.setattr(standin.Picamera2, "scene", str(path))
    return path


def make_source(**camera: object) -> Picamera2Source:
    cfg = SourceConfig(
        kind="picamera2",
        width=640,
        height=360,
        fps=30,
        lores_width=300,
        camera=PicameraConfig(**camera),
    )
    return Picamera2Source(
        (cfg.width, cfg.height), cfg.fps, cfg.lores_width, cfg.camera, api=load_api("standin")
    )


def footage_frames(path: Path, size: tuple[int, int], n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    for _ in range(n):
        ok, image = cap.read()
        assert ok
        frames.append(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
    cap.release()
    return frames


def nal_types(data: bytes) -> set[int]:
    """NAL unit types in an Annex B byte stream."""
    types, i = set(), data.find(b"\x00\x00\x01")
    while i != -1 and i + 3 < len(data):
        types.add(data[i + 3] & 0x1F)
        i = data.find(b"\x00\x00\x01", i + 3)
    return types


@pytest.mark.slow
def test_frames_are_the_scene_in_bgr_with_a_matching_lores(scene: Path) -> None:
    src = make_source(sensor_mode=1)
    src.open()
    try:
        cam = src._cam
        config = cam.camera_configuration()
        assert config["main"] == {"format": "RGB888", "size": (640, 360)}
        assert config["lores"] == {"format": "YUV420", "size": (300, 168)}
        assert config["sensor"] == {"output_size": (2304, 1296), "bit_depth": 10}
        assert config["controls"]["FrameDurationLimits"] == (33333, 33333)
        frames = [src.read() for _ in range(5)]
    finally:
        src.close()
    assert cam.closed and not cam.started
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert all(b.mono > a.mono for a, b in itertools.pairwise(frames))
    truth = footage_frames(scene, (640, 360), 30)
    for frame in frames:
        assert frame.image.shape == (360, 640, 3) and frame.lores.shape == (168, 300, 3)
        error = min(np.abs(frame.image.astype(int) - t).mean() for t in truth)
        swapped = min(np.abs(frame.image[:, :, ::-1].astype(int) - t).mean() for t in truth)
        assert error < 1.0 < swapped  # the footage itself, in OpenCV's channel order
        small = cv2.resize(frame.image, (300, 168), interpolation=cv2.INTER_AREA)
        assert np.abs(frame.lores.astype(int) - small).mean() < 6  # same picture, YUV420'd
        assert frame.detect_image is frame.lores


@pytest.mark.slow
def test_encoded_packets_reach_the_recorder_unchanged(scene: Path) -> None:
    src = make_source(keyframe_s=0.5, bitrate=1_000_000)
    log = PacketLog()
    src.attach_recorder(log)
    src.open()
    try:
        for _ in range(45):
            src.read()
        encoder = src._encoder
    finally:
        src.close()
    assert not encoder.running
    packets = log.packets
    assert len(packets) == encoder.packets == src.output.packets >= 45
    forwarded = b"".join(data for data, _, _ in packets)
    assert hashlib.sha256(forwarded).digest() == encoder.digest.digest()  # byte for byte
    times = [pts for _, pts, _ in packets]
    assert times[0] == 0.0 and all(b > a for a, b in itertools.pairwise(times))
    assert 0.02 < np.median(np.diff(times)) < 0.05  # 30 fps on the sensor's clock
    keys = [i for i, (_, _, key) in enumerate(packets) if key]
    assert keys[0] == 0 and set(np.diff(keys)) == {15}  # keyframe_s 0.5 at 30 fps
    for i in keys:  # every keyframe carries SPS and PPS: a segment can start at any of them
        assert {5, 7, 8} <= nal_types(packets[i][0])
    decoder = av.CodecContext.create("h264", "r")
    decoded = [f for data, _, _ in packets for p in decoder.parse(data) for f in decoder.decode(p)]
    assert len(decoded) >= len(packets) - 2
    assert (decoded[0].width, decoded[0].height) == (640, 360)


def test_night_and_manual_exposure_controls(scene: Path) -> None:
    src = make_source(
        exposure_time_us=8000,
        analogue_gain=2.0,
        ae_enable=False,
        night_max_exposure_us=250_000,
        controls={"NoiseReductionMode": 2},
    )
    src.open()
    try:
        cam = src._cam
        assert {
            k: cam.controls[k]
            for k in ("AeEnable", "ExposureTime", "AnalogueGain", "NoiseReductionMode")
        } == {"AeEnable": False, "ExposureTime": 8000, "AnalogueGain": 2.0, "NoiseReductionMode": 2}
        src.set_night(True)
        assert cam.controls["FrameDurationLimits"] == (33333, 250_000)
        assert cam.controls["AeExposureMode"] == 2  # long exposures first
        src.set_night(False)
        assert cam.controls["FrameDurationLimits"] == (33333, 33333)
        src.read()
    finally:
        src.close()


def test_mistakes_are_one_clear_line(scene: Path) -> None:
    with pytest.raises(SourceError, match=r"sensor_mode = 7: this camera has 3 modes \(0..2\)"):
        make_source(sensor_mode=7).open()
    with pytest.raises(SourceError, match="Control Bogus is not advertised"):
        make_source(controls={"Bogus": 1}).open()
    bad = make_source()
    bad.camera = PicameraConfig(camera_num=3)
    with pytest.raises(SourceError, match="cannot open the Pi camera 3"):
        bad.open()
    with pytest.raises(SourceError, match="ROADSIDE_PICAMERA2='webcam'"):
        load_api("webcam")
    assert lores_size(1280, 720, 320) == (320, 180) and lores_size(640, 480, 999) == (640, 480)


def test_without_picamera2_the_error_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROADSIDE_PICAMERA2", raising=False)
    if importlib.util.find_spec("picamera2") is not None:
        assert load_api().name == "picamera2"  # on a Pi: the real thing
        return
    with pytest.raises(SourceError, match="apt install python3-picamera2"):
        open_source(SourceConfig(kind="picamera2"))


@pytest.mark.slow
def test_agent_runs_on_the_pi_camera_path(tmp_path: Path, footage: Path) -> None:
    """``roadside agent run`` with source.kind = picamera2 (the stand-in selected the way
    gpiozero's mock pins are, by environment): real detection on lores frames."""
    doc = agent_config(tmp_path, footage / "motorway_overpass.mp4", events={"sinks": ["console"]})
    doc["source"] = {
        "kind": "picamera2",
        "width": 960,
        "height": 540,
        "fps": 30,
        "lores_width": 480,
        "camera": {"sensor_mode": 1},
    }
    path = tmp_path / "agent.toml"
    path.write_text(tomli_w.dumps(doc))
    env = {
        **os.environ,
        "ROADSIDE_PICAMERA2": "standin",
        "ROADSIDE_STANDIN_SCENE": str(footage / "motorway_overpass.mp4"),
    }
    proc = subprocess.run(
        [ROADSIDE, "agent", "run", "--config", str(path), "--duration", "6"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(ln) for ln in proc.stdout.splitlines()]
    cars = [m for m in lines if m["type"] == "event" and m["c"] in ("car", "truck", "bus")]
    assert cars, proc.stdout + proc.stderr
    stopped = re.search(r"stopped: (\d+) frames, (\d+) dropped", proc.stderr)
    assert stopped, proc.stderr
    # the camera's frames: detected, or dropped while a busy machine's detector was behind
    frames = int(stopped[1]) + int(stopped[2])
    assert 90 <= frames <= 190  # a 30 fps camera for six seconds


def test_jetson_example_uses_a_gstreamer_csi_pipeline_and_no_pins() -> None:
    from roadside.agent.hardware import checks as box_checks
    from roadside.agent.sources.stream import StreamSource
    from roadside.config.agent import load_config

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(root / "examples" / "jetson.toml")
    pipeline = cfg.source.pipeline or ""
    assert cfg.source.kind == "device" and pipeline.startswith("nvarguscamerasrc")
    assert "appsink" in pipeline and "format=BGR" in pipeline
    source = StreamSource.from_config(cfg.source)
    assert source.api == cv2.CAP_GSTREAMER and source.target == pipeline
    assert cfg.hardware.pins() == {}
    assert box_checks.gpio(cfg.hardware) == "no pins configured"


def test_night_from_the_ir_schedule_reaches_the_camera(
    tmp_path: Path, footage: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent assembled from config: the IR light's day/night decision (here by the clock,
    no relay pin) switches the Pi camera to its night controls."""
    import datetime as dt
    import threading

    from roadside.agent.assembly import assemble
    from roadside.config.agent import parse_config

    monkeypatch.setenv("ROADSIDE_PICAMERA2", "standin")
    monkeypatch.setenv("ROADSIDE_STANDIN_SCENE", str(footage / "traffic_frames.mp4"))
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    now = dt.datetime.now()
    doc = agent_config(
        tmp_path,
        footage / "traffic_frames.mp4",
        hardware={
            "ir_light": {
                "mode": "schedule",
                "on_at": (now - dt.timedelta(hours=1)).strftime("%H:%M"),
                "off_at": (now + dt.timedelta(hours=1)).strftime("%H:%M"),
            }
        },
    )
    doc["source"] = {
        "kind": "picamera2",
        "width": 640,
        "height": 360,
        "fps": 30,
        "camera": {"night_max_exposure_us": 200_000},
    }
    agent = assemble(parse_config(doc))
    runner = threading.Thread(target=agent.run, daemon=True)
    runner.start()
    try:
        cam = agent.source._cam
        done = threading.Event()
        for _ in range(100):
            if cam.controls.get("FrameDurationLimits") == (33333, 200_000):
                break
            done.wait(0.05)
        assert cam.controls["FrameDurationLimits"] == (33333, 200_000), cam.control_history
        assert agent.source.night and agent.hardware.ir is not None
    finally:
        agent.pipeline.stop()
        runner.join(timeout=30)
    assert not runner.is_alive() and cam.closed
