"""What goes first when the card fills: the retention policy, as pure decisions.

Segments are evicted oldest first by a key: their start time, plus ``event_bonus_s`` for
segments that overlap an event. With the default bonus (7 days) footage around events
outlives every plain segment younger than a week: in practice it is evicted last, yet a
month-old event does not push out yesterday's continuous footage forever.

``keep_free_bytes`` is checked as each segment closes: the card is shared with the event
outbox and the system, and the recordings must never be what fills it.

``max_age_s`` applies only to footage whose labels can be trusted (recorded with a
synchronised clock, or relabelled after the sync) and only while the clock is synchronised:
a box that boots in 1970 must not conclude that everything is decades old.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from roadside.agent.recording.index import SegmentRecord

TRUSTED_CLOCKS = ("sync", "retimed")


@dataclass(frozen=True)
class RetentionPolicy:
    """The byte budget, optional maximum age and event bonus of one recordings folder."""

    budget_bytes: int
    max_age_s: float | None = None
    event_bonus_s: float = 7 * 86400.0
    keep_free_bytes: int = 0  # free space left on the filesystem for the outbox and system

    def key(self, rec: SegmentRecord) -> float:
        """Smaller goes first."""
        return rec.start + (self.event_bonus_s if rec.has_event else 0.0)

    def excess(self, used_bytes: int) -> int:
        """Bytes to free so that ``used_bytes`` fits the budget (0 when it does)."""
        return max(0, used_bytes - self.budget_bytes)

    def shortfall(self, free_bytes: int) -> int:
        """Bytes to free so that the filesystem keeps ``keep_free_bytes`` free."""
        return max(0, self.keep_free_bytes - free_bytes)

    def pick(
        self, plain: Sequence[SegmentRecord], events: Sequence[SegmentRecord], need_bytes: int
    ) -> list[SegmentRecord]:
        """The segments to evict to free ``need_bytes``, from the oldest of each kind.

        ``plain`` and ``events`` are each sorted oldest first (the index gives them so);
        the two heads are merged by ``key``.
        """
        chosen: list[SegmentRecord] = []
        freed = 0
        i = j = 0
        while freed < need_bytes and (i < len(plain) or j < len(events)):
            take_plain = j >= len(events) or (
                i < len(plain) and self.key(plain[i]) <= self.key(events[j])
            )
            if take_plain:
                rec, i = plain[i], i + 1
            else:
                rec, j = events[j], j + 1
            chosen.append(rec)
            freed += rec.bytes
        return chosen

    def expired(self, records: Iterable[SegmentRecord], now: float) -> list[SegmentRecord]:
        """Segments past ``max_age_s`` (events: past max age + bonus), trusted labels only."""
        if self.max_age_s is None:
            return []
        out = []
        for rec in records:
            if rec.clock not in TRUSTED_CLOCKS:
                continue
            limit = self.max_age_s + (self.event_bonus_s if rec.has_event else 0.0)
            if now - rec.end > limit:
                out.append(rec)
        return out
