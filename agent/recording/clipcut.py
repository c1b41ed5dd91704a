"""Cutting a clip: a wall-time range of the segment ring into one MP4, without re-encoding.

The clip starts at the keyframe at or before ``from`` (a stream copy cannot start between
keyframes) and ends with the last picture decoded at or before ``to``. Its timestamps follow
wall time, so a hole in the footage stays a hole in the clip's timeline, and the result
lists it: ``ClipResult.gaps``. The MP4 is written with ``movflags=faststart`` (the index
first), so a player can start before the whole file has arrived.

``quality="low"`` decodes and encodes again, smaller (at most 640 pixels wide, 10 fps,
500 kbit/s) for slow links; it then starts exactly at ``from``.

Threading: a ``ClipCutter`` holds no state between calls; each ``cut`` opens its own index
connection, so any thread (the command jobs, the command line) may cut while recording goes
on. A segment evicted during a cut becomes a gap in the result.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from roadside.agent.recording.encoder import TICKS, TIME_BASE, even_size
from roadside.agent.recording.errors import BadRangeError, NoFootageError, RecordingError
from roadside.agent.recording.index import (
    GAP_TOLERANCE_S,
    Range,
    SegmentRecord,
    open_index,
)

log = logging.getLogger(__name__)

QUALITIES = ("original", "low")


@dataclass(frozen=True)
class LowQuality:
    """What ``quality="low"`` encodes to."""

    max_width: int = 640
    max_fps: float = 10.0
    bitrate: int = 500_000
    preset: str = "veryfast"


@dataclass(frozen=True)
class ClipResult:
    """What a cut produced. ``start``/``end``: the wall-time range the clip covers."""

    path: Path
    start: float
    end: float
    gaps: list[tuple[float, float]] = field(default_factory=list)
    requested: tuple[float, float] = (0.0, 0.0)
    bytes: int = 0
    segments: int = 0
    quality: str = "original"
    clock_synced: bool = True  # False when some footage was labelled by an unsynced clock


class _Span:
    """The pictures taken from one segment (wall times) and the span they cover.

    ``end`` is where the pictures stop being contiguous: with B-frames, a stream copy that
    ends between anchor frames may hold a frame or two past a hole, which is not claimed.
    """

    def __init__(self, period: float, step: float | None = None) -> None:
        self.period = period
        self.step = step or period
        self._times: list[float] = []

    def add(self, t: float) -> None:
        self._times.append(t)

    def __bool__(self) -> bool:
        return bool(self._times)

    @property
    def start(self) -> float:
        return min(self._times)

    @property
    def end(self) -> float:
        times = sorted(self._times)
        last = times[0]
        for t in times[1:]:
            if t - last > 1.5 * self.step:
                break
            last = t
        return last + self.period


@dataclass
class _Picture:
    """A packet read from a segment, placed on wall time."""

    packet: av.Packet
    pts: float
    dts: float
    keyframe: bool


class SegmentReader:
    """One segment file's packets on wall time (its name's start + the offset in the file)."""

    def __init__(self, root: Path, seg: SegmentRecord) -> None:
        self.seg = seg
        self.container: Any = av.open(str(root / seg.path))
        if not self.container.streams.video:
            self.container.close()
            raise RecordingError(f"segment {seg.path} holds no video")
        self.stream: Any = self.container.streams.video[0]
        self._tb = float(self.stream.time_base or Fraction(1, TICKS))
        self._first: int | None = None
        self.period = seg.duration / max(1, seg.packets)

    @classmethod
    def open(cls, root: Path, seg: SegmentRecord) -> SegmentReader | None:
        """None for a segment that vanished (evicted meanwhile) or cannot be read: a gap."""
        try:
            return cls(root, seg)
        except (OSError, av.FFmpegError, RecordingError) as exc:
            log.warning("segment %s unreadable for a clip (%s): reported as a gap", seg.path, exc)
            return None

    def wall(self, ticks: int) -> float:
        assert self._first is not None
        return self.seg.start + (ticks - self._first) * self._tb

    def pictures(self, from_key: float | None) -> Iterator[_Picture]:
        """Packets from the keyframe at ``from_key`` (wall), or from the first keyframe."""
        started = from_key is None
        for p in self.container.demux(self.stream):
            if p.pts is None or not p.size:
                continue
            if self._first is None:
                if not p.is_keyframe:
                    continue
                self._first = p.pts
            pts = self.wall(p.pts)
            if not started:
                if not (p.is_keyframe and pts >= (from_key or 0.0) - 1e-3):
                    continue
                started = True
            dts = self.wall(p.dts) if p.dts is not None else pts
            yield _Picture(p, pts, dts, bool(p.is_keyframe))

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> SegmentReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def keyframe_at_or_before(seg: SegmentRecord, t: float) -> float:
    """The wall time of the segment's last keyframe at or before ``t`` (else its first)."""
    times = seg.keyframe_times() or [seg.start]
    before = [k for k in times if k <= t + 1e-3]
    return before[-1] if before else times[0]


