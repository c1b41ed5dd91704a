"""The vision pipeline: frames in, event and count messages out.

``capture thread ─► FrameFeed ─► motion gate ─► detector ─► tracker ─► events ─► sinks``

The capture thread (see sources.feed) never waits for detection; everything after the feed
runs on one pipeline thread, the caller's, so the stages need no locks between them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from roadside.agent.clock import ClockWatch
from roadside.agent.events.builder import EventBuilder
from roadside.agent.events.counts import CountWindow
from roadside.agent.events.lines import Crossing, LineCounter
from roadside.agent.events.sinks import Sink
from roadside.agent.frames import Frame
from roadside.agent.sources.base import FrameSource
from roadside.agent.sources.feed import CaptureThread, FrameFeed, FrameTap
from roadside.agent.vision.colour import colour_of
from roadside.agent.vision.decoders import Detection
from roadside.agent.vision.detector import Detector
from roadside.agent.vision.motion import MotionGate
from roadside.agent.vision.rate import DetectionRate
from roadside.agent.vision.regions import RegionPlanner
from roadside.agent.vision.tracker import Track, Tracker
from roadside.agent.vision.zones import ZoneMap
from roadside.config.agent import AgentConfig
from roadside.wire.messages import EventPhase, Message

log = logging.getLogger(__name__)

FrameObserver = Callable[[Frame, Iterable[Track]], None]


class Gate(Protocol):
    """What the pipeline asks of its motion gate: is this frame worth a detector run?"""

    def update(self, image: np.ndarray) -> bool: ...

    def boxes(self) -> list[tuple[float, float, float, float]]:
        """Where the last frame moved (normalised x0, y0, x1, y1): where to look closer."""
        ...


@dataclass
class PipelineStats:
    """Read by health reports and the watchdog from other threads (plain numbers: no lock)."""

    frames: int = 0
    detections_run: int = 0
    events: int = 0
    last_frame_mono: float = 0.0
    last_detect_mono: float = 0.0
    detect_latency_s: float = 0.0
    started_mono: float = 0.0

    @property
    def fps(self) -> float:
        elapsed = time.monotonic() - self.started_mono
        return self.frames / elapsed if elapsed > 0 else 0.0


class Pipeline:
    """Runs the stages over a source until told to stop or the source ends.

    Everything it is connected to comes in here: ``taps`` see every captured frame on the
    capture thread (they must not block); ``gate`` (default: a ``MotionGate``), ``detector``
    and ``tracker`` (default: from the config) are the stages; ``observers`` are called on the
    pipeline thread after each frame with the live tracks; ``sinks`` take every message in
    order. ``stats`` is shared with whoever watches the pipeline (the watchdog); setting
    ``stop_event`` (a signal, a restart to apply a config) ends ``run``.
    """

    def __init__(
        self,
        cfg: AgentConfig,
        source: FrameSource,
        detector: Detector,
        sinks: Sequence[Sink],
        *,
        taps: Sequence[FrameTap] = (),
        gate: Gate | None = None,
        tracker: Tracker | None = None,
        observers: Sequence[FrameObserver] = (),
        stats: PipelineStats | None = None,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.cfg = cfg
        self.source = source
        self.detector = detector
        self.sinks = tuple(sinks)
        self.gate: Gate = gate if gate is not None else MotionGate(cfg.motion)
        self.rate = DetectionRate(cfg.detector.max_fps)
        self.regions = RegionPlanner(cfg.detector.regions, detector.input_side)
        self.tracker = tracker if tracker is not None else Tracker(cfg.tracker)
        self.lines = LineCounter(cfg.events.lines)
        self.builder = EventBuilder(ZoneMap(cfg.events.zones), ClockWatch())
        self.counts = CountWindow(cfg.events.count_interval_s)
        self.stop_event = stop_event if stop_event is not None else threading.Event()
        fast_file = not source.live and cfg.source.pace == "fast"
        self.feed = FrameFeed(size=4 if fast_file else 2, newest_wins=not fast_file)
        self.capture = CaptureThread(source, self.feed, self.stop_event, taps)
        self.observers = tuple(observers)
        self.stats = stats if stats is not None else PipelineStats()
        self._last_detect_t: float | None = None
        self._aspect: float | None = None

    # -- the loop -----------------------------------------------------------------------
    def run(self, duration: float | None = None) -> PipelineStats:
        """Process frames until ``stop()``, the end of the source, or ``duration`` seconds."""
        self.stats.started_mono = time.monotonic()
        deadline = None if duration is None else self.stats.started_mono + duration
        self.capture.start()
        last_t = None
        try:
            while not self.stop_event.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                frame = self.feed.get(timeout=0.2)
                if frame is None:
                    if self.feed.ended:
                        break
                    continue
                self.step(frame)
                last_t = frame.time
        finally:
            self.stop_event.set()
            self.capture.join(timeout=5)
            self._finish(last_t)
        if self.capture.error is not None:
            raise self.capture.error
        return self.stats

    def stop(self) -> None:
        self.stop_event.set()

    def step(self, frame: Frame) -> None:
        """One frame through gate, detector and tracker."""
        self.stats.frames += 1
        self.stats.last_frame_mono = time.monotonic()
        self._frame_shape(frame)
        if self._should_detect(frame):
            detections = self._detect(frame)
            self.rate.ran(frame.time)
            self._last_detect_t = frame.time
            self.stats.detections_run += 1
            self.stats.last_detect_mono = time.monotonic()
            self.stats.detect_latency_s = self.detector.last_latency
            ended = self.tracker.update(detections, frame.time)
            self._observe(frame)
            self._announce(frame.time)
            self._close(ended)
        self._notify(frame)
        count = self.counts.due(frame.time)
        if count is not None:
            self._emit("count", count)

    # -- named steps --------------------------------------------------------------------
    def _notify(self, frame: Frame) -> None:
        for observer in self.observers:
            try:
                observer(frame, self.tracker.tracks)
            except Exception:  # an observer's problem must never stop detection
                log.exception("frame observer %r failed", observer)

    def _frame_shape(self, frame: Frame) -> None:
        """Tracker and lines measure in the frame's proportions: learn them once."""
        if self._aspect is None:
            h, w = frame.detect_image.shape[:2]
            self._aspect = w / h
            self.tracker.aspect = self._aspect
            self.lines.set_aspect(self._aspect)

    def _should_detect(self, frame: Frame) -> bool:
        """Rate first (by frame time), then the motion gate, which sees every frame so its
        background keeps learning (and, with regions, says where things move)."""
        watch = self.cfg.motion.enabled or self.cfg.detector.regions.enabled
        moving = self.gate.update(frame.detect_image) if watch else True
        if not self.rate.due(frame.time):
            return False
        if not self.cfg.motion.enabled:
            return True
        stale = (
            self._last_detect_t is None
            or frame.time - self._last_detect_t >= self.cfg.motion.keepalive_s
        )
        return moving or stale

    def _detect(self, frame: Frame) -> list[Detection]:
        image = frame.detect_image
        if not self.cfg.detector.regions.enabled:
            return self.detector.detect(image)
        h, w = image.shape[:2]
        tracks = [tr.box for tr in self.tracker.tracks]
        plan = self.regions.plan(w, h, self.gate.boxes(), tracks, frame.time)
        return self.detector.detect_regions(image, plan)

    def _observe(self, frame: Frame) -> None:
        """What each live track did this round: zones, line crossings, its colour."""
        for track in self.tracker.tracks:
            self.builder.observe(track)
            for crossing in self.lines.observe(track, frame.time):
                if track.event_id is not None:  # announced: counts now, else when announced
                    self.counts.add_crossing(crossing)
            if track.best_time == frame.time:
                track.colour = colour_of(frame.image, track.best_box)

    def _announce(self, t: float) -> None:
        for track in self.tracker.tracks:
            if (
                track.confirmed
                and track.event_id is None
                and track.best_score >= self.cfg.tracker.event_score
                and track.peak_size >= self.cfg.tracker.min_size
            ):
                self.counts.add(track.label, t)
                self._emit("event", self.builder.message(track, EventPhase.START))
                for line, direction in track.lines.items():
                    self.counts.add_crossing(Crossing(line, direction, track.label, t))

    def _close(self, ended: list[Track]) -> None:
        for track in ended:
            self.lines.forget(track)
            if track.event_id is not None:
                self._emit("event", self.builder.message(track, EventPhase.END))

    def _finish(self, last_t: float | None) -> None:
        self._close(self.tracker.flush())
        if last_t is not None:
            count = self.counts.close(last_t)
            if count is not None and (count.counts or count.lines):
                self._emit("count", count)
        for sink in self.sinks:
            sink.close()

    def _emit(self, kind: str, msg: Message) -> None:
        if kind == "event":
            self.stats.events += 1
        for sink in self.sinks:
            sink.publish(kind, msg)
