"""Where the recorder's H.264 comes from: a camera's own encoder, or libx264 through PyAV.

Both paths give ``EncodedPacket``s in Annex B form with SPS/PPS repeated before every
keyframe, so any segment or clip can start at any keyframe and be decoded on its own.

* ``FrameEncoder`` encodes captured frames (USB, RTSP, file sources) with libx264 at the
  configured size, rate, bitrate and keyframe interval.
* ``PacketClock`` places packets that a camera already encoded (picamera2's H.264 encoder
  on a Pi) on the monotonic clock: their times count from the encoder's start.
* ``StreamTemplate`` reads the stream parameters (size, profile, SPS/PPS) from a keyframe,
  which the segment writer and the clip cutter copy into their containers.
"""

from __future__ import annotations

import io
import logging
from fractions import Fraction

import av
from av.video.frame import PictureType

from roadside.agent.frames import Frame
from roadside.agent.recording.packets import EncodedPacket
from roadside.config.agent import RecordingEncoderConfig

log = logging.getLogger(__name__)

TICKS = 90_000  # MPEG-TS clock: every timestamp the recorder writes is in 1/90000 s
TIME_BASE = Fraction(1, TICKS)


class StreamTemplate:
    """The parameters of an H.264 stream, read from one keyframe (with its SPS and PPS).

    ``stream`` is a PyAV stream to pass to ``add_stream_from_template``; it lives as long as
    this object (an in-memory demuxer over the keyframe's bytes).
    """

    def __init__(self, keyframe: bytes) -> None:
        self._container = av.open(io.BytesIO(keyframe), format="h264")
        streams = self._container.streams.video
        if not streams or not streams[0].width:
            self._container.close()
            raise ValueError("the keyframe carries no SPS/PPS (enable repeated headers)")
        self.stream = streams[0]
        self.width: int = self.stream.width
        self.height: int = self.stream.height

    def close(self) -> None:
        self._container.close()


def even_size(width: int, height: int) -> tuple[int, int]:
    """H.264 in 4:2:0 wants even sides."""
    return max(2, width - width % 2), max(2, height - height % 2)