def find_gaps(
    spans: list[_Span], start: float, end: float, tolerance: float = GAP_TOLERANCE_S
) -> list[tuple[float, float]]:
    """Holes in [start, end] that the spans (in order) do not cover, longer than tolerance."""
    gaps: list[tuple[float, float]] = []
    covered_to = start
    for span in spans:
        if span.start - covered_to > tolerance:
            gaps.append((covered_to, span.start))
        covered_to = max(covered_to, span.end)
    if end - covered_to > tolerance:
        gaps.append((covered_to, end))
    return gaps


class ClipCutter:
    """Cuts clips from the recordings folder ``root`` (see the module doc)."""

    def __init__(self, root: Path, low: LowQuality | None = None) -> None:
        self.root = Path(root)
        self.low = low or LowQuality()

    # -- what is there ------------------------------------------------------------------
    def ranges(self) -> list[Range]:
        if not self.root.is_dir():
            return []
        with open_index(self.root) as index:
            return index.ranges()

    def retained(self) -> dict[str, Any]:
        """A compact summary for status replies: overall range, bytes, the latest ranges."""
        ranges = self.ranges()
        if not ranges:
            return {"segments": 0, "bytes": 0}
        return {
            "from": round(ranges[0].start, 3),
            "to": round(ranges[-1].end, 3),
            "bytes": sum(r.bytes for r in ranges),
            "segments": sum(r.segments for r in ranges),
            "ranges": [[round(r.start, 3), round(r.end, 3)] for r in ranges[-20:]],
            "nosync": int(any("nosync" in r.clocks for r in ranges)),
        }

    # -- the cut --------------------------------------------------------------------------
    def cut(self, start: float, end: float, out: Path, quality: str = "original") -> ClipResult:
        """Cut [start, end] (epoch seconds) into the MP4 ``out``.

        Raises ``NoFootageError`` (naming the retained range) when nothing was recorded in
        the range, ``BadRangeError`` when ``end`` is not after ``start``.
        """
        if quality not in QUALITIES:
            raise BadRangeError(f"quality {quality!r}: use 'original' or 'low'")
        if not end > start:
            raise BadRangeError(f"the range must end after it starts ({start} .. {end})")
        if not self.root.is_dir():
            raise self._no_footage(start, end, [])
        with open_index(self.root) as index:
            segments = index.overlapping(start, end)
            ranges = index.ranges() if not segments else []
        if not segments:
            raise self._no_footage(start, end, ranges)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".partial")
        try:
            if quality == "low":
                spans = self._transcode(segments, start, end, tmp)
            else:
                spans = self._copy(segments, start, end, tmp)
            if not spans:
                raise self._no_footage(start, end, self.ranges())
            os.replace(tmp, out)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()
        covered = (spans[0].start, max(s.end for s in spans))
        return ClipResult(
            path=out,
            start=covered[0],
            end=covered[1],
            gaps=find_gaps(spans, start, end),
            requested=(start, end),
            bytes=out.stat().st_size,
            segments=len(spans),
            quality=quality,
            clock_synced=all(s.clock != "nosync" for s in segments),
        )

    @staticmethod
    def _no_footage(start: float, end: float, ranges: list[Range]) -> NoFootageError:
        if not ranges:
            return NoFootageError(start, end, None)
        return NoFootageError(start, end, (ranges[0].start, ranges[-1].end), len(ranges))

    # -- stream copy ----------------------------------------------------------------------
    def _copy(
        self, segments: list[SegmentRecord], start: float, end: float, tmp: Path
    ) -> list[_Span]:
        spans: list[_Span] = []
        from_key: float | None = keyframe_at_or_before(segments[0], start)
        out: Any = None
        stream: Any = None
        origin = 0.0
        last_dts = -1
        try:
            for seg in segments:
                reader = SegmentReader.open(self.root, seg)
                if reader is None:
                    continue
                span = _Span(reader.period)
                resync = False  # after overlapping footage (a clock stepped back): next keyframe
                with reader:
                    for pic in reader.pictures(from_key):
                        if pic.dts > end and pic.pts > end:
                            break  # (a B-frame shown before the end is decoded after it)
                        if out is None:
                            out = av.open(
                                str(tmp), "w", format="mp4", options={"movflags": "+faststart"}
                            )
                            stream = out.add_stream_from_template(reader.stream)
                            origin = pic.dts
                        dts = round((pic.dts - origin) * TICKS)
                        if dts <= last_dts or (resync and not pic.keyframe):
                            resync = True
                            continue
                        resync = False
                        last_dts = dts
                        packet = pic.packet
                        packet.stream = stream
                        packet.time_base = TIME_BASE
                        packet.dts = dts
                        packet.pts = max(dts, round((pic.pts - origin) * TICKS))
                        out.mux(packet)
                        span.add(pic.pts)
                if span:
                    spans.append(span)
                    from_key = None
        except av.FFmpegError as exc:
            raise RecordingError(f"cutting the clip failed: {exc}") from None
        finally:
            if out is not None:
                out.close()
        return spans

    # -- transcode down -------------------------------------------------------------------
    def _transcode(
        self, segments: list[SegmentRecord], start: float, end: float, tmp: Path
    ) -> list[_Span]:
        spans: list[_Span] = []
        from_key: float | None = keyframe_at_or_before(segments[0], start)
        encoder = _LowEncoder(self.low, tmp)
        try:
            for seg in segments:
                reader = SegmentReader.open(self.root, seg)
                if reader is None:
                    continue
                span = _Span(reader.period, step=max(reader.period, 1.0 / self.low.max_fps))
                with reader:
                    frames = self._decoded(reader, from_key, end)
                    for t, frame in frames:
                        if start - 1e-3 <= t <= end and encoder.add(frame, t):
                            span.add(t)
                if span:
                    spans.append(span)
                    from_key = None
            encoder.finish()
        except av.FFmpegError as exc:
            raise RecordingError(f"transcoding the clip failed: {exc}") from None
        finally:
            encoder.close()
        return spans

    @staticmethod
    def _decoded(
        reader: SegmentReader, from_key: float | None, end: float
    ) -> Iterator[tuple[float, av.VideoFrame]]:
        decoder = reader.stream.codec_context
        for pic in reader.pictures(from_key):
            if pic.dts > end and pic.pts > end:
                break
            for frame in decoder.decode(pic.packet):
                if frame.pts is not None:
                    yield reader.wall(frame.pts), frame
        for frame in decoder.decode(None):
            if frame.pts is not None:
                yield reader.wall(frame.pts), frame


