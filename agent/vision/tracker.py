"""Turning detections into tracks: one vehicle, motorbike or person, one track.

Each detector run is one *round*. In a round every track's Kalman filter (motionfilter.py) is
moved to the round's time, and detections are assigned to tracks with the Hungarian method
(``lap``) in three stages, as ByteTrack does:

1. confirmed tracks take the detections scoring at least ``tracker.high_score``;
2. confirmed tracks still unmatched take the low-score detections (down to the detector's
   floor): a car half hidden or in the dark continues its track, but a low score never
   starts one, so the noise a low floor lets through never becomes an event;
3. tentative tracks take the high-score detections left; what is still left starts new
   tentative tracks when it scores at least ``tracker.start_score``.

A detection may join a track only inside the track's gate: the distance between the
detection's centre and the track's predicted centre, measured against the spread the filter
expects (it grows with the time since the track was last seen and with how little is known
of its speed) and against the box's size. Boxes need not overlap, so a fast object seen five
times a second stays one track. Detector class flips between vehicle classes (a van is a car
on one frame, a truck on the next) stay one track; a person never joins a vehicle's track.

Tracks are only judged in rounds: while the motion gate or ``detector.max_fps`` skip the
detector, tracks wait (predicted, never expired), so a parked car is one track however long
it stays.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from enum import Enum

import lap
import numpy as np

from roadside.agent.vision.decoders import Detection
from roadside.agent.vision.motionfilter import MotionFilter
from roadside.config.agent import TrackerConfig

VEHICLES = frozenset(
    {"bicycle", "motorcycle", "car", "bus", "truck", "sedan", "pickup_suv_van", "large_veh_bus"}
)

Box = tuple[float, float, float, float]

# A round stands for at most this much looking: after a long pause of the detector (the motion
# gate saw nothing move) a track unseen in one round has been missed once, not for the pause.
ROUND_CAP_S = 0.25
# Tentative tracks are hypotheses: they die after this much looking without a detection.
TENTATIVE_MISSED_S = 0.45
# Largest change of size a detection may bring to a track, as |ln(w'/w)| + |ln(h'/h)|.
SIZE_GATE = 1.4
# A new detection lying this much inside a live track of its kind (or holding it) is a second
# box on the same object (intersection over the smaller box).
DUPLICATE_OVERLAP = 0.8
# Beyond this much of its size outside the frame, a predicted centre has left the picture.
EXIT_MARGIN = 0.5
# Two live tracks of one kind whose boxes overlap this much, round after round, follow the
# same object.
TWIN_IOU = 0.6
TWIN_ROUNDS = 4
# Whatever the filter says, a detection this near the predicted centre (in sizes) may join.
NEAR = 0.5
# Whatever the filter says, a detection this far from the predicted centre (in sizes) is
# another object. The filter's spread grows without bound while a track goes unseen, and in
# a crowd a hidden person's gate soon holds the neighbours: the track would jump to one of
# them (and carry its count across a counting line). What the filter predicts for an object
# it follows is well within two sizes, even at 5 rounds a second (the synthetic motorbikes,
# the cars on the overpass clip); a track that lost its object for longer than that ends,
# and the object starts a new one.
FAR = 2.0
_NO = 1e6  # cost of a pair outside the gate


def group(label: str) -> str:
    """Labels that may share one track: every vehicle class, or the label itself."""
    return "vehicle" if label in VEHICLES else label


def overlap_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over the smaller box: 1 when one box holds the other."""
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(np.minimum(area_a[:, None], area_b[None, :]), 1e-9)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes (x0, y0, x1, y1): rows of ``a`` against rows of ``b``."""
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def _corners(b: np.ndarray) -> np.ndarray:
    """(cx, cy, w, h) rows to (x0, y0, x1, y1)."""
    return np.stack([b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 0] + b[:, 2] / 2,
                     b[:, 1] + b[:, 3] / 2], 1)  # fmt: skip


class TrackState(Enum):
    TENTATIVE = "tentative"  # not yet seen confirm_hits times over confirm_s seconds
    CONFIRMED = "confirmed"


@dataclass(eq=False)
class Track:
    """One object followed over time. Boxes are (x0, y0, x1, y1) normalised to the frame."""

    track_id: int
    motion: MotionFilter
    aspect: float  # frame width / height: square units to normalised ones
    first_seen: float
    last_seen: float
    hits: int = 0
    best_score: float = 0.0
    best_box: Box = (0.0, 0.0, 0.0, 0.0)
    best_time: float = 0.0
    first_centre: tuple[float, float] = (0.0, 0.0)
    class_scores: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    state: TrackState = TrackState.TENTATIVE
    missed_s: float = 0.0  # looking done since the last detection
    event_id: str | None = None  # set by the event builder when the track is announced
    zones: set[str] = field(default_factory=set)
    colour: str | None = None  # named colour of the object at its best frame
    peak_size: float = 0.0  # largest side of a detected box, in frame heights
    seen_centre: tuple[float, float] = (0.0, 0.0)  # centre of the last detected box
    lines: dict[str, str] = field(default_factory=dict)  # counting lines crossed: direction
    surprise: float = 0.0  # how far the last detection was from the prediction, in sizes

    @property
    def confirmed(self) -> bool:
        return self.state is TrackState.CONFIRMED

    @property
    def label(self) -> str:
        return max(self.class_scores.items(), key=lambda kv: kv[1])[0]

    @property
    def box(self) -> Box:
        """The filtered box now (where the object is, smoothed), normalised."""
        cx, cy, w, h = self.motion.box
        a = self.aspect
        return ((cx - w / 2) / a, cy - h / 2, (cx + w / 2) / a, cy + h / 2)

    @property
    def centre(self) -> tuple[float, float]:
        cx, cy = self.motion.box[:2]
        return float(cx / self.aspect), float(cy)

    @property
    def velocity(self) -> tuple[float, float]:
        """Speed of the centre, normalised frame units per second."""
        vx, vy = self.motion.velocity
        return float(vx / self.aspect), float(vy)

    def add(self, det: Detection, t: float, z: np.ndarray) -> None:
        """The detection ``det`` (``z`` in square units) belongs to this track."""
        self.surprise = float(np.hypot(*(z[:2] - self.motion.box[:2])) / self.motion.size)
        self.motion.update(z)
        self.peak_size = max(self.peak_size, float(z[2]), float(z[3]))
        self.seen_centre = ((det.box[0] + det.box[2]) / 2, (det.box[1] + det.box[3]) / 2)
        self.last_seen = t
        self.missed_s = 0.0
        self.hits += 1
        self.class_scores[det.label] += det.score
        if det.score > self.best_score:
            self.best_score, self.best_box, self.best_time = det.score, det.box, t


class Tracker:
    """Keeps the live tracks; ``update`` is one round and returns the tracks that ended."""

    def __init__(self, cfg: TrackerConfig, aspect: float = 16 / 9) -> None:
        self.cfg = cfg
        self.aspect = aspect  # the pipeline sets it from the first frame
        self.tracks: list[Track] = []
        self._ids = itertools.count(1)
        self._last_round: float | None = None
        self._overlaps: dict[tuple[int, int], int] = {}  # track id pair -> rounds overlapping

    # -- one round ------------------------------------------------------------------------
    def update(self, detections: list[Detection], t: float) -> list[Track]:
        """Assign this round's detections (seen at time ``t``); returns tracks that ended."""
        since = 0.0 if self._last_round is None else max(t - self._last_round, 0.0)
        looked = min(since, ROUND_CAP_S)
        self._last_round = t
        for track in self.tracks:
            track.motion.predict(t)
        boxes = self._square(detections)
        high = [i for i, d in enumerate(detections) if d.score >= self.cfg.high_score]
        low = [i for i, d in enumerate(detections) if d.score < self.cfg.high_score]
        confirmed = [tr for tr in self.tracks if tr.confirmed]
        tentative = [tr for tr in self.tracks if not tr.confirmed]
        seen: set[int] = set()
        left_high = self._assign(confirmed, high, detections, boxes, t, seen)
        waiting = [tr for tr in confirmed if id(tr) not in seen]
        self._assign(waiting, low, detections, boxes, t, seen)
        left_high = self._assign(tentative, left_high, detections, boxes, t, seen)
        for track in self.tracks:
            if id(track) not in seen:
                track.missed_s += looked
            elif not track.confirmed and self._proven(track):
                track.state = TrackState.CONFIRMED
        self._start(left_high, detections, boxes, t)
        return self._end(seen) + self._twins()

    def flush(self) -> list[Track]:
        """End every track (at shutdown or the end of the stream)."""
        ended, self.tracks = self.tracks, []
        return ended

    # -- named steps ------------------------------------------------------------------------
    def _square(self, detections: list[Detection]) -> np.ndarray:
        """Detections as (cx, cy, w, h) in square units."""
        if not detections:
            return np.zeros((0, 4))
        b = np.array([d.box for d in detections], np.float64)
        a = self.aspect
        return np.stack(
            [(b[:, 0] + b[:, 2]) / 2 * a, (b[:, 1] + b[:, 3]) / 2, (b[:, 2] - b[:, 0]) * a,
             b[:, 3] - b[:, 1]],
            1,
        )  # fmt: skip

    def _cost(self, tracks: list[Track], dets: list[int], detections: list[Detection],
              boxes: np.ndarray) -> np.ndarray:  # fmt: skip
        """Cost of each (track, detection) pair: distance in sizes, _NO outside the gate."""
        cost = np.full((len(tracks), len(dets)), _NO)
        z = boxes[dets]
        groups = [group(detections[j].label) for j in dets]
        gate2 = self.cfg.gate**2
        overlap = iou_matrix(_corners(np.array([tr.motion.box for tr in tracks])), _corners(z))
        for i, track in enumerate(tracks):
            pred = track.motion.box
            mine = group(track.label)
            offset = z[:, :2] - pred[:2]
            inv = np.linalg.inv(track.motion.position_spread())
            m2 = np.einsum("ni,ij,nj->n", offset, inv, offset)
            growth = np.abs(np.log(z[:, 2] / pred[2])) + np.abs(np.log(z[:, 3] / pred[3]))
            size = np.sqrt(np.sqrt(pred[2] * pred[3]) * np.sqrt(z[:, 2] * z[:, 3]))
            near = np.hypot(offset[:, 0], offset[:, 1]) / size
            pair = near + 0.5 * growth + (1.0 - overlap[i])  # overlapping pairs first
            ok = ((m2 <= gate2) | (near <= NEAR)) & (near <= FAR) & (growth <= SIZE_GATE)
            ok &= np.array([g == mine for g in groups], bool)
            cost[i, ok] = pair[ok]
        return cost

    def _assign(self, tracks: list[Track], dets: list[int], detections: list[Detection],
                boxes: np.ndarray, t: float, seen: set[int]) -> list[int]:  # fmt: skip
        """Hungarian assignment of ``dets`` to ``tracks``; returns the detections left over."""
        if not tracks or not dets:
            return list(dets)
        cost = self._cost(tracks, dets, detections, boxes)
        _, rows, _ = lap.lapjv(cost, extend_cost=True, cost_limit=_NO / 2)
        used = set()
        for i, j in enumerate(rows):
            if j < 0:
                continue
            k = dets[j]
            tracks[i].add(detections[k], t, boxes[k])
            seen.add(id(tracks[i]))
            used.add(k)
        return [k for k in dets if k not in used]

    def _start(self, left: list[int], detections: list[Detection], boxes: np.ndarray,
               t: float) -> None:  # fmt: skip
        """New tentative tracks from strong detections that are not a live track's twin."""
        fresh = [k for k in left if detections[k].score >= self.cfg.start_score]
        if not fresh:
            return
        if self.tracks:
            live = np.array([tr.box for tr in self.tracks])
            new = np.array([detections[k].box for k in fresh])
            overlap = overlap_matrix(new, live)
            kinds = [group(tr.label) for tr in self.tracks]
            fresh = [
                k
                for k, row in zip(fresh, overlap, strict=True)
                if not any(
                    o >= DUPLICATE_OVERLAP and g == group(detections[k].label)
                    for o, g in zip(row, kinds, strict=True)
                )
            ]
        for k in fresh:
            det = detections[k]
            track = Track(
                track_id=next(self._ids),
                motion=MotionFilter(boxes[k], t),
                aspect=self.aspect,
                first_seen=t,
                last_seen=t,
            )
            track.first_centre = track.seen_centre = track.centre
            track.peak_size = float(max(boxes[k][2], boxes[k][3]))
            track.hits = 1
            track.class_scores[det.label] += det.score
            track.best_score, track.best_box, track.best_time = det.score, det.box, t
            if self._proven(track):
                track.state = TrackState.CONFIRMED
            self.tracks.append(track)

    def _proven(self, track: Track) -> bool:
        """Seen often enough, over long enough, to be an object. Counting rounds alone would
        confirm a one-off ghost in 0.1 s at a camera's 30 rounds a second, but make a distant
        car wait 0.6 s at 5; over a time span the evidence means the same at any rate."""
        span = track.last_seen - track.first_seen
        return track.hits >= self.cfg.confirm_hits and span >= self.cfg.confirm_s - 1e-6

    def _gone(self, track: Track) -> bool:
        if track.missed_s <= 0:
            return False
        limit = self.cfg.max_missed_s if track.confirmed else TENTATIVE_MISSED_S
        if track.missed_s > limit:
            return True
        cx, cy, w, h = track.motion.box
        mx, my = EXIT_MARGIN * w, EXIT_MARGIN * h
        return not (-mx <= cx <= self.aspect + mx and -my <= cy <= 1 + my)

    def _twins(self) -> list[Track]:
        """Two tracks on one object (a detector giving it two boxes for a while): once their
        boxes have overlapped for ``TWIN_ROUNDS`` rounds in a row, the younger goes. Two
        objects passing each other overlap for a round or two, not that long. Returned with
        the ended ones, so an announced twin is closed, not lost."""
        pairs: dict[tuple[int, int], int] = {}
        gone: set[int] = set()
        if len(self.tracks) >= 2:
            boxes = np.array([tr.box for tr in self.tracks])
            iou = iou_matrix(boxes, boxes)
            kinds = [group(tr.label) for tr in self.tracks]
            for i, j in zip(*np.nonzero(np.triu(iou, 1) >= TWIN_IOU), strict=True):
                a, b = self.tracks[i], self.tracks[j]
                if kinds[i] != kinds[j]:
                    continue
                key = (min(a.track_id, b.track_id), max(a.track_id, b.track_id))
                pairs[key] = self._overlaps.get(key, 0) + 1
                if pairs[key] >= TWIN_ROUNDS and id(a) not in gone and id(b) not in gone:
                    gone.add(id(b if (a.confirmed, a.hits) >= (b.confirmed, b.hits) else a))
        self._overlaps = pairs
        twins = [tr for tr in self.tracks if id(tr) in gone]
        self.tracks = [tr for tr in self.tracks if id(tr) not in gone]
        return twins

    def _end(self, seen: set[int]) -> list[Track]:
        ended = [tr for tr in self.tracks if id(tr) not in seen and self._gone(tr)]
        if ended:
            gone = {id(tr) for tr in ended}
            self.tracks = [tr for tr in self.tracks if id(tr) not in gone]
        return ended
