"""Motion gate and tracker on real footage."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from roadside.agent.events.builder import direction
from roadside.agent.vision.decoders import Detection
from roadside.agent.vision.detector import Detector
from roadside.agent.vision.motion import MotionGate
from roadside.agent.vision.tracker import Tracker, iou_matrix
from roadside.config.agent import DetectorConfig, MotionConfig, TrackerConfig


def read_all(path: Path, limit: int = 10_000) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while len(out) < limit:
        ok, img = cap.read()
        if not ok:
            break
        out.append(img)
    cap.release()
    return out


@pytest.mark.slow
def test_track_ids_stay_stable_on_traffic(models_dir: Path, footage: Path) -> None:
    """In traffic_frames the pickup crossing the whole clip keeps one track id throughout,
    even on the frames where the detector calls it a person, and no car gets two tracks."""
    det = Detector(DetectorConfig(model="ssd_mobilenet_v1_coco_quant", models_dir=str(models_dir)))
    tracker = Tracker(TrackerConfig())
    ids_per_frame = []
    for i, img in enumerate(read_all(footage / "traffic_frames.mp4")):
        tracker.update(det.detect(img), i / 30)
        ids_per_frame.append({t.track_id for t in tracker.tracks if t.confirmed})
    confirmed_from = round(TrackerConfig().confirm_s * 30) + 1  # confirmed after 0.4 s
    steady = set.intersection(*ids_per_frame[confirmed_from:])
    assert steady, "one vehicle is followed from its confirmation to the end under one id"
    track = max((t for t in tracker.tracks if t.track_id in steady), key=lambda t: t.hits)
    assert track.hits >= 12 and track.label == "car"
    assert track.velocity[0] < 0  # it drives right to left
    confirmed = {t.track_id for t in tracker.tracks if t.confirmed and t.label == "car"}
    assert len(confirmed) <= 4  # three cars in view: few spare tracks


@pytest.mark.slow
def test_tracks_on_motorway_are_few_and_long(models_dir: Path, footage: Path) -> None:
    det = Detector(DetectorConfig(model="yolox_nano", models_dir=str(models_dir)))
    tracker = Tracker(TrackerConfig())
    ended = []
    for i, img in enumerate(read_all(footage / "motorway_overpass.mp4", 150)):
        ended += tracker.update(det.detect(img), i / 29.97)
    ended += tracker.flush()
    confirmed = [t for t in ended if t.confirmed]
    # Five cars pass in these five seconds; fragments would show as many short tracks.
    assert 4 <= len(confirmed) <= 9, [(t.track_id, t.hits) for t in confirmed]
    assert sum(t.hits for t in confirmed) / len(confirmed) >= 20


def test_vehicle_classes_share_a_track() -> None:
    tracker = Tracker(TrackerConfig(confirm_hits=2))
    tracker.update([Detection("car", 0.6, (0.1, 0.1, 0.3, 0.3))], 0.0)
    tracker.update([Detection("truck", 0.9, (0.11, 0.1, 0.31, 0.3))], 0.1)
    tracker.update([Detection("truck", 0.8, (0.12, 0.1, 0.32, 0.3))], 0.2)
    assert len(tracker.tracks) == 1
    assert tracker.tracks[0].label == "truck"  # the larger summed score wins
    tracker.update([Detection("person", 0.9, (0.13, 0.1, 0.33, 0.3))], 0.3)
    assert len(tracker.tracks) == 2  # people never merge into vehicles


def test_prediction_bridges_missed_frames() -> None:
    """After two missed frames a fast car is found where its speed says, not where it was."""
    tracker = Tracker(TrackerConfig())
    for k in range(4):
        x = 0.05 + 0.04 * k
        tracker.update([Detection("car", 0.8, (x, 0.4, x + 0.1, 0.5))], k * 0.1)
    x = 0.05 + 0.04 * 6  # frames 4 and 5 were missed: 0.12 further, no overlap with the last box
    tracker.update([Detection("car", 0.8, (x, 0.4, x + 0.1, 0.5))], 0.6)
    assert len(tracker.tracks) == 1 and tracker.tracks[0].hits == 5


def test_track_ends_after_max_missed() -> None:
    """Unseen time counts in rounds: five rounds a second, a track ends after 0.5 s of them;
    a long pause of the detector (the motion gate saw nothing move) is one round, not 3 s."""
    tracker = Tracker(TrackerConfig(max_missed_s=0.5, confirm_hits=1, confirm_s=0.0))
    tracker.update([Detection("car", 0.8, (0.1, 0.1, 0.2, 0.2))], 0.0)
    assert tracker.update([], 3.0) == []  # the detector paused: one round, 0.25 s at most
    assert tracker.update([], 3.2) == []  # 0.45 s
    ended = tracker.update([], 3.4)  # 0.65 s
    assert len(ended) == 1 and not tracker.tracks


def test_iou_matrix() -> None:
    a = np.array([[0, 0, 1, 1], [0, 0, 0.5, 0.5]], np.float32)
    b = np.array([[0, 0, 1, 1], [2, 2, 3, 3]], np.float32)
    m = iou_matrix(a, b)
    assert np.allclose(m, [[1.0, 0.0], [0.25, 0.0]])


def test_direction() -> None:
    assert direction(0.0, 0.3) == "S"
    assert direction(0.2, -0.2) == "NE"
    assert direction(0.001, 0.0) is None


def test_motion_gate_busy_and_still(footage: Path) -> None:
    frames = read_all(footage / "motorway_overpass.mp4", 60)
    gate = MotionGate(MotionConfig())
    busy = [gate.update(f) for f in frames]
    assert sum(busy[5:]) >= 50  # traffic keeps the gate open
    still = MotionGate(MotionConfig())
    quiet = [still.update(frames[0]) for _ in range(30)]
    assert quiet[0] and not any(quiet[1:])  # looks once, then sleeps


def test_motion_mask_hides_a_region(footage: Path) -> None:
    frames = read_all(footage / "motorway_overpass.mp4", 40)
    full = MotionGate(MotionConfig())
    masked = MotionGate(MotionConfig(masks=[[(0, 0), (1, 0), (1, 1), (0, 1)]]))
    for f in frames:
        full.update(f)
        assert not masked.update(f) or (masked.changed == 0.0 and f is frames[0])
    assert full.changed > 0
