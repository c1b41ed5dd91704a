"""Counting accuracy of the real pipeline on the hand-counted clips, at two detection rates.

    python bench/accuracy.py [--pace native|fast] [--rates 0,5] [--clips motorway,arcade]
                             [--model NAME] [--set detector.regions.enabled=false ...]

The agent's pipeline (file source, capture thread, motion gate, rate limit, regions,
detector, tracker, events, counting lines) plays each clip once with the documented defaults,
at the camera's rate (``detector.max_fps = 0``) and at ``max_fps = 5``, and is compared with
the hand counts in ``$ROADSIDE_SHARED/footage/ground_truth.md``:

- motorway_overpass: 31 moving vehicles (35 with the four never wider than ~15 px, which
  ``tracker.min_size`` leaves out on purpose), 18 toward the camera and 13 away; 11 crossings
  of y = 270 (of 540) going down, none up;
- pedestrians_arcade: 8 crossings of x = 400 (of 800) by people, 5 going left (W) and 3 right
  (E), a looser figure (6 to 9); its people are not totalled (the far crowd is uncountable).

Per clip it prints events against the hand count by direction, line crossings against the
hand count, events per real object, process CPU ms per frame, model invokes per frame and the
frames dropped (at camera pace on a loaded machine the pipeline may fall behind: the newest
frame wins, as on a box). ``--pace fast`` feeds every frame as fast as the pipeline takes it;
frame times still come from the file, so the result does not depend on the machine's load.

Last line: ``RESULT count_error=<worst |events/31 - 1| on the vehicle clip over both rates>
line_error=<worst per-direction crossing miss on the vehicle clip> invokes_per_frame=<mean>``.
Targets: count_error <= 0.05, line_error <= 1, people crossings within 2 of the hand count.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from roadside.agent.frames import Frame
from roadside.agent.pipeline import Pipeline
from roadside.agent.sources import open_source
from roadside.agent.vision.detector import Detector
from roadside.agent.vision.tracker import VEHICLES
from roadside.config.agent import AgentConfig, parse_config
from roadside.testing.shared import footage_dir, models_dir
from roadside.wire.messages import CountMsg, EventMsg, EventPhase, Message


@dataclass(frozen=True)
class Clip:
    """A clip with hand counts: what to count, and the counts."""

    key: str
    file: str
    classes: frozenset[str]
    line: tuple[tuple[float, float], tuple[float, float]]
    crossings: dict[str, int]  # direction -> hand count
    objects: int | None = None  # distinct objects, when they can be totalled
    by_way: dict[str, int] = field(default_factory=dict)  # toward / away -> hand count
    toward: frozenset[str] = frozenset()  # event directions that come toward the camera


CLIPS = {
    "motorway": Clip(
        "motorway",
        "motorway_overpass.mp4",
        VEHICLES,
        ((0.0, 0.5), (1.0, 0.5)),
        {"S": 11, "N": 0},
        objects=31,
        by_way={"toward": 18, "away": 13},
        # toward: the main carriageway comes down the picture, the right one down and right;
        # away: the far carriageway goes up and left (mostly left, near the top edge)
        toward=frozenset({"S", "SE", "SW", "E"}),
    ),
    "arcade": Clip(
        "arcade",
        "pedestrians_arcade.mp4",
        frozenset({"person"}),
        ((0.5, 0.0), (0.5, 1.0)),
        {"W": 5, "E": 3},
    ),
}


class Collect:
    """A sink that keeps what the pipeline says."""

    def __init__(self) -> None:
        self.events: list[EventMsg] = []
        self.counts: list[CountMsg] = []

    def publish(self, kind: str, msg: Message) -> None:
        if isinstance(msg, EventMsg) and msg.phase == EventPhase.END:
            self.events.append(msg)
        elif isinstance(msg, CountMsg):
            self.counts.append(msg)

    def close(self) -> None:
        pass


@dataclass
class Outcome:
    clip: Clip
    rate: float
    events: int
    by_way: dict[str, int]
    crossings: dict[str, int]
    frames: int
    dropped: int
    cpu_ms: float
    invokes: float
    wall_s: float
    ends: list[EventMsg] = field(default_factory=list)  # end events of the clip's classes
    start: float = 0.0  # capture time of the clip's first frame

    @property
    def count_error(self) -> float | None:
        if not self.clip.objects:
            return None
        return abs(self.events / self.clip.objects - 1)

    @property
    def line_miss(self) -> int:
        return max(abs(self.crossings.get(d, 0) - n) for d, n in self.clip.crossings.items())


def _value(text: str) -> object:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def config(clip: Clip, rate: float, pace: str, model: str | None, sets: list[str]) -> AgentConfig:
    doc: dict = {
        "device": "bench",
        "data_dir": "var/bench-accuracy",
        "source": {"kind": "file", "path": str(footage_dir() / clip.file), "pace": pace},
        "detector": {"models_dir": str(models_dir()), "max_fps": rate},
        "events": {
            "sinks": [],
            "count_interval_s": 3600.0,
            "lines": [{"name": "mid", "points": [list(p) for p in clip.line]}],
        },
    }
    if model:
        doc["detector"]["model"] = model
    for item in sets:
        key, _, text = item.partition("=")
        *path, last = key.split(".")
        node = doc
        for part in path:
            node = node.setdefault(part, {})
        node[last] = _value(text)
    return parse_config(doc, "bench")


def run(
    clip: Clip,
    rate: float,
    pace: str,
    model: str | None,
    sets: list[str],
    make_detector: Callable[[AgentConfig], Detector] = lambda cfg: Detector(cfg.detector),
) -> Outcome:
    cfg = config(clip, rate, pace, model, sets)
    detector = make_detector(cfg)
    sink = Collect()
    first: list[float] = []

    def note_start(frame: Frame, tracks: object) -> None:
        if not first:
            first.append(frame.time)

    pipeline = Pipeline(cfg, open_source(cfg.source), detector, [sink], observers=[note_start])
    wall, cpu = time.perf_counter(), time.process_time()
    stats = pipeline.run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    pipeline.source.close()
    events = [e for e in sink.events if e.label in clip.classes]
    by_way = {"toward": 0, "away": 0}
    for e in events:
        way = "still" if not e.direction else "toward" if e.direction in clip.toward else "away"
        by_way[way] = by_way.get(way, 0) + 1
    crossings: dict[str, int] = {}
    for count in sink.counts:
        for by_class in (count.lines or {}).values():
            for label, by_dir in by_class.items():
                if label in clip.classes:
                    for direction, n in by_dir.items():
                        crossings[direction] = crossings.get(direction, 0) + n
    frames = max(stats.frames, 1)
    return Outcome(
        clip,
        rate,
        len(events),
        by_way,
        crossings,
        stats.frames,
        pipeline.feed.dropped,
        cpu / frames * 1000,
        detector.invocations / frames,
        wall,
        events,
        first[0] if first else 0.0,
    )


def show(o: Outcome) -> None:
    c = o.clip
    rate = "camera" if o.rate == 0 else f"{o.rate:g}/s"
    cross = " ".join(f"{d} {o.crossings.get(d, 0)}/{n}" for d, n in c.crossings.items())
    extra = {k: v for k, v in o.crossings.items() if k not in c.crossings}
    if extra:
        cross += " (also " + " ".join(f"{d} {n}" for d, n in extra.items()) + ")"
    if c.objects:
        ways = " ".join(f"{w} {o.by_way.get(w, 0)}/{n}" for w, n in c.by_way.items())
        events = f"{o.events}/{c.objects} ({ways}) per object {o.events / c.objects:.2f}"
    else:
        events = f"{o.events} (not totalled)"
    print(
        f"{c.key:9} {rate:7} events {events:44} crossings {cross:22} "
        f"cpu {o.cpu_ms:5.1f} ms/frame  invokes {o.invokes:4.2f}/frame  "
        f"frames {o.frames} dropped {o.dropped}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pace", choices=("native", "fast"), default="native")
    parser.add_argument("--rates", default="0,5", help="detector.max_fps values, 0 = camera")
    parser.add_argument("--clips", default="motorway,arcade")
    parser.add_argument("--model", default=None, help="detector.model (default: the default)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting"
    )
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    outcomes = []
    print(f"pace {args.pace}, {os.cpu_count()} CPUs, settings: {' '.join(args.set) or 'defaults'}")
    for key in args.clips.split(","):
        for rate in rates:
            outcome = run(CLIPS[key], rate, args.pace, args.model, args.set)
            show(outcome)
            outcomes.append(outcome)
    vehicles = [o for o in outcomes if o.clip.objects]
    count_error = max((o.count_error or 0.0 for o in vehicles), default=0.0)
    line_error = max((o.line_miss for o in vehicles), default=0)
    people = [o for o in outcomes if not o.clip.objects]
    if people:
        miss = max(o.line_miss for o in people)
        print(f"people crossings: worst per-direction miss {miss} (target <= 2)")
    invokes = sum(o.invokes for o in outcomes) / len(outcomes)
    print(
        f"RESULT count_error={count_error:.3f} line_error={line_error} "
        f"invokes_per_frame={invokes:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
