"""Segment files: how they are named, written, read back and recovered after a crash.

A segment is an MPEG-TS file of a few seconds that starts with a keyframe. MPEG-TS is a
stream of 188-byte packets with no index at the end, so a file cut short by a SIGKILL or a
power cut is readable up to the cut. While it is written a segment is ``<name>.ts.part``;
the rename to ``<name>.ts`` (after fsync) says it is complete.

The file name carries what cannot be read back from the video itself, so that the index can
always be rebuilt from the files alone::

    <day>/<start ms>_<boot>_<mono ms>_<clock>-<mode>[-ev].ts
    20260512/1778580000123_3f2a9c1b_1234567_sync-cont-ev.ts

``start`` is the wall time of its first picture, ``boot``/``mono`` the monotonic clock domain
and time (for relabelling once the clock is set), ``clock`` sync | nosync | retimed,
``mode`` cont | event, and ``-ev`` marks footage that overlaps an event.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Literal, cast

import av

from roadside.agent.recording.encoder import TICKS, TIME_BASE, StreamTemplate
from roadside.agent.recording.packets import EncodedPacket

log = logging.getLogger(__name__)

Clock = Literal["sync", "nosync", "retimed"]
Mode = Literal["cont", "event"]
SUFFIX = ".ts"
PART = ".ts.part"
_NAME = re.compile(
    r"^(?P<start>\d{1,16})_(?P<boot>[0-9a-f]{8})_(?P<mono>\d{1,16})_"
    r"(?P<clock>sync|nosync|retimed)-(?P<mode>cont|event)(?P<ev>-ev)?\.ts$"
)


@dataclass(frozen=True)
class SegmentName:
    """What a segment's file name says about it (see the module doc)."""

    start: float
    boot: str
    mono: float
    clock: Clock
    mode: Mode
    event: bool = False

    @property
    def filename(self) -> str:
        ev = "-ev" if self.event else ""
        start_ms = max(0, round(self.start * 1000))
        mono_ms = max(0, round(self.mono * 1000))
        return f"{start_ms:013d}_{self.boot}_{mono_ms}_{self.clock}-{self.mode}{ev}{SUFFIX}"

    @property
    def relpath(self) -> str:
        """``<UTC day>/<filename>``: one folder a day keeps folders small on an SD card."""
        day = datetime.fromtimestamp(max(0.0, self.start), UTC).strftime("%Y%m%d")
        return f"{day}/{self.filename}"

    @classmethod
    def parse(cls, filename: str) -> SegmentName | None:
        m = _NAME.match(filename)
        if m is None:
            return None
        return cls(
            int(m["start"]) / 1000,
            m["boot"],
            int(m["mono"]) / 1000,
            cast(Clock, m["clock"]),
            cast(Mode, m["mode"]),
            bool(m["ev"]),
        )

    def but(self, **changes: object) -> SegmentName:
        return replace(self, **changes)  # type: ignore[arg-type]


