"""A Kalman filter for one tracked box: centre and size, each with a constant velocity.

Coordinates are *square units*: x is scaled by the frame's aspect ratio so one unit is the
frame height on both axes, and distances mean the same across and along the picture. Every
noise is proportional to the box's own size (``s = sqrt(w * h)``), so a distant car of 15 px
and a near one of 150 px are judged alike: ``sizes`` below are that size.

Time steps are real seconds between detections, not frames, so the same filter serves a
detector at the camera's rate and one at 5 detections a second, and predicts across misses.
"""

from __future__ import annotations

import numpy as np

# Detector jitter: a box's centre wanders by a tenth of its size or more between frames (the
# SSD's squeezed boxes more than YOLOX's), its width and height by about as much.
MEASURE_POS = 0.15  # sizes
MEASURE_SIZE = 0.12  # fraction of the width or height
# How fast an object may change speed in the picture beyond what perspective explains (the
# prediction scales speed with size, see predict): white-noise acceleration in sizes/s^2. A car
# braking, a person turning; too little and a car speeding up towards the camera is lost in
# the near half at 5 rounds a second, too much and gates grow wide enough to swap people in
# a crowd.
ACCEL_POS = 3.0
ACCEL_SIZE = 0.3  # fraction of the size per s^2
# What is known of a new object's speed: nothing but that it moves at most a few of its own
# sizes a second (a car seen side on at 50 km/h crosses three of its lengths a second).
START_SPEED = 2.5  # sizes/s, one standard deviation
START_GROWTH = 0.3  # fraction of the size per second

_H = np.eye(4, 8)  # the detector sees the box, not its velocity


class MotionFilter:
    """State [x, y, w, h, vx, vy, vw, vh] of one box in square units, with its covariance."""

    __slots__ = ("P", "t", "x")

    def __init__(self, box: np.ndarray, t: float) -> None:
        """``box`` is (cx, cy, w, h) in square units, seen at time ``t`` (seconds)."""
        self.x = np.concatenate([box.astype(np.float64), np.zeros(4)])
        s = self.size
        w, h = box[2], box[3]
        self.P = np.diag(
            [
                (MEASURE_POS * s) ** 2,
                (MEASURE_POS * s) ** 2,
                (MEASURE_SIZE * w) ** 2,
                (MEASURE_SIZE * h) ** 2,
                (START_SPEED * s) ** 2,
                (START_SPEED * s) ** 2,
                (START_GROWTH * w) ** 2,
                (START_GROWTH * h) ** 2,
            ]
        )
        self.t = t

    @property
    def size(self) -> float:
        return float(np.sqrt(max(self.x[2], 1e-6) * max(self.x[3], 1e-6)))

    @property
    def box(self) -> np.ndarray:
        """(cx, cy, w, h) now, in square units."""
        return self.x[:4].copy()

    def predict(self, t: float) -> None:
        """Move the state to time ``t`` (no-op for a time not after the last one)."""
        dt = t - self.t
        if dt <= 0:
            return
        F = np.eye(8)
        F[:4, 4:] = np.eye(4) * dt
        s, w, h = self.size, self.x[2], self.x[3]
        q = np.array([ACCEL_POS * s, ACCEL_POS * s, ACCEL_SIZE * w, ACCEL_SIZE * h]) ** 2
        Q = np.zeros((8, 8))
        idx = np.arange(4)
        Q[idx, idx] = q * dt**3 / 3
        Q[idx, idx + 4] = Q[idx + 4, idx] = q * dt**2 / 2
        Q[idx + 4, idx + 4] = q * dt
        before = self.size
        self.x = F @ self.x
        self.x[2:4] = np.maximum(self.x[2:4], 1e-4)  # a box never shrinks to nothing
        # Perspective: an object growing in the picture is coming nearer, and its speed in the
        # picture grows as the square of its size (speed ~ 1/distance^2, size ~ 1/distance).
        # Apply that to the speed over the step, and its half to the distance covered.
        gain = min((self.size / before) ** 2, 4.0)
        self.x[0:2] += self.x[4:6] * dt * (gain - 1) / 2
        self.x[4:6] *= gain
        self.P = F @ self.P @ F.T + Q
        self.t = t

    def _measurement_noise(self) -> np.ndarray:
        s, w, h = self.size, self.x[2], self.x[3]
        return np.diag(
            [(MEASURE_POS * s) ** 2, (MEASURE_POS * s) ** 2, (MEASURE_SIZE * w) ** 2,
             (MEASURE_SIZE * h) ** 2]
        )  # fmt: skip

    def position_spread(self) -> np.ndarray:
        """Covariance of where a detection of this object may appear: 2x2, square units."""
        return self.P[:2, :2] + self._measurement_noise()[:2, :2]

    def update(self, z: np.ndarray) -> None:
        """Correct the state with a detected box (cx, cy, w, h) at the current time."""
        S = self.P[:4, :4] + self._measurement_noise()
        K = self.P[:, :4] @ np.linalg.inv(S)
        self.x = self.x + K @ (z - self.x[:4])
        self.x[2:4] = np.maximum(self.x[2:4], 1e-4)
        self.P = (np.eye(8) - K @ _H) @ self.P

    @property
    def velocity(self) -> np.ndarray:
        """(vx, vy) of the centre, square units per second."""
        return self.x[4:6].copy()
