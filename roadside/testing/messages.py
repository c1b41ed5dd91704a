"""Wire messages as a box sends them, with fresh ids and plausible values."""

from __future__ import annotations

import time

from roadside.agent.protocol import CountMsg, EventMsg, HealthMsg, StatusMsg
from roadside.ids import new_id


def event(track: int, phase: str = "s") -> EventMsg:
    """One event message of a car on ``track`` (``phase`` "s" start, "e" end), now."""
    now = time.time()
    return EventMsg(
        id=new_id(),
        k=phase,
        c="car",
        s=0.81,
        t0=round(now, 2),
        t1=round(now + 1, 2),
        b=(0.412, 0.288, 0.071, 0.064),
        tr=track,
        dir="SE",
        z=["left-lanes"],
    )


def event_pair(t: float, cls: str = "car", track: int = 1) -> tuple[EventMsg, EventMsg]:
    """The start and end messages of one event at ``t`` (shared id)."""
    eid = new_id(t)
    start = EventMsg(
        id=eid, k="s", c=cls, s=0.6, t0=t, t1=t + 0.5, b=(0.1, 0.2, 0.1, 0.1), tr=track
    )
    end = EventMsg(
        id=eid,
        k="e",
        c=cls,
        s=0.9,
        t0=t,
        t1=t + 4.0,
        b=(0.3, 0.2, 0.1, 0.1),
        tr=track,
        dir="E",
        z=["left-lanes"],
    )
    return start, end


def status(st: str, why: str | None = None, t: float | None = None) -> StatusMsg:
    return StatusMsg(
        id=new_id(), st=st, why=why, t=t or time.time(), sw="0.1.0", m="ssd_mobilenet_v1_coco_quant"
    )


def health(**fields: object) -> HealthMsg:
    return HealthMsg(id=new_id(), t=time.time(), **fields)


def count(t0: float, n: dict[str, int]) -> CountMsg:
    return CountMsg(id=new_id(t0), t0=t0, t1=t0 + 60, n=n)