class SegmentFile(io.RawIOBase):
    """The one place segment bytes reach the disk: PyAV's muxer writes through it.

    Counting here gives the bytes really handed to the kernel; tests replace the opener to
    make the disk fill up (ENOSPC) exactly here, where a real card would.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self.written = 0
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        view = memoryview(data)
        done = 0
        while done < len(view):
            done += os.write(self._fd, view[done:])
        self.written += done
        return done

    def sync(self) -> None:
        os.fsync(self._fd)

    def close(self) -> None:
        if not self.closed:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        super().close()


Opener = Callable[[Path], SegmentFile]


@dataclass(frozen=True)
class SegmentSummary:
    """What a closed segment holds, on the monotonic clock of its packets."""

    start: float  # pts of the first keyframe
    end: float
    keyframes: list[float]  # offsets from start, seconds
    packets: int
    bytes: int


class SegmentWriter:
    """Muxes packets into one MPEG-TS file; one instance per segment, recorder thread only.

    Timestamps inside the file count from the segment's first packet (90 kHz); what they mean
    in wall time is in the file name and the index. Every packet is flushed to the kernel
    as it is muxed (``flush_packets``), so a killed process loses at most that packet.
    """

    def __init__(self, part: Path, template: StreamTemplate, opener: Opener = SegmentFile) -> None:
        self.part = part
        part.parent.mkdir(parents=True, exist_ok=True)
        self.file = opener(part)
        try:
            self._out = av.open(
                self.file, "w", format="mpegts", container_options={"flush_packets": "1"}
            )
            self._stream = self._out.add_stream_from_template(template.stream)
        except BaseException:
            self.file.close()
            raise
        self._origin: float | None = None
        self._start = 0.0
        self._last_dts = -1
        self._max_pts = 0.0
        self._keyframes: list[float] = []
        self.packets = 0

    @property
    def start(self) -> float:
        return self._start

    @property
    def bytes(self) -> int:
        return self.file.written

    def write(self, pkt: EncodedPacket) -> None:
        if self._origin is None:
            self._origin = pkt.dts
            self._start = pkt.pts
        dts = max(self._last_dts + 1, round((pkt.dts - self._origin) * TICKS))
        pts = max(dts, round((pkt.pts - self._origin) * TICKS))
        self._last_dts = dts
        packet = av.Packet(pkt.data)
        packet.stream = self._stream
        packet.time_base = TIME_BASE
        packet.pts, packet.dts = pts, dts
        packet.is_keyframe = pkt.keyframe
        self._out.mux(packet)
        if pkt.keyframe:
            self._keyframes.append(round(pkt.pts - self._start, 4))
        self._max_pts = max(self._max_pts, pkt.pts)
        self.packets += 1

    def close(self, end: float | None = None) -> SegmentSummary:
        """Finish the file and fsync it; ``end`` is where the next segment starts, if known."""
        self._out.close()
        self.file.sync()
        self.file.close()
        if end is None or end <= self._max_pts:
            end = self._max_pts + self._frame_period()
        return SegmentSummary(self._start, end, self._keyframes, self.packets, self.file.written)

    def abort(self) -> int:
        """Give up on this segment (the disk failed under it): close quietly, delete the file."""
        with contextlib.suppress(Exception):
            self._out.close()
        self.file.close()
        with contextlib.suppress(OSError):
            self.part.unlink()
        return self.file.written

    def _frame_period(self) -> float:
        if self.packets > 1:
            return max(0.001, (self._max_pts - self._start) / (self.packets - 1))
        return 1 / 15


@dataclass(frozen=True)
class SegmentProbe:
    """A segment file read back: what the index needs from the video itself."""

    duration: float
    keyframes: list[float]
    packets: int
    width: int
    height: int


def probe_segment(path: Path) -> SegmentProbe | None:
    """Demux a segment (no decoding) for its duration and keyframes; None if unreadable."""
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                return None
            v = c.streams.video[0]
            tb = v.time_base or Fraction(1, TICKS)
            first: int | None = None
            last = 0
            keys: list[int] = []
            count = 0
            for p in c.demux(v):
                if p.pts is None or not p.size:
                    continue
                if first is None:
                    if not p.is_keyframe:
                        continue
                    first = p.pts
                count += 1
                last = max(last, p.pts)
                if p.is_keyframe:
                    keys.append(p.pts)
            if first is None:
                return None
            span = float((last - first) * tb)
            period = span / (count - 1) if count > 1 else 1 / 15
            return SegmentProbe(
                duration=span + period,
                keyframes=[round(float((k - first) * tb), 4) for k in keys],
                packets=count,
                width=v.width,
                height=v.height,
            )
    except (av.FFmpegError, OSError, ValueError) as exc:
        log.warning("segment %s cannot be read: %s", path, exc)
        return None


def recover_partial(part: Path, final: Path) -> SegmentProbe | None:
    """Keep what a crash left of a segment: every packet but the last (it may be cut short).

    The packets are copied into a clean file at ``final``; the ``.part`` file is deleted in
    every case. None when not even one whole keyframe survived.
    """
    kept = 0
    tmp = final.with_name(final.name + ".tmp")
    try:
        with av.open(str(part)) as src:
            if not src.streams.video:
                return None
            v = src.streams.video[0]
            packets = [p for p in src.demux(v) if p.size and p.pts is not None]
            packets = packets[:-1]  # the last one may be truncated
            while packets and not packets[0].is_keyframe:
                packets.pop(0)
            if not packets:
                return None
            with av.open(str(tmp), "w", format="mpegts") as out:
                stream = out.add_stream_from_template(v)
                for p in packets:
                    p.stream = stream
                    out.mux(p)
                    kept += 1
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        return probe_segment(final)
    except (av.FFmpegError, OSError, ValueError) as exc:
        log.warning("partial segment %s cannot be recovered: %s", part, exc)
        return None
    finally:
        with contextlib.suppress(OSError):
            part.unlink()
        with contextlib.suppress(OSError):
            tmp.unlink()
        log.info(
            "partial segment %s: %s",
            part.name,
            f"kept {kept} packets" if kept else "dropped (nothing whole in it)",
        )


def fsync_dir(path: Path) -> None:
    """Make a rename durable: fsync the folder that holds it."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
