"""Stand-ins for the recorder's seams, beside the real things (as gpiozero ships mock pins).

* ``camera_packets(video)``: the H.264 of a video file as picamera2's encoder hands it over
  (Annex B access units, SPS/PPS before keyframes, timestamps in seconds), to feed
  ``Recorder.write_packet`` without a Pi.
* ``SmallDisk``: a segment-file opener on a disk of ``capacity`` bytes: a write that would
  not fit raises ENOSPC exactly where a full SD card would.
* ``StalledDisk``: an opener whose writes wait until released, like a card stuck in garbage
  collection.
* ``SlowCard``: an opener whose files take a while to flush when a segment closes, like a
  busy card (or a busy machine).
"""

from __future__ import annotations

import errno
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import av
from av.bitstream import BitStreamFilterContext

from roadside.agent.recording.segments import SegmentFile


@dataclass(frozen=True)
class CameraPacket:
    """One access unit with the arguments of ``Recorder.write_packet``."""

    data: bytes
    pts_s: float
    dts_s: float
    keyframe: bool


def camera_packets(video: Path) -> tuple[list[CameraPacket], float]:
    """The H.264 packets of ``video`` in Annex B form, and the video's duration (s)."""
    with av.open(str(video)) as c:
        v = c.streams.video[0]
        if v.codec_context.name != "h264":
            raise ValueError(f"{video} is not H.264")
        tb = v.time_base
        assert tb is not None, f"{video}: the video stream has no time base"
        to_annexb = BitStreamFilterContext("h264_mp4toannexb", v)
        out: list[CameraPacket] = []
        for p in c.demux(v):
            for q in to_annexb.filter(p):
                if q.pts is None or not q.size:
                    continue
                dts = q.dts if q.dts is not None else q.pts
                out.append(
                    CameraPacket(bytes(q), float(q.pts * tb), float(dts * tb), bool(q.is_keyframe))
                )
        rate = float(v.average_rate or 30)
    t0 = min(p.pts_s for p in out)
    out = [CameraPacket(p.data, p.pts_s - t0, p.dts_s - t0, p.keyframe) for p in out]
    return out, len(out) / rate


def folder_bytes(root: Path) -> int:
    """Bytes of the segment files (complete and in progress) under ``root``."""
    total = 0
    for path in root.glob("*/*.ts*"):
        try:
            total += path.stat().st_size
        except FileNotFoundError:
            continue
    return total


class SmallDisk:
    """Opens segment files on a pretend disk of ``capacity`` bytes (the real files count).

    ``full_events`` counts the ENOSPC raised; ``peak`` is the most the folder ever held.
    """

    def __init__(self, root: Path, capacity: int) -> None:
        self.root = root
        self.capacity = capacity
        self.full_events = 0
        self.peak = 0

    def free(self, _path: Path) -> int:
        """Bytes free on this disk (the ``free_space`` seam of the recorder)."""
        return max(0, self.capacity - folder_bytes(self.root))

    def __call__(self, path: Path) -> SegmentFile:
        disk = self

        class _File(SegmentFile):
            def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
                used = folder_bytes(disk.root)
                if used + len(data) > disk.capacity:
                    disk.full_events += 1
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
                n = super().write(data)
                disk.peak = max(disk.peak, used + n)
                return n

        if folder_bytes(self.root) >= self.capacity:
            self.full_events += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return _File(path)


class StalledDisk:
    """Opens segment files whose writes wait until ``release()`` (or ``timeout_s``)."""

    def __init__(self, timeout_s: float = 30.0) -> None:
        self.gate = threading.Event()
        self.timeout_s = timeout_s
        self.waiting = threading.Event()  # set once a write is stuck

    def release(self) -> None:
        self.gate.set()

    def __call__(self, path: Path) -> SegmentFile:
        disk = self

        class _File(SegmentFile):
            def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
                if not disk.gate.is_set():
                    disk.waiting.set()
                    disk.gate.wait(disk.timeout_s)
                return super().write(data)

        return _File(path)


class SlowCard:
    """Opens segment files whose ``sync`` (at every segment's close) takes ``sync_s``."""

    def __init__(self, sync_s: float) -> None:
        self.sync_s = sync_s

    def __call__(self, path: Path) -> SegmentFile:
        card = self

        class _File(SegmentFile):
            def sync(self) -> None:
                time.sleep(card.sync_s)
                super().sync()

        return _File(path)
