"""Frame sources: files played once or looped, and a network stream that drops."""

from __future__ import annotations

import itertools
import shutil
import threading
import time
from pathlib import Path

import cv2
import pytest

from roadside.agent.sources.file import FileSource
from roadside.agent.sources.stream import StreamSource
from roadside.errors import SourceError


def test_file_once_ends_and_times_follow_the_clip(footage: Path) -> None:
    src = FileSource(str(footage / "traffic_frames.mp4"), pace="fast")
    src.open()
    frames = []
    while (f := src.read()) is not None:
        frames.append(f)
    src.close()
    assert len(frames) == 20
    gaps = {round(b.time - a.time, 4) for a, b in itertools.pairwise(frames)}
    assert gaps == {round(1 / src.fps, 4)}
    assert [f.index for f in frames] == list(range(20))


def test_file_loop_keeps_time_moving(footage: Path) -> None:
    src = FileSource(str(footage / "traffic_frames.mp4"), loop=True, pace="fast")
    src.open()
    frames = [src.read() for _ in range(50)]
    src.close()
    assert all(f is not None for f in frames)
    times = [f.time for f in frames]
    assert times == sorted(times) and len(set(times)) == 50


def test_native_pace_plays_in_real_time(footage: Path) -> None:
    src = FileSource(str(footage / "traffic_frames.mp4"), pace="native")
    src.open()
    start = time.monotonic()
    for _ in range(15):
        src.read()
    elapsed = time.monotonic() - start
    src.close()
    assert 14 / 30 - 0.05 <= elapsed <= 1.5


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="video file not found"):
        FileSource(str(tmp_path / "none.mp4")).open()
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00" * 1000)
    with pytest.raises(SourceError, match="cannot open"):
        FileSource(str(junk)).open()


@pytest.mark.slow
def test_stream_reconnects_after_the_camera_drops(tmp_path: Path, footage: Path) -> None:
    """The camera's stream ends and the camera is gone for a while; read() waits it out."""
    cam = tmp_path / "cam.mp4"
    shutil.copy(footage / "traffic_frames.mp4", cam)
    src = StreamSource(str(cam), cv2.CAP_FFMPEG, reconnect_max_s=0.5)
    src.open()
    for _ in range(20):  # the whole stream
        assert src.read() is not None
    cam.rename(tmp_path / "away.mp4")
    result: list = []
    reader = threading.Thread(target=lambda: result.append(src.read()), daemon=True)
    reader.start()
    reader.join(1.5)
    assert reader.is_alive() and not result  # still trying, not giving up
    (tmp_path / "away.mp4").rename(cam)
    reader.join(20)
    assert result and result[0] is not None and result[0].image.shape == (540, 960, 3)
    assert src.reconnects >= 1
    src.close()


def test_stream_close_interrupts_a_reconnect_wait(tmp_path: Path) -> None:
    src = StreamSource("http://127.0.0.1:9/none.mp4", cv2.CAP_FFMPEG, reconnect_max_s=30)
    with pytest.raises(SourceError):
        src.open()
    result: list = []
    reader = threading.Thread(target=lambda: result.append(src.read()), daemon=True)
    reader.start()
    time.sleep(0.3)
    src.close()
    reader.join(10)
    assert not reader.is_alive() and result == [None]
