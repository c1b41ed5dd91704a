"""The unit that flows through the pipeline."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(slots=True)
class Frame:
    """One captured picture and when it was taken.

    ``image`` is BGR (OpenCV's order), full resolution; ``lores`` is an optional smaller copy made
    by the camera itself (picamera2's lores stream), which detection prefers. ``time`` is the
    capture time in seconds since the epoch (wall clock, as the camera saw it); ``mono`` is the
    monotonic clock at capture, immune to wall-clock jumps.
    """

    image: np.ndarray
    time: float
    mono: float
    index: int
    lores: np.ndarray | None = None

    @property
    def detect_image(self) -> np.ndarray:
        return self.lores if self.lores is not None else self.image


class LatestFrame:
    """A capture tap that keeps the newest frame, for snapshots and tamper pictures.

    Threading: called on the capture thread; read anywhere. One reference swap, no copy and no
    lock (assigning and reading one attribute is atomic in Python), so it never slows capture.
    """

    def __init__(self) -> None:
        self.frame: Frame | None = None

    def __call__(self, frame: Frame) -> None:
        self.frame = frame
