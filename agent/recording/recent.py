"""Clips of the last few seconds: wait for the segment being written to close, then cut.

Only closed segments are cut (their index rows are final). An officer who asks for "the
last minute" while the box records would otherwise get everything except the part they care
most about; so a range that reaches past the newest closed segment waits, while a segment is
in progress, until the segment holding the range's end has closed (at most one segment
length plus a margin), and is then cut as usual.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from roadside.agent.recording.clipcut import ClipCutter, ClipResult

log = logging.getLogger(__name__)

MARGIN_S = 5.0  # closing and indexing a segment, a slow card
POLL_S = 0.25
EPSILON_S = 1e-3  # rounding of stored times: a segment ends exactly where the next one starts


class RecentClips:
    """A ``ClipMaker`` over a recorder: ``cut`` as ``ClipCutter.cut``, after any wait for the
    footage still being written. ``writing()`` says whether a segment is in progress.

    Threading: called from the command job thread; ``writing`` reads one reference of the
    recorder thread's state (atomic), and each index read opens its own connection.
    """

    def __init__(
        self,
        cutter: ClipCutter,
        segment_s: float,
        writing: Callable[[], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cutter = cutter
        self.segment_s = segment_s
        self.writing = writing
        self.clock = clock

    def cut(self, start: float, end: float, out: Path, quality: str = "original") -> ClipResult:
        self.wait_for(end)
        return self.cutter.cut(start, end, out, quality)

    def wait_for(self, end: float) -> bool:
        """Wait until the closed segments hold the footage up to ``end``: all of it, since a
        cut covers closed segments only. A range that reaches into the future waits for at
        most one segment length of it.

        False when it did not come in time (the cut then covers what there is)."""
        asked = self.clock()
        wanted = min(end, asked + self.segment_s)
        deadline = time.monotonic() + max(0.0, wanted - asked) + self.segment_s + MARGIN_S
        while self._closed_until() < wanted - EPSILON_S:
            if not self.writing() or time.monotonic() >= deadline:
                return False
            time.sleep(POLL_S)
        return True

    def retained(self) -> dict[str, Any]:
        """The footage held, for status replies (``ClipCutter.retained``)."""
        return self.cutter.retained()

    def _closed_until(self) -> float:
        ranges = self.cutter.ranges()
        return ranges[-1].end if ranges else float("-inf")
