"""The recorder inside the running agent: events from the real pipeline, and the Pi camera's
own H.264 through the picamera2 adapter (its stand-in, ROADSIDE_PICAMERA2=standin)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import av
import pytest
import tomli_w

from roadside.agent.recording.index import open_index
from roadside.testing.configs import agent_config
from roadside.testing.recordings import indexed

pytestmark = pytest.mark.slow  # every test here runs the real agent or a benchmark

CLI = [sys.executable, "-c", "from roadside.cli import main; main()"]


def run_agent(tmp_path: Path, doc: dict, *args: str, env: dict | None = None) -> None:
    cfg = tmp_path / "agent.toml"
    cfg.write_text(tomli_w.dumps(doc))
    proc = subprocess.run(
        [*CLI, "agent", "run", "--config", str(cfg), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_events_mode_in_the_agent_records_around_the_pipelines_events(
    tmp_path: Path, footage: Path
) -> None:
    doc = agent_config(
        tmp_path,
        footage / "motorway_overpass.mp4",
        events={"sinks": ["jsonl"], "jsonl_path": str(tmp_path / "events.jsonl")},
        recording={
            "mode": "events",
            "segment_s": 2.0,
            "keyframe_s": 0.5,
            "pre_roll_s": 1.0,
            "post_roll_s": 1.0,
            "encoder": {"width": 480, "preset": "ultrafast"},
        },
    )
    run_agent(tmp_path, doc, "--duration", "4")  # the file played fast: a few seconds of it

    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    ends = [e for e in events if e.get("type") == "event" and e["k"] == "e"]
    assert ends, "the footage has traffic: the pipeline must report events"
    root = Path(doc["data_dir"]) / "segments"
    segs = indexed(root)
    assert segs and {(s.mode, s.has_event) for s in segs} == {("event", True)}
    ranges = open_index(root).ranges()
    for e in ends:  # every event's sighting is on disk
        assert any(r.start <= e["t0"] + 0.5 and r.end >= e["t1"] - 0.5 for r in ranges), e
    for s in segs:
        with av.open(str(root / s.path)) as c:
            assert sum(1 for _ in c.decode(video=0)) == s.packets


def test_pi_camera_h264_is_written_as_is(tmp_path: Path, footage: Path) -> None:
    doc = agent_config(
        tmp_path,
        footage / "motorway_overpass.mp4",
        recording={"mode": "continuous", "segment_s": 1.0, "keyframe_s": 1.0},
    )
    doc["source"] = {
        "kind": "picamera2",
        "width": 640,
        "height": 360,
        "fps": 15.0,
        "camera": {"keyframe_s": 0.5, "bitrate": 1_000_000},
    }
    run_agent(
        tmp_path,
        doc,
        "--duration",
        "3",
        env={
            "ROADSIDE_PICAMERA2": "standin",
            "ROADSIDE_STANDIN_SCENE": str(footage / "motorway_overpass.mp4"),
        },
    )

    root = Path(doc["data_dir"]) / "segments"
    segs = indexed(root)
    assert len(segs) >= 2
    assert {(s.width, s.height) for s in segs} == {(640, 360)}  # the camera's stream, as is
    for s in segs:
        assert all(abs(b - a - 0.5) < 0.08 for a, b in itertools.pairwise(s.keyframes))
        with av.open(str(root / s.path)) as c:
            assert sum(1 for _ in c.decode(video=0)) == s.packets
    total = sum(s.duration for s in segs)
    assert 1.5 < total < 4.0
