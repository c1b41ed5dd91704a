"""The detection rate: at most ``detector.max_fps`` rounds a second, judged by frame time.

Frame times, not the wall clock, decide, so a file played as fast as the machine goes gives
the same rounds as the same file at the camera's pace, and a box that falls behind does not
bunch its rounds together when it catches up.
"""

from __future__ import annotations

# Frame times jitter by a fraction of a millisecond; a round a hair early still counts.
SLACK_S = 0.002


class DetectionRate:
    """Says which frames are due for a detector round."""

    def __init__(self, max_fps: float) -> None:
        self.period = 1.0 / max_fps if max_fps > 0 else 0.0
        self._next: float | None = None

    def due(self, t: float) -> bool:
        """Is the frame taken at ``t`` due for a round (rate allowing)?"""
        return self.period == 0.0 or self._next is None or t >= self._next - SLACK_S

    def ran(self, t: float) -> None:
        """A round ran on the frame taken at ``t``: the next is one period after the last slot.

        Slots stay on a fixed grid (a 29.97 fps camera at 5 rounds a second gets every sixth
        frame, not a drift towards every seventh); a gap longer than a period starts anew.
        """
        if self.period == 0.0:
            return
        if self._next is None or t - self._next >= self.period:
            self._next = t + self.period
        else:
            self._next += self.period