class FrameEncoder:
    """BGR frames in, H.264 packets out (libx264 through PyAV), on the recorder thread.

    ``fps`` thins the input (a 30 fps camera recorded at 15 fps keeps every other frame);
    keyframes are forced every ``keyframe_s`` of capture time, so segments and clips start
    where asked whatever the input rate. The frame size is set by the first frame and the
    config; a frame of another size restarts the encoder (``generation`` counts restarts).
    """

    def __init__(self, cfg: RecordingEncoderConfig, keyframe_s: float) -> None:
        self.cfg = cfg
        self.keyframe_s = keyframe_s
        self.generation = 0
        self.skipped = 0  # frames left out to keep to cfg.fps
        self._ctx: av.VideoCodecContext | None = None
        self._source_size: tuple[int, int] | None = None
        self._size: tuple[int, int] = (0, 0)
        self._mono0 = 0.0
        self._last_ticks = -1
        self._next_due: float | None = None
        self._last_key: float | None = None
        self._force_key = False

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        w, h = self.cfg.width, self.cfg.height
        if w and h:
            return even_size(w, h)
        if w:
            return even_size(w, round(height * w / width))
        if h:
            return even_size(round(width * h / height), h)
        return even_size(width, height)

    def accepts(self, frame: Frame) -> bool:
        """False when ``frame`` has another size than the running encoder's (a restart)."""
        height, width = frame.image.shape[:2]
        return self._ctx is None or self._source_size == (width, height)

    def force_keyframe(self) -> None:
        """The next frame encoded becomes a keyframe (a new segment must start there)."""
        self._force_key = True

    def encode(self, frame: Frame) -> list[EncodedPacket]:
        height, width = frame.image.shape[:2]
        out: list[EncodedPacket] = []
        if self._source_size != (width, height):
            out += self.flush()
            self._open(width, height, frame.mono)
        if not self._due(frame.mono):
            self.skipped += 1
            return out
        av_frame = av.VideoFrame.from_ndarray(frame.image, format="bgr24")
        av_frame = av_frame.reformat(width=self._size[0], height=self._size[1], format="yuv420p")
        ticks = max(self._last_ticks + 1, round((frame.mono - self._mono0) * TICKS))
        self._last_ticks = ticks
        av_frame.pts = ticks
        av_frame.time_base = TIME_BASE
        if (
            self._force_key
            or self._last_key is None
            or frame.mono - self._last_key >= self.keyframe_s - 1e-3
        ):
            av_frame.pict_type = PictureType.I
            self._last_key = frame.mono
            self._force_key = False
        assert self._ctx is not None
        out += self._packets(self._ctx.encode(av_frame))
        return out

    def flush(self) -> list[EncodedPacket]:
        """Drain the encoder (at a stop or a size change); it restarts on the next frame."""
        if self._ctx is None:
            return []
        packets = self._packets(self._ctx.encode(None))
        self._ctx = None
        self._source_size = None
        return packets

    # -- named steps --------------------------------------------------------------------
    def _open(self, width: int, height: int, mono: float) -> None:
        cfg = self.cfg
        self._source_size = (width, height)
        self._size = self.target_size(width, height)
        fps = cfg.fps or 30.0
        ctx = av.CodecContext.create("libx264", "w")
        ctx.width, ctx.height = self._size
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = TIME_BASE
        ctx.framerate = Fraction(fps).limit_denominator(1001)
        ctx.bit_rate = cfg.bitrate
        # Keyframes are forced by time (above); the GOP limit only backs that up.
        ctx.gop_size = max(2, round(2 * fps * self.keyframe_s))
        ctx.thread_count = cfg.threads
        kbps = cfg.bitrate // 1000
        ctx.options = {
            "preset": cfg.preset,
            "tune": "zerolatency",  # no B-frames, no lookahead: a packet per frame, at once
            "forced-idr": "1",  # forced keyframes are IDR: a segment can start there
            "x264-params": f"vbv-maxrate={kbps * 3 // 2}:vbv-bufsize={kbps * 2}",
        }
        ctx.open()  # no global header: SPS/PPS are repeated before every keyframe
        self._ctx = ctx
        self._mono0 = mono
        self._last_ticks = -1
        self._next_due = None
        self._last_key = None
        self.generation += 1
        log.info(
            "recording encoder: libx264 %s %dx%d, %s fps, %d kbit/s, keyframe every %.1f s",
            cfg.preset,
            *self._size,
            cfg.fps or "source",
            kbps,
            self.keyframe_s,
        )

    def _due(self, mono: float) -> bool:
        """Keep to cfg.fps: take a frame when its time has come, skip the ones in between."""
        if not self.cfg.fps:
            return True
        period = 1.0 / self.cfg.fps
        if self._next_due is not None and mono < self._next_due - period / 4:
            return False
        due = self._next_due
        self._next_due = due + period if due is not None and mono - due < period else mono + period
        return True

    def _packets(self, packets: list[av.Packet]) -> list[EncodedPacket]:
        out = []
        for p in packets:
            if p.pts is None:
                continue
            dts = p.dts if p.dts is not None else p.pts
            out.append(
                EncodedPacket(
                    bytes(p),
                    self._mono0 + p.pts / TICKS,
                    self._mono0 + dts / TICKS,
                    bool(p.is_keyframe),
                )
            )
        return out


class PacketClock:
    """Places a camera encoder's packets on the monotonic clock.

    picamera2 stamps packets in seconds from the encoder's start (from the sensor's clock), so
    one offset, fixed at the first packet, maps them to monotonic time. A timestamp that goes
    back means the encoder restarted: a new offset, and ``place`` reports a new stream.
    """

    def __init__(self) -> None:
        self._anchor: tuple[float, float] | None = None  # (monotonic, encoder seconds)
        self._last = 0.0

    def place(self, pts_s: float, dts_s: float, arrival_mono: float) -> tuple[float, float, bool]:
        """(pts, dts) on the monotonic clock, and whether a new stream began here."""
        restarted = self._anchor is None or dts_s < self._last - 0.5
        if restarted:
            self._anchor = (arrival_mono - (pts_s - dts_s), dts_s)
        self._last = dts_s
        assert self._anchor is not None
        mono0, enc0 = self._anchor
        return mono0 + pts_s - enc0, mono0 + dts_s - enc0, restarted
