"""The detector on real footage with the real models."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from roadside.agent.vision.detector import Detector, read_labels
from roadside.config.agent import DetectorConfig, TrackerConfig
from roadside.errors import AssetError, DetectorError

SSD = "ssd_mobilenet_v1_coco_quant"


def frames(path: Path, limit: int, step: int = 1):
    cap = cv2.VideoCapture(str(path))
    i = 0
    try:
        while i < limit * step:
            ok, img = cap.read()
            if not ok:
                return
            if i % step == 0:
                yield img
            i += 1
    finally:
        cap.release()


def labels_seen(detector: Detector, path: Path, limit: int, step: int = 1) -> Counter[str]:
    seen: Counter[str] = Counter()
    for img in frames(path, limit, step):
        for det in detector.detect(img):
            seen[det.label] += 1
            x0, y0, x1, y1 = det.box
            assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
    return seen


@pytest.fixture(scope="module")
def ssd(models_dir: Path) -> Detector:
    return Detector(DetectorConfig(model=SSD, models_dir=str(models_dir)))


@pytest.fixture(scope="module")
def yolox(models_dir: Path) -> Detector:
    return Detector(DetectorConfig(model="yolox_nano", models_dir=str(models_dir)))


@pytest.mark.parametrize(
    ("clip", "step"), [("traffic_frames.mp4", 1), ("motorway_overpass.mp4", 10)]
)
@pytest.mark.slow
def test_ssd_finds_cars(ssd: Detector, footage: Path, clip: str, step: int) -> None:
    seen = labels_seen(ssd, footage / clip, limit=20, step=step)
    # Cars dominate: the class-id mapping is right (an off-by-one would say bicycle or truck).
    assert seen["car"] >= 10, seen
    assert seen.most_common(1)[0][0] == "car", seen


def test_ssd_finds_people(ssd: Detector, footage: Path) -> None:
    seen = labels_seen(ssd, footage / "pedestrians_arcade.mp4", limit=10, step=10)
    assert seen["person"] >= 20, seen
    assert seen.most_common(1)[0][0] == "person"


@pytest.mark.parametrize(
    ("clip", "label"),
    [("motorway_overpass.mp4", "car"), ("pedestrians_arcade.mp4", "person")],
)
@pytest.mark.slow
def test_yolox_decodes_grid(yolox: Detector, footage: Path, clip: str, label: str) -> None:
    seen = labels_seen(yolox, footage / clip, limit=8, step=15)
    assert seen[label] >= 8 and seen.most_common(1)[0][0] == label, seen


@pytest.mark.slow
def test_yolox_boxes_match_ssd_boxes(ssd: Detector, yolox: Detector, footage: Path) -> None:
    """Two unrelated models agree on where the cars are: the letterbox maths is right."""
    img = list(frames(footage / "motorway_overpass.mp4", limit=121))[120]
    a = [d.box for d in ssd.detect(img) if d.label == "car"]
    b = [d.box for d in yolox.detect(img) if d.label == "car"]
    assert a and b
    best = max(_iou(x, y) for x in a for y in b)
    assert best > 0.5


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area


def test_lstm_state_is_carried(models_dir: Path, footage: Path) -> None:
    """The AutoML model's LSTM state outputs are fed back as the next frame's state inputs."""
    cfg = DetectorConfig(
        model="automl_traffic_lstm",
        models_dir=str(models_dir),
        score=0.2,
        classes=["sedan", "pickup_suv_van", "large_veh_bus"],
    )
    det = Detector(cfg)
    assert len(det._state) == 2  # c and h
    img = next(frames(footage / "traffic_frames.mp4", limit=1))
    first = [round(d.score, 3) for d in det.detect(img)]
    assert first, "the traffic model sees the cars"
    interp = det.interpreter
    for out_idx, in_idx in det._state:
        assert np.array_equal(interp.get_tensor(in_idx), interp.get_tensor(out_idx))
    det.reset()
    for _, in_idx in det._state:
        assert not interp.get_tensor(in_idx).any()
    assert [round(d.score, 3) for d in det.detect(img)] == first


def test_per_class_threshold(models_dir: Path, footage: Path) -> None:
    loose = Detector(DetectorConfig(model=SSD, models_dir=str(models_dir), score=0.3))
    strict = Detector(
        DetectorConfig(model=SSD, models_dir=str(models_dir), score=0.3, scores={"car": 0.9})
    )
    img = next(frames(footage / "traffic_frames.mp4", limit=1))
    assert any(d.label == "car" for d in loose.detect(img))
    assert not any(d.label == "car" for d in strict.detect(img))


def test_unknown_class_is_refused(models_dir: Path) -> None:
    with pytest.raises(DetectorError, match="zebra crossing"):
        Detector(DetectorConfig(models_dir=str(models_dir), classes=["car", "zebra crossing"]))


def test_missing_weights_say_how_to_fetch(tmp_path: Path) -> None:
    with pytest.raises(AssetError, match="roadside model fetch yolox_nano"):
        Detector(DetectorConfig(models_dir=str(tmp_path)))


def test_label_files(models_dir: Path) -> None:
    coco = read_labels(models_dir / "coco_labels.txt", "lines", 1)
    assert (coco[0], coco[2], coco[3], coco[5], coco[7]) == (
        "person",
        "car",
        "motorcycle",
        "bus",
        "truck",
    )
    automl = read_labels(models_dir / "automl_traffic_label_map.pbtxt", "pbtxt", 1)
    assert automl == {0: "sedan", 1: "pickup_suv_van", 2: "large_veh_bus"}
    voc = read_labels(
        models_dir / "yolox_coco_classes.txt", "lines", 0, {"motorbike": "motorcycle"}
    )
    assert voc[3] == "motorcycle" and voc[0] == "person"


def test_blank_frame_gives_nothing_a_track_could_start_from(ssd: Detector) -> None:
    """The floor lets faint guesses through to the tracker; none is strong enough to start
    a track (the SSD guesses a person at 0.14 in a black frame)."""
    found = ssd.detect(np.zeros((540, 960, 3), np.uint8))
    assert all(d.score < TrackerConfig().start_score for d in found)
    assert all(d.score >= DetectorConfig().score for d in found)
