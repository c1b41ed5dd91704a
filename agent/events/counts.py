"""Per-class counts of confirmed objects over fixed intervals."""

from __future__ import annotations

from collections import Counter

from roadside.ids import new_id
from roadside.wire.messages import CountMsg


class CountWindow:
    """Counts confirmed tracks by class and closes a window every ``interval`` seconds."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.start: float | None = None
        self.counts: Counter[str] = Counter()

    def add(self, label: str, t: float) -> None:
        if self.start is None:
            self.start = t
        self.counts[label] += 1

    def due(self, t: float) -> CountMsg | None:
        """The closed window's message once ``interval`` has passed since it opened."""
        if self.start is None:
            self.start = t
            return None
        if t - self.start < self.interval:
            return None
        return self.close(t)

    def close(self, t: float) -> CountMsg | None:
        """Close the current window now (also at shutdown); None when it never opened."""
        if self.start is None:
            return None
        msg = CountMsg(
            id=new_id(t),
            start=round(self.start, 2),
            end=round(t, 2),
            counts=dict(sorted(self.counts.items())),
        )
        self.start, self.counts = t, Counter()
        return msg
