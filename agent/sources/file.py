"""A video file played as a camera: once or looped, at its own pace or as fast as asked."""

from __future__ import annotations

import time
from pathlib import Path

import cv2

from roadside.agent.frames import Frame
from roadside.errors import SourceError


class FileSource:
    """Frames from a video file.

    Capture times follow the file's own timeline from the moment it was opened
    (start + index / fps), so a file played fast yields the same times as one played at pace.
    """

    live = False

    def __init__(self, path: str, loop: bool = False, pace: str = "native") -> None:
        self.path = Path(path)
        self.loop = loop
        self.pace = pace
        self.fps = 0.0
        self._cap: cv2.VideoCapture | None = None
        self._index = 0
        self._t0 = 0.0
        self._m0 = 0.0

    def open(self) -> None:
        if not self.path.is_file():
            raise SourceError(f"video file not found: {self.path}")
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise SourceError(f"cannot open video file {self.path} (not a video OpenCV can read)")
        self._cap = cap
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if 1.0 <= fps <= 240.0 else 25.0
        self._t0 = time.time()
        self._m0 = time.monotonic()
        self._index = 0

    def read(self) -> Frame | None:
        if self._cap is None:
            raise SourceError("source not open")
        ok, image = self._cap.read()
        if not ok:
            if not self.loop or self._index == 0:
                return None
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._cap.read()
            if not ok:
                return None
        offset = self._index / self.fps
        if self.pace == "native":
            delay = self._m0 + offset - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        frame = Frame(image, self._t0 + offset, self._m0 + offset, self._index)
        self._index += 1
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
