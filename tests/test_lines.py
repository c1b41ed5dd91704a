"""Counting lines: both directions, a touch that is no crossing, a track that crosses twice."""

from __future__ import annotations

import pytest

from roadside.agent.events.counts import CountWindow
from roadside.agent.events.lines import LineCounter
from roadside.agent.vision.decoders import Detection
from roadside.agent.vision.tracker import Tracker
from roadside.config.agent import CountingLine, TrackerConfig, parse_config
from roadside.errors import ConfigError

LEVEL = CountingLine(name="mid", points=((0.0, 0.5), (1.0, 0.5)))
UPRIGHT = CountingLine(name="door", points=((0.5, 0.2), (0.5, 0.8)))


def walk(path: list[tuple[float, float] | None], lines: list[CountingLine], label: str = "car"):
    """One object along ``path`` (box centres, None where it is not seen), 5 rounds a
    second; returns its crossings."""
    tracker = Tracker(TrackerConfig(confirm_hits=1))
    counter = LineCounter(lines, tracker.aspect)
    found = []
    for k, point in enumerate(path):
        t = k * 0.2
        dets = []
        if point is not None:
            x, y = point
            dets = [Detection(label, 0.9, (x - 0.03, y - 0.03, x + 0.03, y + 0.03))]
        tracker.update(dets, t)
        for track in tracker.tracks:
            found += counter.observe(track, t)
    return found


def steps(a: tuple[float, float], b: tuple[float, float], n: int) -> list[tuple[float, float]]:
    return [(a[0] + (b[0] - a[0]) * k / n, a[1] + (b[1] - a[1]) * k / n) for k in range(n + 1)]


@pytest.mark.parametrize(
    ("start", "end", "line", "direction"),
    [
        ((0.4, 0.2), (0.45, 0.8), LEVEL, "S"),
        ((0.45, 0.8), (0.4, 0.2), LEVEL, "N"),
        ((0.2, 0.4), (0.8, 0.5), UPRIGHT, "E"),
        ((0.8, 0.5), (0.2, 0.4), UPRIGHT, "W"),
    ],
)
def test_crossings_in_both_directions(start, end, line, direction) -> None:
    found = walk(steps(start, end, 12), [line], "person")
    assert [(c.line, c.direction, c.label) for c in found] == [(line.name, direction, "person")]


def test_a_track_that_touches_the_line_and_goes_back_is_not_counted() -> None:
    path = steps((0.3, 0.2), (0.3, 0.5), 6) + steps((0.3, 0.5), (0.3, 0.2), 6)[1:]
    assert walk(path, [LEVEL]) == []


def test_a_track_that_crosses_twice_counts_once() -> None:
    """Down across the line, then back up: one crossing, the first (a person dithering on a
    line, or a car reversing, must not count many)."""
    down = steps((0.3, 0.2), (0.3, 0.62), 14)
    turn = [(0.3, 0.635), (0.3, 0.64), (0.3, 0.64), (0.3, 0.635)]
    path = down + turn + steps((0.3, 0.62), (0.3, 0.2), 14)
    found = walk(path, [LEVEL])
    assert [c.direction for c in found] == ["S"]


def test_a_path_beside_the_line_ends_is_no_crossing() -> None:
    """The upright line stops at y = 0.8: passing below its end is not crossing it."""
    assert walk(steps((0.2, 0.9), (0.8, 0.9), 10), [UPRIGHT]) == []


def test_counts_carry_crossings_per_line_class_and_direction() -> None:
    window = CountWindow(60.0)
    for c in walk(steps((0.4, 0.2), (0.45, 0.8), 12), [LEVEL, UPRIGHT]):
        window.add_crossing(c)
    window.add("car", 1.0)
    msg = window.close(2.0)
    assert msg is not None and msg.lines == {"mid": {"car": {"S": 1}}}
    assert msg.counts == {"car": 1}


def test_line_config_is_checked(tmp_path) -> None:
    base = {"device": "box", "source": {"kind": "file", "path": "x.mp4"}}
    with pytest.raises(ConfigError, match="two points must be apart"):
        parse_config(
            {**base, "events": {"lines": [{"name": "a", "points": [[0.5, 0.5], [0.5, 0.5]]}]}}
        )
    with pytest.raises(ConfigError, match="used twice"):
        line = {"name": "a", "points": [[0, 0.5], [1, 0.5]]}
        parse_config({**base, "events": {"lines": [line, line]}})
    with pytest.raises(ConfigError, match=r"events\.lines\.0\.points"):
        parse_config({**base, "events": {"lines": [{"name": "a", "points": [[0, 1.5], [1, 0.5]]}]}})


def test_jitter_of_the_box_across_the_line_is_no_crossing() -> None:
    """A car waiting at a stop line drawn under it: its detected centre jitters by a fifth of
    its size either side of the line (the detector's usual jitter), then it backs away. The
    centre was never clearly beyond: no crossing."""
    wait = [(0.3, 0.484), (0.3, 0.516)] * 4  # the box is 0.06 high: size 0.08 units
    path = steps((0.3, 0.3), (0.3, 0.484), 6) + wait + steps((0.3, 0.484), (0.3, 0.3), 6)[1:]
    assert walk(path, [LEVEL]) == []


def test_a_track_that_jumps_across_the_line_is_no_crossing() -> None:
    """A person standing left of a doorway line is hidden for a second; then the track's
    detection is one and a half of their sizes away on the other side (someone else, in a
    crowd). The track goes on, but that change of side is no crossing."""
    path: list[tuple[float, float] | None] = [(0.465, 0.5)] * 6 + [None] * 5
    path += [(0.535, 0.5)] * 4
    assert walk(path, [UPRIGHT], "person") == []
    # walking the same way across, the track follows and the crossing counts
    found = walk(steps((0.465, 0.5), (0.535, 0.5), 6), [UPRIGHT], "person")
    assert [c.direction for c in found] == ["E"]
