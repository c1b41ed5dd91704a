"""The recorder and its segment ring, with real footage, real files and a real index.

Camera packets are the H.264 of the motorway clip, demuxed with PyAV and fed to
``write_packet`` as picamera2 would; encoded recordings come from real frames through
libx264. No mocks: the disk-full and stalled-disk cases use the openers in
``recording.standins`` that act where a real card would fail.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from roadside.agent.clock import ClockWatch
from roadside.agent.frames import Frame
from roadside.agent.recording.clipcut import ClipCutter
from roadside.agent.recording.index import INDEX_FILE, SegmentRecord, open_index
from roadside.agent.recording.recorder import Recorder
from roadside.agent.recording.segments import SegmentName
from roadside.agent.recording.standins import (
    CameraPacket,
    SmallDisk,
    StalledDisk,
    camera_packets,
    folder_bytes,
)
from roadside.agent.sources.file import FileSource
from roadside.config.agent import RecordingConfig
from roadside.ids import new_id
from roadside.testing.recordings import decoded_frames, indexed
from roadside.wire.messages import EventMsg

WRONG = 978307200.0  # 2001-01-01: a Pi that booted without network
RIGHT = 1778580000.0  # 2026-05-12 10:00 UTC
MONO0 = 5000.0


@pytest.fixture(scope="module")
def motorway(footage: Path) -> tuple[list[CameraPacket], float]:
    return camera_packets(footage / "motorway_overpass.mp4")


@pytest.fixture(scope="module")
def small_images(footage: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(footage / "motorway_overpass.mp4"))
    images = []
    while len(images) < 45:
        ok, image = cap.read()
        if not ok:
            break
        images.append(cv2.resize(image, (320, 180), interpolation=cv2.INTER_AREA))
    cap.release()
    return images


def config(**values: object) -> RecordingConfig:
    values.setdefault("mode", "continuous")
    values.setdefault("keyframe_s", 1.0)
    return RecordingConfig(**values)


def feed(recorder: Recorder, packets: list[CameraPacket], duration: float, loops: int) -> None:
    for k in range(loops):
        shift = k * duration
        for p in packets:
            recorder.write_packet(p.data, p.pts_s + shift, p.keyframe, p.dts_s + shift)


def frames(
    images: list[np.ndarray], n: int, fps: float = 15.0, offset=lambda i: RIGHT, start: int = 0
) -> Iterator[Frame]:
    for i in range(start, start + n):
        mono = MONO0 + i / fps
        yield Frame(images[i % len(images)], mono + offset(i), mono, i)


def event(eid: str, k: str, t0: float, t1: float) -> EventMsg:
    return EventMsg(
        id=eid,
        phase=k,
        label="car",
        score=0.9,
        first_seen=t0,
        last_seen=t1,
        box=(0.1, 0.1, 0.2, 0.2),
        track=1,
    )


# -- pass-through ------------------------------------------------------------------------------
@pytest.mark.slow
def test_camera_packets_become_decodable_contiguous_segments(tmp_path: Path, motorway) -> None:
    packets, duration = motorway
    root = tmp_path / "rec"
    recorder = Recorder(config(segment_s=1.0), root, blocking=True)
    recorder.start()
    feed(recorder, packets, duration, loops=2)
    recorder.stop()

    assert recorder.stats.dropped == 0 and recorder.stats.errors == 0
    segs = indexed(root)
    assert len(segs) >= 6  # keyframes every 3 s in this file: one segment per keyframe
    assert sum(decoded_frames(root / s.path) for s in segs) == 2 * len(packets)
    assert sum(s.packets for s in segs) == 2 * len(packets)
    for a, b in itertools.pairwise(segs):
        assert b.start - a.end == pytest.approx(0.0, abs=1e-3)  # no hole between segments
    for s in segs:
        assert s.keyframes[0] == 0.0 and s.mode == "cont"
        assert s.bytes == (root / s.path).stat().st_size
        assert SegmentName.parse(Path(s.path).name).start == pytest.approx(s.start, abs=1e-3)
    total = segs[-1].end - segs[0].start
    assert total == pytest.approx(2 * duration, abs=0.05)
    assert not list(root.glob("*/*.part"))


def test_index_is_rebuilt_from_the_files_when_missing_or_damaged(tmp_path: Path, motorway) -> None:
    packets, duration = motorway
    root = tmp_path / "rec"
    recorder = Recorder(config(segment_s=1.0), root, blocking=True)
    recorder.start()
    feed(recorder, packets, duration, loops=1)
    recorder.stop()
    before = indexed(root)

    def same(after: list[SegmentRecord]) -> None:
        assert [r.path for r in after] == [r.path for r in before]
        for a, b in zip(after, before, strict=True):
            assert a.start == pytest.approx(b.start, abs=1e-3)
            assert a.end == pytest.approx(b.end, abs=0.05)
            assert a.keyframes == pytest.approx(b.keyframes, abs=1e-3)
            assert (a.packets, a.bytes, a.clock, a.mode) == (b.packets, b.bytes, b.clock, b.mode)

    for extra in ("", "-wal", "-shm"):
        (root / (INDEX_FILE + extra)).unlink(missing_ok=True)
    same(indexed(root))

    (root / INDEX_FILE).write_bytes(b"this is not a database" * 100)
    same(indexed(root))
    assert len(list(root.glob(INDEX_FILE + ".damaged-*"))) == 1
    db = sqlite3.connect(root / INDEX_FILE)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.close()


# -- retention ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_long_fast_run_of_camera_packets_never_exceeds_the_budget(tmp_path: Path, motorway) -> None:
    packets, duration = motorway
    root = tmp_path / "rec"
    budget = 2 * 1024 * 1024
    disk = SmallDisk(root, capacity=10**12)  # a roomy disk that measures what is on it
    recorder = Recorder(
        config(segment_s=1.0, budget_bytes=budget), root, blocking=True, opener=disk
    )
    recorder.start()
    fed_at = time.time()  # labels count from the first packet's arrival
    feed(recorder, packets, duration, loops=10)  # ~112 s of video, ~10x the budget
    recorder.stop()

    rs = recorder.ring.stats
    assert rs.bytes_written > 5 * budget and rs.evicted > 0
    assert disk.peak <= budget  # measured on disk at every write, segment in progress included
    assert folder_bytes(root) <= budget
    segs = indexed(root)
    assert sum(s.bytes for s in segs) == folder_bytes(root)
    # what is kept is the newest footage, up to the end of the run
    assert segs[-1].end - segs[0].start < 10 * duration / 3
    assert segs[-1].end == pytest.approx(fed_at + 10 * duration, abs=0.5)


@pytest.mark.slow
def test_long_fast_run_from_a_file_source_with_encoding_stays_in_budget(
    tmp_path: Path, footage: Path
) -> None:
    root = tmp_path / "rec"
    budget = 1024 * 1024
    disk = SmallDisk(root, capacity=10**12)
    cfg = config(
        segment_s=1.0,
        keyframe_s=0.5,
        budget_bytes=budget,
        encoder={"width": 320, "bitrate": 400_000, "fps": None, "preset": "ultrafast"},
    )
    recorder = Recorder(cfg, root, blocking=True, opener=disk)
    source = FileSource(str(footage / "motorway_overpass.mp4"), loop=True, pace="fast")
    source.open()
    recorder.start()
    for _ in range(3 * 335):  # three times through the file, as fast as it decodes
        frame = source.read()
        assert frame is not None
        recorder.submit(frame)
    source.close()
    recorder.stop()

    assert recorder.stats.dropped == 0 and recorder.stats.errors == 0
    assert recorder.ring.stats.evicted > 0
    assert disk.peak <= budget and folder_bytes(root) <= budget
    segs = indexed(root)
    assert {(s.width, s.height) for s in segs} == {(320, 180)}
    for s in segs:
        assert decoded_frames(root / s.path) == s.packets
        assert all(
            b - a == pytest.approx(0.5, abs=0.05) for a, b in itertools.pairwise(s.keyframes)
        )


def test_a_full_disk_evicts_and_recording_goes_on(tmp_path: Path, motorway, caplog) -> None:
    packets, duration = motorway
    root = tmp_path / "rec"
    capacity = 1_500_000  # the card is smaller than the budget says
    disk = SmallDisk(root, capacity)
    recorder = Recorder(
        config(segment_s=1.0, budget_bytes="64MiB"), root, blocking=True, opener=disk
    )
    recorder.start()
    with caplog.at_level(logging.WARNING, logger="roadside.agent.recording"):
        fed_at = time.time()
        feed(recorder, packets, duration, loops=5)
        recorder.stop()

    rs = recorder.ring.stats
    assert disk.full_events >= 1 and rs.disk_full >= 1
    assert any(
        "disk full while recording" in r.getMessage() and "recording goes on" in r.getMessage()
        for r in caplog.records
    )
    assert recorder.stats.errors == 0 and rs.evicted > 0
    assert folder_bytes(root) <= capacity
    # the newest footage made it to disk after the disk filled up
    segs = indexed(root)
    assert segs[-1].end == pytest.approx(fed_at + 5 * duration, abs=0.5)
    assert rs.segments > len(segs)
    index = open_index(root, writer=True)
    try:
        assert index.reconcile() == (0, 0)  # index and files agree
    finally:
        index.close()


def test_free_space_for_the_outbox_is_kept_before_the_disk_fills(tmp_path: Path, motorway) -> None:
    packets, duration = motorway
    root = tmp_path / "rec"
    disk = SmallDisk(root, capacity=4_000_000)
    keep_free = 1024 * 1024  # more than one segment of this footage (~0.5 MB)
    cfg = config(segment_s=1.0, budget_bytes="64MiB", keep_free_bytes=keep_free)
    recorder = Recorder(cfg, root, blocking=True, opener=disk, free_space=disk.free)
    recorder.start()
    feed(recorder, packets, duration, loops=4)
    recorder.stop()

    rs = recorder.ring.stats
    assert rs.low_space > 0 and rs.evicted > 0
    assert disk.full_events == 0 and rs.disk_full == 0  # the card never filled up
    assert disk.free(root) >= keep_free
    assert disk.peak <= disk.capacity - keep_free + 700_000  # at most one segment in progress


# -- capture is never slowed -------------------------------------------------------------------
def test_a_stalled_disk_never_slows_capture_and_drops_are_counted(
    tmp_path: Path, small_images
) -> None:
    root = tmp_path / "rec"
    disk = StalledDisk()
    recorder = Recorder(config(queue_max_bytes="1MiB", keyframe_s=1.0), root, opener=disk)
    recorder.start()
    source = frames(small_images, 200)
    recorder.submit(next(source))
    assert disk.waiting.wait(10), "the recorder never reached the disk"
    slowest = 0.0
    for frame in source:
        t = time.perf_counter()
        recorder.submit(frame)
        slowest = max(slowest, time.perf_counter() - t)
    assert slowest < 0.02
    dropped = recorder.stats.dropped
    assert dropped > 150  # the queue holds about six of these frames
    assert recorder.stats.dropped_bytes == dropped * small_images[0].nbytes
    disk.release()
    recorder.stop()
    segs = indexed(root)
    assert segs and sum(s.packets for s in segs) + dropped + recorder.encoder.skipped == 200


# -- clock -------------------------------------------------------------------------------------
@pytest.mark.slow
def test_clock_sync_step_splits_segments_and_relabels_earlier_footage(
    tmp_path: Path, small_images
) -> None:
    root = tmp_path / "rec"
    state = {"synced": False, "mono": 0.0}
    clock = ClockWatch(probe=lambda: state["synced"], every_s=0, monotonic=lambda: state["mono"])
    recorder = Recorder(
        config(segment_s=4.0, keyframe_s=1.0, encoder={"fps": None}), root, clock=clock
    )
    recorder.start()
    jump_at = 150  # frame 150 = 10 s: NTP syncs and the clock steps from 2001 to 2026
    for frame in frames(
        small_images, 300, offset=lambda i: (RIGHT if i >= jump_at else WRONG) - MONO0
    ):
        state["mono"] = frame.mono  # the camera's clock is the box's monotonic clock
        if frame.index == jump_at:
            state["synced"] = True
        recorder.submit(frame)
    recorder.stop()

    assert recorder.stats.clock_steps == 1
    segs = indexed(root)
    assert "nosync" not in {s.clock for s in segs}
    for s in segs:
        # every label is right: the monotonic time plus the offset of the synchronised clock
        assert s.start == pytest.approx(s.mono_start + RIGHT - MONO0, abs=1e-3)
        if s.mono_start < MONO0 + 10.0:
            assert s.clock == "retimed"  # recorded before the sync, relabelled after it
        # after it: "sync", or "retimed" for pictures handled before the sync was seen
        name = SegmentName.parse(Path(s.path).name)
        assert name.clock == s.clock and name.start == pytest.approx(s.start, abs=1e-3)
    assert any(s.mono_start == pytest.approx(MONO0 + 10.0, abs=1e-3) for s in segs)  # split
    ranges = open_index(root).ranges()
    assert len(ranges) == 1 and ranges[0].start == pytest.approx(RIGHT, abs=1e-3)
    assert ranges[0].duration == pytest.approx(20.0, abs=0.1)

    (root / INDEX_FILE).unlink()  # labels survive in the file names
    assert [(r.start, r.clock) for r in indexed(root)] == [
        (pytest.approx(s.start, abs=1e-3), s.clock) for s in segs
    ]
    clip = ClipCutter(root).cut(RIGHT + 8.0, RIGHT + 12.0, tmp_path / "across.mp4")
    assert clip.gaps == [] and clip.start <= RIGHT + 8.0 and clip.end >= RIGHT + 12.0
    assert decoded_frames(clip.path) >= 4 * 15


@pytest.mark.slow
def test_a_clock_stepped_back_while_synced_never_corrupts_the_index(
    tmp_path: Path, small_images
) -> None:
    root = tmp_path / "rec"
    clock = ClockWatch(probe=lambda: True, every_s=0)
    recorder = Recorder(
        config(segment_s=4.0, keyframe_s=1.0, encoder={"fps": None}), root, clock=clock
    )
    recorder.start()
    for frame in frames(
        small_images, 300, offset=lambda i: RIGHT - MONO0 - (30.0 if i >= 150 else 0.0)
    ):
        recorder.submit(frame)
    recorder.stop()

    assert recorder.stats.clock_steps == 1
    segs = indexed(root)
    assert {s.clock for s in segs} == {"sync"}
    before = [s for s in segs if s.mono_start < MONO0 + 10.0]
    after = [s for s in segs if s.mono_start >= MONO0 + 10.0]
    assert before[-1].end == pytest.approx(RIGHT + 10.0, abs=0.1)
    assert after[0].start == pytest.approx(RIGHT - 20.0, abs=1e-3)  # labels are not rewritten
    index = open_index(root, writer=True)
    assert index.reconcile() == (0, 0)
    index.close()
    clip = ClipCutter(root).cut(RIGHT - 20.0, RIGHT + 10.0, tmp_path / "overlap.mp4")
    with av.open(str(clip.path)) as c:
        times = [f.time for f in c.decode(video=0)]
    assert times == sorted(times) and len(times) > 15


# -- events ------------------------------------------------------------------------------------
def run_with_events(
    recorder: Recorder, images: list[np.ndarray], seconds: float, events: list[tuple[float, float]]
) -> None:
    """Frames at 15 fps; each event is announced 1 s after it starts (confirmation) and
    ended 0.5 s after it was last seen, like the pipeline does."""
    ids = [new_id() for _ in events]
    for frame in frames(images, round(seconds * 15), offset=lambda i: RIGHT - MONO0):
        recorder.submit(frame)
        t = frame.time - RIGHT
        for eid, (t0, t1) in zip(ids, events, strict=True):
            if abs(t - (t0 + 1.0)) < 1 / 30:
                recorder.publish("event", event(eid, "s", RIGHT + t0, RIGHT + t0 + 1.0))
            if abs(t - (t1 + 0.5)) < 1 / 30:
                recorder.publish("event", event(eid, "e", RIGHT + t0, RIGHT + t1))


@pytest.mark.slow
def test_events_mode_writes_pre_roll_to_post_roll_and_nothing_else(
    tmp_path: Path, small_images
) -> None:
    root = tmp_path / "rec"
    cfg = config(
        mode="events",
        segment_s=4.0,
        keyframe_s=1.0,
        pre_roll_s=3.0,
        post_roll_s=4.0,
        encoder={"fps": None},
    )
    recorder = Recorder(cfg, root, clock=ClockWatch(probe=lambda: True), blocking=True)
    recorder.start()
    run_with_events(recorder, small_images, 60.0, [(10.0, 14.0), (40.0, 41.0)])
    recorder.stop()

    segs = indexed(root)
    assert {(s.mode, s.has_event) for s in segs} == {("event", True)}
    ranges = open_index(root).ranges()
    assert len(ranges) == 2
    first, second = ranges
    assert RIGHT + 6.0 - 1e-3 <= first.start <= RIGHT + 7.0 + 1e-3  # keyframe at/before t0-3
    assert first.end == pytest.approx(RIGHT + 18.0, abs=0.15)  # last end + post-roll
    assert RIGHT + 36.0 - 1e-3 <= second.start <= RIGHT + 37.0 + 1e-3
    assert second.end == pytest.approx(RIGHT + 45.0, abs=0.15)
    assert sum(r.duration for r in ranges) < 25.0  # of 60 s
    for s in segs:
        assert decoded_frames(root / s.path) == s.packets


@pytest.mark.slow
def test_continuous_mode_marks_footage_that_overlaps_events(tmp_path: Path, small_images) -> None:
    root = tmp_path / "rec"
    cfg = config(segment_s=3.0, keyframe_s=1.0, encoder={"fps": None})
    recorder = Recorder(cfg, root, clock=ClockWatch(probe=lambda: True), blocking=True)
    recorder.start()
    run_with_events(recorder, small_images, 24.0, [(7.5, 13.2)])
    recorder.stop()

    segs = indexed(root)
    marked = [s for s in segs if s.has_event]
    assert marked and len(marked) < len(segs)
    for s in segs:
        overlaps = s.start <= RIGHT + 13.2 and s.end > RIGHT + 7.5
        assert s.has_event == overlaps, s.path
        assert SegmentName.parse(Path(s.path).name).event == s.has_event
        assert (root / s.path).exists()
