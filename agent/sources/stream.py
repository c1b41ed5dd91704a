"""USB/V4L2 cameras, RTSP IP cameras and GStreamer pipelines through OpenCV.

Private IP cameras at schools and shops drop their streams often; the source reconnects with
exponential backoff (with jitter, capped) and never gives up while the agent runs.
"""

from __future__ import annotations

import logging
import threading
import time

import cv2

from roadside.agent.frames import Frame
from roadside.backoff import Backoff
from roadside.config.agent import SourceConfig
from roadside.errors import SourceError

log = logging.getLogger(__name__)

RECONNECT_MIN_S = 0.5  # first wait after a stream is lost


class StreamSource:
    """A live OpenCV capture that reconnects by itself."""

    live = True

    def __init__(
        self,
        target: str | int,
        api: int = cv2.CAP_ANY,
        size: tuple[int, int] | None = None,
        fps: float | None = None,
        reconnect_max_s: float = 60.0,
    ) -> None:
        self.target = target
        self.api = api
        self.size = size
        self.fps = fps or 15.0
        self.reconnect_max_s = reconnect_max_s
        self.reconnects = 0
        # Grows while reconnects yield no frames; a camera that accepts the connection and
        # then sends nothing must not be hammered every half second. Reset by a frame.
        self._backoff = Backoff(min(RECONNECT_MIN_S, reconnect_max_s), reconnect_max_s)
        self._cap: cv2.VideoCapture | None = None
        self._index = 0
        # Set by close() from another thread to stop a reconnect wait early.
        self._closed = threading.Event()

    @classmethod
    def from_config(cls, cfg: SourceConfig) -> StreamSource:
        if cfg.kind == "rtsp":
            return cls(cfg.url or "", cv2.CAP_FFMPEG, reconnect_max_s=cfg.reconnect_max_s)
        if cfg.pipeline:
            return cls(cfg.pipeline, cv2.CAP_GSTREAMER, reconnect_max_s=cfg.reconnect_max_s)
        path = cfg.path or "0"
        target: str | int = int(path) if path.isdigit() else path
        return cls(
            target,
            cv2.CAP_V4L2 if isinstance(target, int) or str(target).startswith("/dev/") else 0,
            size=(cfg.width, cfg.height),
            fps=cfg.fps,
            reconnect_max_s=cfg.reconnect_max_s,
        )

    def _connect(self) -> bool:
        cap = cv2.VideoCapture(self.target, self.api)
        if not cap.isOpened():
            cap.release()
            return False
        if self.size:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
            cap.set(cv2.CAP_PROP_FPS, self.fps)
        reported = cap.get(cv2.CAP_PROP_FPS)
        if 1.0 <= reported <= 240.0:
            self.fps = reported
        self._cap = cap
        return True

    def open(self) -> None:
        if not self._connect():
            raise SourceError(f"cannot open camera {self.target!r}")

    def _reconnect(self) -> None:
        while not self._closed.is_set():
            if self._cap is not None:
                self._cap.release()
                self._cap = None
            wait = self._backoff.next()
            log.warning("stream %s lost; reconnecting in %.1f s", self.target, wait)
            if self._closed.wait(wait):
                return
            if self._connect():
                self.reconnects += 1
                log.warning("stream %s reopened (%d reconnects)", self.target, self.reconnects)
                return

    def read(self) -> Frame | None:
        while not self._closed.is_set():
            if self._cap is not None:
                ok, image = self._cap.read()
                if ok and image is not None:
                    self._backoff.reset()
                    frame = Frame(image, time.time(), time.monotonic(), self._index)
                    self._index += 1
                    return frame
            self._reconnect()
        return None

    def close(self) -> None:
        self._closed.set()
        if self._cap is not None:
            self._cap.release()
            self._cap = None
