"""Clips cut from a real segment ring: coverage, keyframes, gaps, empty ranges, the CLI."""

from __future__ import annotations

import json
import shutil
import struct
import threading
import time
from datetime import datetime
from pathlib import Path

import av
import pytest
import tomli_w
from click.testing import CliRunner

from roadside.agent.recording.clipcut import ClipCutter
from roadside.agent.recording.errors import NoFootageError, when
from roadside.agent.recording.index import open_index
from roadside.agent.recording.recorder import Recorder
from roadside.agent.recording.standins import SlowCard, camera_packets, folder_bytes
from roadside.cli import main
from roadside.config.agent import RecordingConfig
from roadside.testing.recordings import indexed
from roadside.testing.waiting import wait_until

FRAME = 1001 / 30000  # the motorway clip runs at 29.97 fps
KEYFRAME_INTERVAL = 3.003  # and has a keyframe every 90 frames


@pytest.fixture(scope="module")
def ring(footage: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 33 s of the motorway clip recorded as picamera2 would hand it over."""
    packets, duration = camera_packets(footage / "motorway_overpass.mp4")
    root = tmp_path_factory.mktemp("ring") / "segments"
    recorder = Recorder(
        RecordingConfig(mode="continuous", segment_s=1.0, keyframe_s=1.0), root, blocking=True
    )
    recorder.start()
    for k in range(3):
        for p in packets:
            recorder.write_packet(
                p.data, p.pts_s + k * duration, p.keyframe, p.dts_s + k * duration
            )
    recorder.stop()
    return root


def top_level_boxes(path: Path) -> list[str]:
    data = path.read_bytes()
    boxes, at = [], 0
    while at + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        if size == 1:
            size = struct.unpack(">Q", data[at + 8 : at + 16])[0]
        boxes.append(kind.decode("latin-1"))
        if size < 8:
            break
        at += size
    return boxes


def decode(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as c:
        return list(c.decode(video=0))


@pytest.mark.parametrize(
    ("offset", "length"),
    [(4.5, 9.0), (6.006, 2.0), pytest.param(1.0, 25.0, marks=pytest.mark.slow)],
)
def test_clip_starts_at_the_keyframe_before_and_covers_the_range(
    ring: Path, tmp_path: Path, offset: float, length: float
) -> None:
    segs = indexed(ring)
    start = segs[0].start + offset
    end = start + length
    result = ClipCutter(ring).cut(start, end, tmp_path / "clip.mp4")

    assert result.path.exists() and result.gaps == []
    assert start - KEYFRAME_INTERVAL - 1e-3 <= result.start <= start + 1e-3
    keyframes = [k for s in segs for k in s.keyframe_times()]
    assert min(keyframes, key=lambda k: abs(k - result.start)) == pytest.approx(
        result.start, abs=1e-3
    )  # it starts on a keyframe
    assert end - FRAME <= result.end <= end + 0.25
    frames = decode(result.path)  # end to end, every picture
    assert frames[0].key_frame
    # this file has B-frames: the anchor frame of the last few may lie past the end
    assert len(frames) == pytest.approx((result.end - result.start) / FRAME, abs=3)
    assert top_level_boxes(result.path).index("moov") < top_level_boxes(result.path).index(
        "mdat"
    )  # faststart
    with av.open(str(result.path)) as c:
        assert c.duration / 1e6 == pytest.approx(result.end - result.start, abs=0.2)


@pytest.mark.slow
def test_missing_footage_inside_the_range_is_listed_as_a_gap(ring: Path, tmp_path: Path) -> None:
    root = tmp_path / "segments"
    shutil.copytree(ring, root)
    segs = indexed(root)
    hole, evicted = segs[2], segs[5]
    (root / hole.path).unlink()  # a file gone behind the index's back
    index = open_index(root)
    index.remove([evicted.path])  # and one evicted properly
    index.close()
    (root / evicted.path).unlink()

    start, end = segs[1].start + 0.5, segs[6].end - 0.5
    result = ClipCutter(root).cut(start, end, tmp_path / "gappy.mp4")
    assert len(result.gaps) == 2
    for (a, b), seg in zip(result.gaps, (hole, evicted), strict=True):
        assert a == pytest.approx(seg.start, abs=0.05) and b == pytest.approx(seg.end, abs=0.05)
    assert result.end == pytest.approx(end, abs=0.25)
    frames = decode(result.path)
    expected = sum(s.packets for s in segs[1:7]) - hole.packets - evicted.packets
    assert len(frames) == pytest.approx(expected, abs=30)

    tail = ClipCutter(root).cut(segs[-1].end - 2.0, segs[-1].end + 30.0, tmp_path / "tail.mp4")
    assert tail.gaps == [(pytest.approx(segs[-1].end, abs=0.05), segs[-1].end + 30.0)]


def test_a_range_with_no_footage_names_what_is_retained(ring: Path, tmp_path: Path) -> None:
    segs = indexed(ring)
    first, last = segs[0].start, segs[-1].end
    with pytest.raises(NoFootageError) as info:
        ClipCutter(ring).cut(first - 100.0, first - 50.0, tmp_path / "none.mp4")
    msg = str(info.value)
    assert when(first) in msg and when(last) in msg and "1 range" in msg
    assert info.value.code == "out_of_range"
    assert not (tmp_path / "none.mp4").exists()
    with pytest.raises(NoFootageError, match="holds no recordings"):
        ClipCutter(tmp_path / "empty").cut(first, last, tmp_path / "none.mp4")


@pytest.mark.slow
def test_low_quality_is_smaller_and_starts_where_asked(ring: Path, tmp_path: Path) -> None:
    segs = indexed(ring)
    start = segs[0].start + 4.0
    end = start + 6.0
    original = ClipCutter(ring).cut(start, end, tmp_path / "orig.mp4")
    low = ClipCutter(ring).cut(start, end, tmp_path / "low.mp4", quality="low")
    assert low.bytes < original.bytes / 2
    assert low.start == pytest.approx(start, abs=0.1) and low.end >= end - 0.15
    frames = decode(low.path)
    assert frames[0].width <= 640 and frames[0].height % 2 == 0
    assert len(frames) == pytest.approx(6.0 * 10, abs=3)  # 10 fps


@pytest.mark.slow
@pytest.mark.parametrize("sync_s", [0.0, 1.0], ids=["card", "slow card"])
def test_a_range_ending_in_the_segment_in_progress_waits_for_it(
    tmp_path: Path, footage: Path, sync_s: float
) -> None:
    """An officer asks for seconds just recorded, the last of them still in the segment being
    written: the cut waits for that segment to close, however long the card takes to flush
    it, and covers the whole range."""
    packets, _ = camera_packets(footage / "motorway_overpass.mp4")
    root = tmp_path / "segments"
    recorder = Recorder(
        RecordingConfig(mode="continuous", segment_s=1.0, keyframe_s=1.0),
        root,
        opener=SlowCard(sync_s),
    )
    recorder.start()
    stop = threading.Event()

    def camera() -> None:  # packets as picamera2's encoder hands them over: as they are taken
        started = time.monotonic()
        for p in packets:
            if stop.wait(max(0.0, started + p.dts_s - packets[0].dts_s - time.monotonic())):
                return
            recorder.write_packet(p.data, p.pts_s, p.keyframe, p.dts_s)

    encoder = threading.Thread(target=camera, daemon=True)
    encoder.start()
    try:
        wait_until(lambda: ClipCutter(root).ranges(), 15, "the first closed segment")
        (first,) = ClipCutter(root).ranges()
        start, end = first.start + 0.5, first.end + 0.3  # 0.3 s into the segment in progress
        wait_until(lambda: time.time() > end + 0.1, 5, "the range to be in the past")
        result = recorder.clips.cut(start, end, tmp_path / "recent.mp4")
    finally:
        stop.set()
        encoder.join(10)
        recorder.stop()
    assert result.gaps == [] and result.segments == 2
    assert result.start <= start + 1e-3 and result.end >= end - FRAME


# -- command line --------------------------------------------------------------------------------
def write_config(tmp_path: Path, root: Path) -> Path:
    doc = {
        "device": "box-07",
        "data_dir": str(tmp_path / "data"),
        "source": {"kind": "file", "path": "unused.mp4"},
        "recording": {"mode": "continuous", "dir": str(root), "budget_bytes": "1GiB"},
    }
    path = tmp_path / "agent.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(doc))
    return path


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def iso(t: float) -> str:
    return datetime.fromtimestamp(t).astimezone().isoformat(timespec="milliseconds")


def test_recordings_command_lists_ranges_bytes_and_modes(ring: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, ring)
    result = run("agent", "recordings", "--config", str(cfg))
    assert result.exit_code == 0, result.output
    assert "retained ranges" in result.output and "continuous" in result.output
    assert when(indexed(ring)[0].start) in result.output
    got = json.loads(run("agent", "recordings", "--config", str(cfg), "--json").output)
    assert got["bytes"] == folder_bytes(ring)
    assert len(got["ranges"]) == 1 and got["per_mode"]["continuous"]["segments"] == len(
        indexed(ring)
    )

    missing = write_config(tmp_path / "other", tmp_path / "nothing-here")
    result = run("agent", "recordings", "--config", str(missing))
    assert result.exit_code == 1 and result.output.startswith("error: no recordings folder")


@pytest.mark.slow
def test_clip_command_cuts_and_reports_errors_in_one_line(ring: Path, tmp_path: Path) -> None:
    cfg = write_config(tmp_path, ring)
    first = indexed(ring)[0].start
    out = tmp_path / "clip.mp4"
    result = run(
        "agent",
        "clip",
        "--config",
        str(cfg),
        "--from",
        iso(first + 5),
        "--to",
        iso(first + 12),
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert out.exists() and str(out) in result.output and "gap" not in result.output
    assert len(decode(out)) > 7 * 29

    result = run(
        "agent",
        "clip",
        "--config",
        str(cfg),
        "--from",
        "10h15",
        "--to",
        iso(first),
        "--out",
        str(out),
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: --from '10h15' is not a time: use ISO 8601 such as 2026-05-12T10:14:00 "
        "(local time; add +02:00 or Z for another zone) or epoch seconds"
    ]

    result = run(
        "agent",
        "clip",
        "--config",
        str(cfg),
        "--from",
        str(first - 60),
        "--to",
        str(first - 30),
        "--out",
        str(tmp_path / "x.mp4"),
    )
    assert result.exit_code == 1  # asked rightly; nothing is held there
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no footage between")
    assert "this box holds" in lines[0]