class _LowEncoder:
    """The small MP4 of ``quality="low"``: libx264, scaled down, fewer frames."""

    def __init__(self, low: LowQuality, path: Path) -> None:
        self.low = low
        self.path = path
        self._out: Any = None
        self._stream: Any = None
        self._origin = 0.0
        self._last_t = float("-inf")
        self._last_pts = -1

    def add(self, frame: av.VideoFrame, t: float) -> bool:
        """Encode ``frame`` taken at wall time ``t``; False when skipped to keep max_fps."""
        if t - self._last_t < 0.75 / self.low.max_fps:
            return False
        if self._out is None:
            self._open(frame.width, frame.height, t)
        small = frame.reformat(
            width=self._stream.width, height=self._stream.height, format="yuv420p"
        )
        pts = max(self._last_pts + 1, round((t - self._origin) * TICKS))
        small.pts, small.time_base = pts, TIME_BASE
        self._last_pts, self._last_t = pts, t
        self._out.mux(self._stream.encode(small))
        return True

    def finish(self) -> None:
        if self._out is not None:
            self._out.mux(self._stream.encode(None))

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def _open(self, width: int, height: int, t: float) -> None:
        w = min(self.low.max_width, width)
        size = even_size(w, round(height * w / width))
        self._out = av.open(str(self.path), "w", format="mp4", options={"movflags": "+faststart"})
        stream = self._out.add_stream("libx264", rate=round(self.low.max_fps))
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.bit_rate = self.low.bitrate
        stream.codec_context.time_base = TIME_BASE
        stream.codec_context.options = {"preset": self.low.preset}
        self._stream = stream
        self._origin = t
