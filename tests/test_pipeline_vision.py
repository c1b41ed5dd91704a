"""The pipeline's vision steps on real frames: detection rate by frame time, parked objects
through the motion gate's pauses, region detection's cost."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from roadside.agent.frames import Frame
from roadside.agent.pipeline import Pipeline
from roadside.agent.vision.detector import Detector
from roadside.agent.vision.rate import DetectionRate
from roadside.config.agent import parse_config
from roadside.testing.configs import agent_config
from roadside.wire.messages import EventMsg, EventPhase, Message


class Still:
    """A camera looking at one picture: ``seconds`` of it at ``fps``, as fast as asked."""

    live = False

    def __init__(self, image: np.ndarray, seconds: float, fps: float = 30.0) -> None:
        self.image, self.n, self.fps = image, int(seconds * fps), fps
        self.i = 0
        self.t0 = time.time()

    def open(self) -> None:
        pass

    def read(self) -> Frame | None:
        if self.i >= self.n:
            return None
        t = self.i / self.fps
        self.i += 1
        return Frame(self.image, self.t0 + t, t, self.i - 1)

    def close(self) -> None:
        pass


class Keep:
    def __init__(self) -> None:
        self.events: list[EventMsg] = []

    def publish(self, kind: str, msg: Message) -> None:
        if isinstance(msg, EventMsg):
            self.events.append(msg)

    def close(self) -> None:
        pass


def test_detection_rate_follows_frame_times() -> None:
    rate = DetectionRate(5.0)
    ran = []
    for i in range(300):  # 10 s of a 29.97 fps camera
        t = 100.0 + i / 29.97
        if rate.due(t):
            rate.ran(t)
            ran.append(i)
    assert len(ran) == 50  # five a second, exactly
    assert set(np.diff(ran)) == {6}  # every sixth frame, no drift
    assert DetectionRate(0).due(1.0) and DetectionRate(0).due(1.0)


def test_parked_cars_are_one_event_each_through_the_gates_pauses(
    tmp_path: Path, footage: Path
) -> None:
    """A still picture of traffic for 30 s: the motion gate sleeps, the detector looks only at
    its keep-alive (every 2 s), and each car seen stays one event for the whole time."""
    cap = cv2.VideoCapture(str(footage / "motorway_overpass.mp4"))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 127)  # V04 and V05 at the middle line, near and large
    image = cap.read()[1]
    cap.release()
    cfg = parse_config(agent_config(tmp_path, footage / "motorway_overpass.mp4"))
    detector = Detector(cfg.detector)
    sink = Keep()
    pipeline = Pipeline(cfg, Still(image, 30.0), detector, [sink])
    stats = pipeline.run()
    rounds = stats.detections_run
    assert 14 <= rounds <= 17, rounds  # the first frame, then once every 2 s of frame time
    ends = [e for e in sink.events if e.phase == EventPhase.END]
    starts = {e.id for e in sink.events if e.phase == EventPhase.START}
    assert ends and {e.id for e in ends} == starts
    # every event lasts to the last round, none ended and started again at a keep-alive (a far
    # car found only by a later round's crop starts a round or two late), and
    # no car is two events: their best boxes are apart
    start, end = min(e.first_seen for e in ends), max(e.last_seen for e in ends)
    assert all(end - e.last_seen < 2.1 and e.first_seen - start < 5 for e in ends), [
        (e.label, e.first_seen - start, e.last_seen - start) for e in ends
    ]
    centres = [(e.box[0] + e.box[2] / 2, e.box[1] + e.box[3] / 2) for e in ends]
    for i, (x, y) in enumerate(centres):
        assert all(abs(x - u) + abs(y - v) > 0.03 for u, v in centres[:i]), centres
    assert len({e.track for e in ends}) == len(ends)
    # regions cost: a still scene needs no crops, only the whole frame at each round
    assert detector.invocations / rounds < 3
