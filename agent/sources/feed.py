"""The capture thread and the bounded hand-off between it and the pipeline."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence

from roadside.agent.frames import Frame
from roadside.agent.sources.base import FrameSource

log = logging.getLogger(__name__)

FrameTap = Callable[[Frame], None]


class FrameFeed:
    """A small bounded buffer of frames between capture and detection.

    Live sources use ``newest_wins``: when detection falls behind, the oldest waiting frame is
    dropped (and counted), so capture never blocks and detection always sees the present.
    A file played fast uses blocking mode instead, so every frame is processed (tests, bench).

    Threading: one producer (capture thread) and one consumer (pipeline thread); the deque and
    flags are guarded by one Condition.
    """

    def __init__(self, size: int = 2, newest_wins: bool = True) -> None:
        self.size = size
        self.newest_wins = newest_wins
        self.dropped = 0
        self._frames: collections.deque[Frame] = collections.deque()
        self._cond = threading.Condition()
        self._ended = False

    def put(self, frame: Frame, stop: threading.Event) -> None:
        with self._cond:
            while len(self._frames) >= self.size:
                if self.newest_wins:
                    self._frames.popleft()
                    self.dropped += 1
                    break
                if stop.is_set():
                    return
                self._cond.wait(0.1)
            self._frames.append(frame)
            self._cond.notify_all()

    def end(self) -> None:
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def get(self, timeout: float) -> Frame | None:
        """The next frame, or None on timeout or at the end of the stream (see ``ended``)."""
        with self._cond:
            if not self._frames and not self._ended:
                self._cond.wait(timeout)
            if not self._frames:
                return None
            frame = self._frames.popleft()
            self._cond.notify_all()
            return frame

    @property
    def ended(self) -> bool:
        with self._cond:
            return self._ended and not self._frames


class CaptureThread(threading.Thread):
    """Reads the source as fast as it gives frames, hands each to the taps and to the feed.

    Taps (the recorder, the IR brightness meter) must not block: each owns its own queue.
    """

    def __init__(
        self,
        source: FrameSource,
        feed: FrameFeed,
        stop: threading.Event,
        taps: Sequence[FrameTap] = (),
    ) -> None:
        super().__init__(name="capture", daemon=True)
        self.source = source
        self.feed = feed
        self.stop = stop
        self.taps = tuple(taps)
        self.frames = 0
        self.last_frame_mono = time.monotonic()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                frame = self.source.read()
                if frame is None:
                    break
                self.frames += 1
                self.last_frame_mono = time.monotonic()
                for tap in self.taps:
                    tap(frame)
                self.feed.put(frame, self.stop)
        except Exception as exc:  # the pipeline reports it and stops; never a silent death
            log.exception("capture failed")
            self.error = exc
        finally:
            self.feed.end()
