"""Builds compact event messages from tracks."""

from __future__ import annotations

import math

from roadside.agent.clock import ClockWatch
from roadside.agent.vision.tracker import Track
from roadside.agent.vision.zones import ZoneMap
from roadside.ids import new_id
from roadside.wire.messages import EventMsg, EventPhase

_COMPASS = ("N", "NE", "E", "SE", "S", "SW", "W", "NW")
MIN_TRAVEL = 0.03  # fraction of the frame an object must move to have a direction


def direction(dx: float, dy: float) -> str | None:
    """Compass direction of a move in the image (N = up), None when it barely moved."""
    if math.hypot(dx, dy) < MIN_TRAVEL:
        return None
    angle = math.degrees(math.atan2(dx, -dy)) % 360
    return _COMPASS[int((angle + 22.5) // 45) % 8]


def _r(value: float, digits: int) -> float:
    return round(float(value), digits)


class EventBuilder:
    """Announces confirmed tracks and closes ended ones, as EventMsg."""

    def __init__(self, zones: ZoneMap | None = None, clock: ClockWatch | None = None) -> None:
        self.zones = zones or ZoneMap([])
        # Events seen before NTP synchronised are marked unsynced: their times may be far off.
        self.clock = clock

    def observe(self, track: Track) -> None:
        """Note the zones a live track is in (called every frame it is updated)."""
        if self.zones:
            track.zones.update(self.zones.at(*track.centre))

    def message(self, track: Track, phase: EventPhase) -> EventMsg:
        if track.event_id is None:
            track.event_id = new_id(track.first_seen)
        x0, y0, x1, y1 = track.best_box
        cx, cy = track.centre
        fx, fy = track.first_centre
        return EventMsg(
            id=track.event_id,
            phase=phase,
            label=track.label,
            score=_r(track.best_score, 2),
            first_seen=_r(track.first_seen, 2),
            last_seen=_r(track.last_seen, 2),
            box=(_r(x0, 3), _r(y0, 3), _r(x1 - x0, 3), _r(y1 - y0, 3)),
            track=track.track_id,
            direction=direction(cx - fx, cy - fy),
            zones=sorted(track.zones) or None,
            unsynced=None if self.clock is None or self.clock.synced else 1,
            colour=track.colour,
        )
