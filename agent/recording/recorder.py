"""The recorder: its own thread between the camera and the segment ring.

Three doors lead in, none of which ever waits for the disk:

* ``submit(frame)``: a capture tap (USB, RTSP, file sources); frames are encoded here with
  libx264 (``FrameEncoder``).
* ``write_packet(data, pts_s, keyframe, dts_s=None)``: H.264 a camera already encoded
  (picamera2's encoder on a Pi), written as is. ``data`` is one access unit in Annex B form
  with SPS/PPS before each keyframe (picamera2's ``repeat=True``); ``pts_s`` its timestamp in
  seconds on the encoder's own clock (picamera2 counts from the encoder's start); ``dts_s``
  only for streams with B-frames. Called from the encoder's thread.
* ``publish(kind, msg)``: the ``Sink`` the pipeline sends events to. In ``events`` mode an
  event start flushes the pre-roll to disk and recording goes on until ``post_roll_s`` after
  the last event ended; in both modes footage that overlaps an event is kept longer.

All three put into one bounded queue (bytes); when it is full the newest frame or packet is
dropped and counted (``stats.dropped``), so a slow card never slows capture or detection.
After a dropped packet the pass-through path skips to the next keyframe (counted too).
Only files played fast (tests, benchmarks) wait instead of dropping, like the frame feed.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from roadside.agent.clock import ClockWatch, WallAnchor
from roadside.agent.frames import Frame
from roadside.agent.recording.encoder import FrameEncoder, PacketClock
from roadside.agent.recording.errors import RecordingError
from roadside.agent.recording.eventwindow import EventWindow
from roadside.agent.recording.packets import EncodedPacket
from roadside.agent.recording.preroll import PreRollRing
from roadside.agent.recording.retention import RetentionPolicy
from roadside.agent.recording.ring import FreeSpace, SegmentLabel, SegmentRing, disk_free
from roadside.agent.recording.segments import Opener, SegmentFile
from roadside.config.agent import AgentConfig, RecordingConfig
from roadside.wire.messages import EventMsg, EventPhase, Message

if TYPE_CHECKING:
    from roadside.agent.recording.recent import RecentClips

log = logging.getLogger(__name__)

Now = Callable[[], tuple[float, float]]  # (wall, monotonic)
LATE_EVENT_S = 5.0  # the pre-roll reaches this much further back: events are announced late


def system_now() -> tuple[float, float]:
    return time.time(), time.monotonic()


@dataclass
class RecorderStats:
    """Counters since start. The producers and the recorder thread write them (each its own
    fields); anyone reads them, without a lock (plain numbers)."""

    frames: int = 0  # frames taken in
    packets: int = 0  # camera packets taken in
    dropped: int = 0  # frames or packets refused: the queue was full
    dropped_bytes: int = 0
    skipped_to_keyframe: int = 0  # packets after a drop, useless until the next keyframe
    late: int = 0  # arrived after stop
    errors: int = 0  # items the recorder thread failed on (logged)
    clock_steps: int = 0


@dataclass(frozen=True)
class _Packet:
    """A camera packet as it arrived, with the clocks read on arrival."""

    data: bytes
    pts_s: float
    dts_s: float
    keyframe: bool
    wall: float
    mono: float


_STOP = object()


class WorkQueue:
    """Frames, packets and events for the recorder thread, bounded in bytes.

    Threading: producers are the capture thread, a camera encoder thread and the pipeline
    thread; the consumer is the recorder thread; one Condition guards the deque and the count.
    Events and the stop mark always go in (they are small and must not be lost).
    """

    def __init__(self, max_bytes: int, blocking: bool) -> None:
        self.max_bytes = max_bytes
        self.blocking = blocking
        self.bytes = 0
        self._items: collections.deque[tuple[Any, int]] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False

    def put(self, item: Any, size: int) -> bool:
        """False when the item was refused (full, not blocking, or stopping)."""
        with self._cond:
            while self.bytes + size > self.max_bytes and self._items:
                if not self.blocking or self._stopping:
                    return False
                self._cond.wait(0.1)
            if self._stopping:
                return False
            self._items.append((item, size))
            self.bytes += size
            self._cond.notify_all()
            return True

    def put_control(self, item: Any) -> None:
        with self._cond:
            self._items.append((item, 0))
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._items.append((_STOP, 0))
            self._cond.notify_all()

    def get(self, timeout: float) -> Any:
        """The next item, or None after ``timeout`` seconds without one."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            if not self._items:
                return None
            item, size = self._items.popleft()
            self.bytes -= size
            self._cond.notify_all()
            return item


