"""Per-class counts of objects announced, and line crossings, over fixed intervals."""

from __future__ import annotations

from collections import Counter

from roadside.agent.events.lines import Crossing
from roadside.ids import new_id
from roadside.wire.messages import CountMsg


class CountWindow:
    """Counts events by class, and line crossings by line, class and direction; closes a
    window every ``interval`` seconds."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.start: float | None = None
        self.counts: Counter[str] = Counter()
        self.crossings: Counter[tuple[str, str, str]] = Counter()  # (line, class, direction)

    def add(self, label: str, t: float) -> None:
        if self.start is None:
            self.start = t
        self.counts[label] += 1

    def add_crossing(self, crossing: Crossing) -> None:
        if self.start is None:
            self.start = crossing.t
        self.crossings[(crossing.line, crossing.label, crossing.direction)] += 1

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
            lines=_nest(self.crossings) or None,
        )
        self.start, self.counts, self.crossings = t, Counter(), Counter()
        return msg


def _nest(crossings: Counter[tuple[str, str, str]]) -> dict[str, dict[str, dict[str, int]]]:
    """{line: {class: {direction: n}}}, sorted, as the count message carries it."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for (line, label, direction), n in sorted(crossings.items()):
        out.setdefault(line, {}).setdefault(label, {})[direction] = n
    return out
