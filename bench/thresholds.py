"""Sweep of the detector's floor and the tracker's start and confirmation thresholds on the
hand-counted clips, at the camera's rate and at 5/s, in one command.

    python bench/thresholds.py [--grid tracker.high_score=0.2,0.3 ...] [--rates 0,5]
                               [--set KEY=VALUE ...]

Every combination of the ``--grid`` values (default: the grid below) plays both clips through
the real pipeline, as ``bench/accuracy.py --pace fast`` does. The model's output for a crop
depends on the crop's pixels only, so each crop is run through the model once for the whole
sweep (at the lowest floor swept) and its detections reused, filtered by each setting's floor:
a setting gives exactly the events it gives alone, and the sweep costs little more than one
run. Invokes per frame count every crop looked at, reused or not.

Per setting and rate it prints the vehicle events against the 31 of the hand count, the hand
count's 31 vehicles matched by an event (``fnd``), events per hand-counted vehicle matched,
distant ones included (``frag``: above 1 an object gave several events, or something not in
the hand count gave one), the crossings of the middle line and the people crossings of the
arcade. The model's detections are kept in var/bench-thresholds/ between runs (delete it
after changing the model or the decoder).

Matching uses ``motorway_overpass_gt.csv``: an event and a hand-counted vehicle may pair when
they go the same way (toward or away from the camera) and their times overlap; pairs are
chosen by the Hungarian method on the overlap of their time spans (intersection over union).
The hand count gives no positions, so two cars going one way at the same time can be
swapped: ``found`` is good to one or two.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import itertools
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import lap
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from accuracy import CLIPS, Outcome, run

from roadside.agent.vision.decoders import Detection
from roadside.agent.vision.detector import Detector
from roadside.config.agent import AgentConfig
from roadside.testing.shared import footage_dir

# The sweep of docs/pipeline.md ("Thresholds, by measurement"); the floor 0.05 was tried with
# --grid detector.score=0.05,0.1 (it runs the model again on every crop).
GRID = {
    "detector.score": [0.1],
    "tracker.high_score": [0.15, 0.2, 0.25, 0.3],
    "tracker.start_score": [0.15, 0.2, 0.25, 0.3, 0.4],
    "tracker.event_score": [0.3, 0.4],
    "tracker.confirm_hits": [2, 3],
}


class ReusedDetector(Detector):
    """A detector that runs the model once per distinct crop and reuses its detections."""

    seen: ClassVar[dict[bytes, list[Detection]]] = {}

    def __init__(self, cfg: AgentConfig, floor: float) -> None:
        super().__init__(cfg.detector)
        self.min_score = floor  # the decoder keeps everything a swept floor may want
        self._raw = False  # True while the model runs: keep all down to min_score

    def detect(self, image: np.ndarray) -> list[Detection]:
        key = hashlib.blake2b(image.tobytes(), digest_size=16, person=b"%dx%d" % image.shape[:2])
        found = self.seen.get(key.digest())
        if found is None:
            self._raw = True
            found = self.seen[key.digest()] = super().detect(image)
            self._raw = False
        else:
            self.invocations += 1
        return [d for d in found if d.score >= self._threshold(d.label)]

    def _threshold(self, label: str) -> float:
        return self.min_score if self._raw else super()._threshold(label)


@dataclass(frozen=True)
class Vehicle:
    key: str
    way: str  # toward / away
    first: float
    last: float
    distant: bool


def vehicles() -> list[Vehicle]:
    rows = csv.DictReader((footage_dir() / "motorway_overpass_gt.csv").open())
    return [
        Vehicle(
            r["id"],
            "toward" if "toward" in r["direction_image"] else "away",
            float(r["first_seen_s"]),
            float(r["last_seen_s"]),
            r["distant"] == "yes",
        )
        for r in rows
    ]


def found(o: Outcome, truth: list[Vehicle]) -> tuple[int, int]:
    """Hand-counted vehicles paired with one event each (see the docstring): all of them,
    and those not distant."""
    ends = o.ends
    if not ends:
        return 0, 0
    cost = np.full((len(ends), len(truth)), 2.0)
    for i, e in enumerate(ends):
        way = None if not e.direction else "toward" if e.direction in o.clip.toward else "away"
        a, b = e.first_seen - o.start, e.last_seen - o.start
        for j, v in enumerate(truth):
            inter = min(b, v.last) - max(a, v.first)
            if way in (None, v.way) and inter > 0:
                cost[i, j] = 1.0 - inter / (max(b, v.last) - min(a, v.first))
    _, rows, _ = lap.lapjv(cost, extend_cost=True, cost_limit=1.5)
    paired = [truth[j] for j in rows if j >= 0]
    return len(paired), sum(1 for v in paired if not v.distant)


def sweep(grid: dict[str, list[float]], rates: list[float], sets: list[str]) -> None:
    floor = min(grid.get("detector.score", [0.1]))
    store = Path("var/bench-thresholds") / f"detections-{floor:g}.pickle"
    if store.exists():
        ReusedDetector.seen = pickle.loads(store.read_bytes())
    make = lambda cfg: ReusedDetector(cfg, floor)  # noqa: E731
    truth = vehicles()
    keys = list(grid)
    short = [k.split(".")[-1].replace("_score", "").replace("confirm_", "c_") for k in keys]
    print(
        " ".join(f"{s:>6}" for s in short)
        + " | "
        + " | ".join(f"{'camera' if r == 0 else f'{r:g}/s':6} ev fnd frag  S  W/E " for r in rates)
        + "| invokes"
    )
    for values in itertools.product(*(grid[k] for k in keys)):
        named = dict(zip(keys, values, strict=True))
        if named.get("tracker.start_score", 1.0) < named.get("tracker.high_score", 0.0):
            continue  # only detections at high_score are left to start tracks: the same point
        setting = [f"{k}={v}" for k, v in zip(keys, values, strict=True)] + sets
        cells, invokes = [], []
        for rate in rates:
            car = run(CLIPS["motorway"], rate, "fast", None, setting, make)
            ppl = run(CLIPS["arcade"], rate, "fast", None, setting, make)
            paired, n = found(car, truth)
            frag = car.events / max(paired, 1)
            cells.append(
                f"{'':6} {car.events:2} {n:3} {frag:4.2f} {car.crossings.get('S', 0):2} "
                f"{ppl.crossings.get('W', 0):2}/{ppl.crossings.get('E', 0):<2}"
            )
            invokes += [car.invokes, ppl.invokes]
        print(
            " ".join(f"{v:>6g}" for v in values)
            + " | "
            + " | ".join(cells)
            + f" | {sum(invokes) / len(invokes):.2f}",
            flush=True,
        )
        store.parent.mkdir(parents=True, exist_ok=True)
        store.write_bytes(pickle.dumps(ReusedDetector.seen))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--grid", action="append", default=[], metavar="KEY=V1,V2", help="a swept setting"
    )
    parser.add_argument("--rates", default="0,5", help="detector.max_fps values, 0 = camera")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a fixed setting"
    )
    args = parser.parse_args()
    grid = dict(GRID) if not args.grid else {}
    for item in args.grid:
        key, _, values = item.partition("=")
        grid[key] = [float(v) for v in values.split(",")]
    print("truth: 31 vehicles (35 with the distant), crossings S 11, people W 5 / E 3")
    sweep(grid, [float(r) for r in args.rates.split(",")], args.set)
    return 0


if __name__ == "__main__":
    sys.exit(main())