class Recorder:
    """Records the camera into the segment ring under ``root`` (see the module doc).

    ``clock`` (is the wall clock synchronised?), ``opener`` (how segment files are opened),
    ``free_space`` (bytes free on the card) and ``now`` (wall and monotonic clocks) are seams
    for tests and benchmarks; the defaults are the real ones.
    """

    def __init__(
        self,
        cfg: RecordingConfig,
        root: Path,
        *,
        blocking: bool = False,
        clock: ClockWatch | None = None,
        opener: Opener = SegmentFile,
        free_space: FreeSpace = disk_free,
        now: Now = system_now,
    ) -> None:
        if cfg.mode == "off":
            raise ValueError("recording.mode is 'off': there is nothing to record")
        self.cfg = cfg
        self.root = root
        self.mode = cfg.mode
        self.stats = RecorderStats()
        self.clock = clock or ClockWatch()
        self.now = now
        policy = RetentionPolicy(
            int(cfg.budget_bytes),
            cfg.max_age_days * 86400 if cfg.max_age_days else None,
            cfg.event_bonus_days * 86400,
            int(cfg.keep_free_bytes),
        )
        try:
            self.ring = SegmentRing(
                root, policy, cfg.segment_s, self.clock.boot, opener, free_space
            )
        except OSError as exc:
            raise RecordingError(
                f"cannot use the recordings folder {root}: {exc.strerror or exc} (check "
                "recording.dir or data_dir, and that the agent may write there)"
            ) from None
        self.encoder = FrameEncoder(cfg.encoder, cfg.keyframe_s)
        self.packet_clock = PacketClock()
        self.anchor = WallAnchor()
        self.window = EventWindow(cfg.post_roll_s)
        self.preroll = PreRollRing(cfg.pre_roll_s + LATE_EVENT_S, int(cfg.pre_roll_max_bytes))
        self._queue = WorkQueue(int(cfg.queue_max_bytes), blocking)
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._synced: bool | None = None
        self._label: SegmentLabel | None = None
        self._skip_to_keyframe = False  # write_packet's own state (the encoder thread's)
        self._stopped = False

    @classmethod
    def from_config(cls, cfg: AgentConfig, live: bool = True) -> Recorder | None:
        """The recorder the config asks for, or None when recording is off.

        A file source played fast (``live`` False and pace fast) makes the queue wait
        instead of dropping, so every frame is recorded (tests, benchmarks).
        """
        rec = cfg.recording
        if rec.mode == "off":
            return None
        blocking = not live and cfg.source.pace == "fast"
        return cls(rec, rec.folder(cfg.data_dir), blocking=blocking)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        synced = self.clock.refresh()
        if synced:  # a restart after the clock synced: relabel this boot's earlier footage
            wall, mono = self.now()
            self.ring.retime(wall - mono)
        self._thread.start()
        log.info(
            "recording (%s) into %s: %.1f GB budget, %.1f GB in use, clock %s",
            self.mode,
            self.root,
            self.cfg.budget_bytes / 1e9,
            self.ring.bytes_used / 1e9,
            "synchronised" if synced else "NOT synchronised",
        )

    def stop(self, timeout: float = 30.0) -> None:
        """Write what is queued, finish the segment in progress, close the index."""
        if self._stopped:
            return
        self._stopped = True
        self._queue.stop()
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error(
                    "recorder still busy after %.0f s: its segment in progress is "
                    "recovered at the next start",
                    timeout,
                )
        elif self._thread.ident is None:  # never started
            self.ring.close()

    @property
    def clips(self) -> RecentClips:
        """A clip cutter over this recorder's folder (usable from any thread), which waits
        for the segment in progress when a range reaches into it."""
        from roadside.agent.recording.clipcut import ClipCutter
        from roadside.agent.recording.recent import RecentClips

        return RecentClips(ClipCutter(self.root), self.cfg.segment_s, lambda: self.ring.recording)

    # -- the three doors (producer threads) ---------------------------------------------
    def submit(self, frame: Frame) -> None:
        """Capture tap: queue a frame for encoding; never blocks a live camera."""
        self.stats.frames += 1
        if self._stopped:
            self.stats.late += 1
            return
        if not self._queue.put(("frame", frame), frame.image.nbytes):
            self.stats.dropped += 1
            self.stats.dropped_bytes += frame.image.nbytes

    def write_packet(
        self, data: bytes, pts_s: float, keyframe: bool, dts_s: float | None = None
    ) -> None:
        """Queue one H.264 access unit from a camera encoder (see the module doc)."""
        self.stats.packets += 1
        if self._stopped:
            self.stats.late += 1
            return
        if self._skip_to_keyframe:
            if not keyframe:
                self.stats.skipped_to_keyframe += 1
                return
            self._skip_to_keyframe = False
        wall, mono = self.now()
        item = _Packet(bytes(data), pts_s, pts_s if dts_s is None else dts_s, keyframe, wall, mono)
        if not self._queue.put(("packet", item), len(item.data)):
            self.stats.dropped += 1
            self.stats.dropped_bytes += len(item.data)
            self._skip_to_keyframe = True

    def publish(self, kind: str, msg: Message) -> None:
        """Sink: events mark footage (and start recording in events mode)."""
        if isinstance(msg, EventMsg) and not self._stopped:
            self._queue.put_control(("event", msg))

    def close(self) -> None:
        """Sink: the pipeline has no more events. Recording stops with ``stop``."""

    # -- the recorder thread --------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get(timeout=1.0)
                if item is _STOP:
                    break
                if item is None:
                    continue
                kind, payload = item
                try:
                    if kind == "frame":
                        self._on_frame(payload)
                    elif kind == "packet":
                        self._on_packet(payload)
                    else:
                        self._on_event(payload)
                except Exception:  # one bad item must not end the recording
                    self.stats.errors += 1
                    log.exception("recorder failed on a %s", kind)
        finally:
            self._finish()

    def _finish(self) -> None:
        try:
            for pkt in self.encoder.flush():
                self._route(pkt)
        except Exception:
            log.exception("recorder could not flush the encoder")
        self.ring.close()
        self.preroll.clear()
        rs = self.ring.stats
        log.info(
            "recording stopped: %d segments, %.1f MB written, %d evicted, %d dropped, %d disk-full",
            rs.segments,
            rs.bytes_written / 1e6,
            rs.evicted,
            self.stats.dropped,
            rs.disk_full,
        )

    def _on_frame(self, frame: Frame) -> None:
        self._observe_clock(frame.time, frame.mono)
        if not self.encoder.accepts(frame):
            for pkt in self.encoder.flush():
                self._route(pkt)
            self.ring.new_stream()
            self.preroll.clear()
        for pkt in self.encoder.encode(frame):
            self._route(pkt)

    def _on_packet(self, raw: _Packet) -> None:
        pts, dts, restarted = self.packet_clock.place(raw.pts_s, raw.dts_s, raw.mono)
        if restarted:
            self.ring.new_stream()
            self.preroll.clear()
        self._observe_clock(raw.wall, raw.mono)
        self._route(EncodedPacket(raw.data, pts, dts, raw.keyframe))

    def _on_event(self, msg: EventMsg) -> None:
        t0, t1 = self.anchor.mono(msg.first_seen), self.anchor.mono(msg.last_seen)
        if msg.phase == EventPhase.START:
            self.window.start(msg.id, t0)
            if self.mode == "events" and not self.ring.recording and self._label is not None:
                for pkt in self.preroll.drain(t0 - self.cfg.pre_roll_s):
                    self.ring.write(pkt, self._label)
        else:
            self.window.end(msg.id, t1)
        self.ring.mark_event(msg.first_seen, msg.last_seen)

    # -- named steps --------------------------------------------------------------------
    def _observe_clock(self, wall: float, mono: float) -> None:
        step = self.anchor.observe(wall, mono)
        synced = self.clock.synced_at(mono)
        if step is not None:
            self.stats.clock_steps += 1
            log.warning(
                "wall clock stepped by %+.1f s (%s): footage from here on is a new segment",
                step.step_s,
                "synchronised" if synced else "not synchronised",
            )
        if synced and (step is not None or not self._synced):
            assert self.anchor.offset is not None
            self.ring.retime(self.anchor.offset)
        self._synced = synced
        assert self.anchor.offset is not None
        label = SegmentLabel(
            self.anchor.offset,
            "sync" if synced else "nosync",
            "event" if self.mode == "events" else "cont",
        )
        if label != self._label:
            self.encoder.force_keyframe()
            self._label = label

    def _route(self, pkt: EncodedPacket) -> None:
        assert self._label is not None
        if self.mode == "continuous" or self.window.wants(pkt.pts):
            self.ring.write(pkt, self._label)
        else:
            if self.ring.recording:
                self.ring.close_segment(end=pkt.pts)
            self.preroll.add(pkt)
