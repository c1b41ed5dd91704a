"""Turning per-frame detections into tracks: one vehicle or person, one track.

Greedy IoU association against each track's predicted box (constant velocity). Vehicle
classes are matched with one another, since a detector often calls the same van a car on
one frame and a truck on the next; a track's class is the one with the highest summed score.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from roadside.agent.vision.decoders import Detection
from roadside.config.agent import TrackerConfig

VEHICLES = frozenset(
    {"bicycle", "motorcycle", "car", "bus", "truck", "sedan", "pickup_suv_van", "large_veh_bus"}
)

Box = tuple[float, float, float, float]


def _group(label: str) -> str:
    return "vehicle" if label in VEHICLES else label


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


@dataclass
class Track:
    """One object followed over time."""

    track_id: int
    box: Box
    first_seen: float
    last_seen: float
    hits: int = 1
    best_score: float = 0.0
    best_box: Box = (0.0, 0.0, 0.0, 0.0)
    best_time: float = 0.0
    velocity: tuple[float, float] = (0.0, 0.0)  # box centre, normalised units per second
    first_centre: tuple[float, float] = (0.0, 0.0)
    class_scores: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    confirmed: bool = False
    event_id: str | None = None  # set by the event builder when the track is announced
    zones: set[str] = field(default_factory=set)

    @property
    def label(self) -> str:
        return max(self.class_scores.items(), key=lambda kv: kv[1])[0]

    @property
    def centre(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2, (y0 + y1) / 2

    def predicted(self, t: float) -> Box:
        dt = t - self.last_seen
        dx, dy = self.velocity[0] * dt, self.velocity[1] * dt
        x0, y0, x1, y1 = self.box
        return (x0 + dx, y0 + dy, x1 + dx, y1 + dy)

    def add(self, det: Detection, t: float) -> None:
        (ox, oy), dt = self.centre, t - self.last_seen
        self.box = det.box
        if dt > 0:
            nx, ny = self.centre
            vx, vy = (nx - ox) / dt, (ny - oy) / dt
            # Smooth the speed a little once known: detector boxes jitter by a few pixels.
            k = 1.0 if self.hits == 1 else 0.5
            self.velocity = (
                (1 - k) * self.velocity[0] + k * vx,
                (1 - k) * self.velocity[1] + k * vy,
            )
        self.last_seen = t
        self.hits += 1
        self._score(det, t)

    def _score(self, det: Detection, t: float) -> None:
        self.class_scores[det.label] += det.score
        if det.score > self.best_score:
            self.best_score, self.best_box, self.best_time = det.score, det.box, t


class Tracker:
    """Keeps the live tracks; ``update`` returns which tracks ended at this frame."""

    def __init__(self, cfg: TrackerConfig) -> None:
        self.cfg = cfg
        self.tracks: list[Track] = []
        self._ids = itertools.count(1)

    def _new_track(self, det: Detection, t: float) -> Track:
        track = Track(track_id=next(self._ids), box=det.box, first_seen=t, last_seen=t)
        track.first_centre = track.centre
        track._score(det, t)
        return track

    def update(self, detections: list[Detection], t: float) -> list[Track]:
        """Associate this frame's detections; returns tracks that ended (unseen too long)."""
        unmatched = list(range(len(detections)))
        if self.tracks and detections:
            unmatched = self._associate(detections, t)
        for i in unmatched:
            self.tracks.append(self._new_track(detections[i], t))
        for track in self.tracks:
            if not track.confirmed and track.hits >= self.cfg.confirm_hits:
                track.confirmed = True
        return self.expire(t)

    def _associate(self, detections: list[Detection], t: float) -> list[int]:
        pred = np.array([tr.predicted(t) for tr in self.tracks], np.float32)
        boxes = np.array([d.box for d in detections], np.float32)
        scores = iou_matrix(pred, boxes)
        groups_t = [_group(tr.label) for tr in self.tracks]
        groups_d = [_group(d.label) for d in detections]
        for ti, gt in enumerate(groups_t):
            for di, gd in enumerate(groups_d):
                if gt != gd:
                    scores[ti, di] = 0.0
        used_t: set[int] = set()
        used_d: set[int] = set()
        for flat in np.argsort(-scores, axis=None):
            ti, di = divmod(int(flat), len(detections))
            if scores[ti, di] < self.cfg.iou:
                break
            if ti in used_t or di in used_d:
                continue
            used_t.add(ti)
            used_d.add(di)
            self.tracks[ti].add(detections[di], t)
        return [i for i in range(len(detections)) if i not in used_d]

    def expire(self, t: float) -> list[Track]:
        """Remove and return tracks unseen for longer than ``max_missed_s``."""
        ended = [tr for tr in self.tracks if t - tr.last_seen > self.cfg.max_missed_s]
        if ended:
            self.tracks = [tr for tr in self.tracks if tr not in ended]
        return ended

    def flush(self) -> list[Track]:
        """End every track (at shutdown or end of stream)."""
        ended, self.tracks = self.tracks, []
        return ended
