"""Wire messages as a box sends them, with fresh ids and plausible values."""

from __future__ import annotations

import time

from roadside.ids import new_id
from roadside.wire.messages import (
    CountMsg,
    EventMsg,
    EventPhase,
    HealthMsg,
    LineCounts,
    OfflineReason,
    Presence,
    StatusMsg,
)


def event(track: int, phase: EventPhase | str = EventPhase.START) -> EventMsg:
    """One event message of a car on ``track`` (``phase`` start or end), now."""
    now = time.time()
    return EventMsg(
        id=new_id(),
        phase=EventPhase(phase),
        label="car",
        score=0.81,
        first_seen=round(now, 2),
        last_seen=round(now + 1, 2),
        box=(0.412, 0.288, 0.071, 0.064),
        track=track,
        direction="SE",
        zones=["left-lanes"],
    )


def event_pair(t: float, cls: str = "car", track: int = 1) -> tuple[EventMsg, EventMsg]:
    """The start and end messages of one event at ``t`` (shared id)."""
    eid = new_id(t)
    start = EventMsg(
        id=eid,
        phase=EventPhase.START,
        label=cls,
        score=0.6,
        first_seen=t,
        last_seen=t + 0.5,
        box=(0.1, 0.2, 0.1, 0.1),
        track=track,
    )
    end = EventMsg(
        id=eid,
        phase=EventPhase.END,
        label=cls,
        score=0.9,
        first_seen=t,
        last_seen=t + 4.0,
        box=(0.3, 0.2, 0.1, 0.1),
        track=track,
        direction="E",
        zones=["left-lanes"],
    )
    return start, end


def status(state: str, reason: str | None = None, at: float | None = None) -> StatusMsg:
    return StatusMsg(
        id=new_id(),
        state=Presence(state),
        reason=None if reason is None else OfflineReason(reason),
        at=at or time.time(),
        software="0.1.0",
        model="ssd_mobilenet_v1_coco_quant",
    )


def health(**fields: object) -> HealthMsg:
    return HealthMsg(id=new_id(), at=time.time(), **fields)  # type: ignore[arg-type]


def count(t0: float, n: dict[str, int], lines: LineCounts | None = None) -> CountMsg:
    """A minute's count; ``lines``: crossings per counting line, class and direction."""
    return CountMsg(id=new_id(t0), start=t0, end=t0 + 60, counts=n, lines=lines)
