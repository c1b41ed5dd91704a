"""When ``events`` mode records: from an event's start until ``post_roll_s`` after the last
event ended, and for as long as any event is still going on."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

MAX_EVENT_S = 3600.0  # an event with no end message after this long is taken as ended


class EventWindow:
    """Open events (by id) and the end of the latest; times are monotonic seconds.

    Threading: the recorder thread only.
    """

    def __init__(self, post_roll_s: float) -> None:
        self.post_roll_s = post_roll_s
        self.last_end = float("-inf")
        self._open: dict[str, float] = {}  # event id -> start

    @property
    def open_events(self) -> int:
        return len(self._open)

    def start(self, event_id: str, t0: float) -> None:
        self._open.setdefault(event_id, t0)

    def end(self, event_id: str, t1: float) -> None:
        self._open.pop(event_id, None)
        self.last_end = max(self.last_end, t1)

    def wants(self, t: float) -> bool:
        """Should the picture taken at ``t`` be on disk?"""
        self._expire(t)
        return bool(self._open) or t <= self.last_end + self.post_roll_s

    def _expire(self, t: float) -> None:
        stale = [eid for eid, t0 in self._open.items() if t - t0 > MAX_EVENT_S]
        for eid in stale:
            log.warning(
                "event %s has had no end for %.0f s: recording it no longer", eid, MAX_EVENT_S
            )
            self.end(eid, t)
