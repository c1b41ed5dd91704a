"""Counting lines: a track's centre crossing a named line counts once, with its direction.

A line is two points in normalised frame coordinates. A crossing is a change of side of the
centre of the track's detected box between two rounds that saw it (never a prediction: a
filtered centre overshoots where an object stops), where the path between the two centres meets
the line between its two ends. A centre that reaches the line and goes back is no crossing
(the side is that of the last centre off the line), and a track counts once per line: a
person dithering on the line, or a track that comes back, is one crossing, in the direction
of the first. A side changed by a jump (the detection far from where the tracker expected
the object: a track taken over by someone else in a crowd) is no crossing.

The direction is the compass point the object moves to across the line, taken square to the
line as it appears in the picture: a level line has S (down the picture) and N; an upright
one E and W.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from roadside.agent.vision.motionfilter import MEASURE_POS
from roadside.agent.vision.tracker import Track
from roadside.config.agent import CountingLine

# A centre within this many of the object's sizes of a line is on it, neither side: jitter
# of the detected box on a line is no crossing, and a crossing is counted once the centre is
# clearly beyond. Two standard deviations of the detector's jitter of a box's centre (the
# tracker's measurement noise): a centre nearer the line than that may be on either side.
BAND = 2 * MEASURE_POS
# A change of side made by a detection further than this many sizes from where the tracker
# expected the object is no crossing: in a crowd that is a track re-identified on someone
# else (its person hidden, a neighbour inside its gate), not one person walking across. An
# object followed across a line lands within a fraction of its size of the prediction.
SURE = 1.0
_COMPASS = ("N", "NE", "E", "SE", "S", "SW", "W", "NW")


def compass(dx: float, dy: float) -> str:
    """Compass point of a move in the picture (N = up), in square units."""
    angle = math.degrees(math.atan2(dx, -dy)) % 360
    return _COMPASS[int((angle + 22.5) // 45) % 8]


@dataclass(frozen=True)
class Crossing:
    line: str
    direction: str
    label: str
    t: float


class _Line:
    """One line in square units (x scaled by the frame's aspect)."""

    def __init__(self, cfg: CountingLine, aspect: float) -> None:
        (ax, ay), (bx, by) = cfg.points
        self.name = cfg.name
        self.a = (ax * aspect, ay)
        self.d = ((bx - ax) * aspect, by - ay)
        self.length = math.hypot(*self.d)
        # Crossing from the left of a->b (side -1) to its right (side +1) moves along +n.
        self.forward = compass(-self.d[1], self.d[0])
        self.backward = compass(self.d[1], -self.d[0])

    def side(self, p: tuple[float, float], band: float = 0.0) -> int:
        """-1 or +1, or 0 within ``band`` (square units) of the line."""
        cross = self.d[0] * (p[1] - self.a[1]) - self.d[1] * (p[0] - self.a[0])
        distance = cross / self.length
        if abs(distance) <= max(band, 1e-12):
            return 0
        return 1 if distance > 0 else -1

    def meets(self, p: tuple[float, float], q: tuple[float, float]) -> bool:
        """Does the path p -> q meet the line between its two ends?"""
        rx, ry = q[0] - p[0], q[1] - p[1]
        denom = self.d[0] * ry - self.d[1] * rx
        if abs(denom) < 1e-15:
            return False
        # p + s r = a + u d, so u = ((p - a) x r) / (d x r): where along the line, 0..1 between
        # its ends (the change of side already puts the meeting between p and q)
        u = ((p[0] - self.a[0]) * ry - (p[1] - self.a[1]) * rx) / denom
        return -1e-9 <= u <= 1 + 1e-9


class LineCounter:
    """Watches live tracks round after round and reports each track's crossings once."""

    def __init__(self, lines: list[CountingLine], aspect: float = 16 / 9) -> None:
        self._cfg = lines
        self._lines = [_Line(c, aspect) for c in lines]
        self.aspect = aspect
        # track id -> per line: the last centre seen off the line, and its side
        self._anchor: dict[int, dict[str, tuple[tuple[float, float], int]]] = {}

    def __bool__(self) -> bool:
        return bool(self._lines)

    def set_aspect(self, aspect: float) -> None:
        """The frame's width / height (known from the first frame)."""
        if aspect != self.aspect:
            self.aspect = aspect
            self._lines = [_Line(c, aspect) for c in self._cfg]
            self._anchor.clear()

    def observe(self, track: Track, t: float) -> list[Crossing]:
        """New crossings of ``track`` since its last round (each line at most once a track)."""
        if not self._lines or track.last_seen != t:
            return []  # only detected places count, never a prediction across a miss
        cx, cy = track.seen_centre
        p = (cx * self.aspect, cy)
        anchors = self._anchor.setdefault(track.track_id, {})
        found = []
        band = BAND * track.motion.size
        for line in self._lines:
            side = line.side(p, band)
            if side == 0:
                continue
            held = anchors.get(line.name)
            anchors[line.name] = (p, side)
            if held is None or held[1] == side or line.name in track.lines:
                continue
            if track.surprise <= SURE and line.meets(held[0], p):
                direction = line.forward if side > 0 else line.backward
                track.lines[line.name] = direction
                found.append(Crossing(line.name, direction, track.label, t))
        return found

    def forget(self, track: Track) -> None:
        """The track ended."""
        self._anchor.pop(track.track_id, None)
