"""Pipeline CPU: the model alone, a naive loop, and the real pipeline, per frame and invoke.

    python bench/pipeline.py [--frames 450] [--model yolox_nano]
                             [--set detector.max_fps=0 ...]

In one run, on the same footage and the same interpreter settings:
  (a) raw     the model's invoke alone on one prepared tensor: the cost of one invoke;
  (b) naive   read, resize and invoke every frame, one thread;
  (c) busy    the full pipeline (capture thread, motion gate, detection rate, regions,
              detector, tracker, lines) on traffic, with the default settings;
  (d) quiet   the full pipeline on a still frame repeated, against the naive loop on it.
A frame of the pipeline may cost several invokes (region crops) or none (``detector.max_fps``,
the motion gate), so the busy pipeline is judged per invoke: its CPU per frame divided by its
invokes per frame, against the raw invoke's CPU, says what the pipeline adds around the model
(decoding every frame, the gate, crops, tracking). Last line:
``RESULT busy_cpu_per_invoke_vs_raw=<x> busy_invokes_per_frame=<n> busy_cpu_ms_per_frame=<c>
quiet_cpu_vs_naive=<y> peak_rss_mb=<z>``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
import tomllib
from pathlib import Path

import cv2
import numpy as np

from roadside.agent.frames import Frame
from roadside.agent.pipeline import Pipeline
from roadside.agent.vision.detector import Detector
from roadside.config.agent import DetectorConfig, parse_config
from roadside.testing.shared import footage_dir, models_dir

CLIP = footage_dir() / "motorway_overpass.mp4"


class StillSource:
    """A camera looking at an empty scene: the same frame, as fast as asked, n times."""

    live = False

    def __init__(self, image: np.ndarray, frames: int, fps: float = 30.0) -> None:
        self.image, self.frames, self.fps = image, frames, fps
        self._i = 0
        self._t0 = time.time()

    def open(self) -> None:
        pass

    def read(self) -> Frame | None:
        if self._i >= self.frames:
            return None
        t = self._i / self.fps
        frame = Frame(self.image, self._t0 + t, t, self._i)
        self._i += 1
        return frame

    def close(self) -> None:
        pass


class LoopedClip:
    """The busy scene: the clip decoded as fast as possible, looped to n frames."""

    live = False

    def __init__(self, path: Path, frames: int) -> None:
        self.path, self.frames = path, frames
        self.cap = cv2.VideoCapture(str(path))
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 30.0
        self._i = 0
        self._t0 = time.time()

    def open(self) -> None:
        pass

    def read(self) -> Frame | None:
        if self._i >= self.frames:
            return None
        ok, image = self.cap.read()
        if not ok:
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self.cap.read()
        t = self._i / self.fps
        self._i += 1
        return Frame(image, self._t0 + t, t, self._i - 1)

    def close(self) -> None:
        self.cap.release()


def measure(fn, frames: int) -> tuple[float, float]:
    """(frames per second, CPU seconds per frame) of ``fn`` processing ``frames`` frames."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return frames / wall, cpu / frames


def config(model: str, sets: list[str]):
    doc: dict = {
        "device": "bench",
        "source": {"kind": "file", "path": str(CLIP), "pace": "fast"},
        "detector": {"model": model, "models_dir": str(models_dir())},
        "events": {"sinks": []},
    }
    for item in sets:
        key, _, text = item.partition("=")
        *path, last = key.split(".")
        node = doc
        for part in path:
            node = node.setdefault(part, {})
        node[last] = tomllib.loads(f"v = {text}")["v"]
    return parse_config(doc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=450)
    parser.add_argument("--model", default=DetectorConfig().model, help="default: the agent's")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting"
    )
    args = parser.parse_args()
    n = args.frames
    cfg = config(args.model, args.set)
    det = Detector(cfg.detector)
    cap = cv2.VideoCapture(str(CLIP))
    still = cap.read()[1]
    cap.release()
    tensor, _ = det._preprocess(still)

    def raw() -> None:
        for _ in range(n):
            det.interpreter.set_tensor(det._image_input, tensor)
            det.interpreter.invoke()

    def naive(source) -> None:
        while (frame := source.read()) is not None:
            det.detect(frame.image)

    invokes: dict[str, int] = {}

    def pipeline(source, name: str) -> None:
        before = det.invocations
        Pipeline(cfg, source, det, []).run()
        invokes[name] = det.invocations - before

    raw()  # warm up caches and the delegate
    results = {
        "raw invoke": measure(raw, n),
        "naive, busy": measure(lambda: naive(LoopedClip(CLIP, n)), n),
        "pipeline, busy": measure(lambda: pipeline(LoopedClip(CLIP, n), "busy"), n),
        "naive, quiet": measure(lambda: naive(StillSource(still, n)), n),
        "pipeline, quiet": measure(lambda: pipeline(StillSource(still, n), "quiet"), n),
    }
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"model {args.model} on {det.runtime}, {det.interpreter_threads} thread(s), "
        f"{n} frames each, {os.cpu_count()} CPUs, max_fps {cfg.detector.max_fps:g}, "
        f"regions {'on' if cfg.detector.regions.enabled else 'off'}"
    )
    print(f"{'':18}{'frames/s':>10}{'CPU ms/frame':>14}{'invokes/frame':>15}")
    per_frame = {"raw invoke": 1.0, "naive, busy": 1.0, "naive, quiet": 1.0}
    per_frame |= {f"pipeline, {k}": v / n for k, v in invokes.items()}
    for name, (fps, cpu) in results.items():
        print(f"{name:18}{fps:10.1f}{cpu * 1000:14.2f}{per_frame[name]:15.2f}")
    raw_cpu = results["raw invoke"][1]
    busy_cpu = results["pipeline, busy"][1]
    busy_invokes = per_frame["pipeline, busy"]
    per_invoke = busy_cpu / busy_invokes / raw_cpu if busy_invokes else float("inf")
    quiet_cpu = results["pipeline, quiet"][1] / results["naive, quiet"][1]
    print(f"pipeline busy CPU per invoke / raw invoke CPU: {per_invoke:.2f}  (target <= 1.5)")
    print(f"pipeline quiet CPU / naive quiet CPU:          {quiet_cpu:.3f} (target <= 0.20)")
    print(f"peak RSS: {peak_mb:.0f} MB (target <= 200)")
    print(
        f"RESULT busy_cpu_per_invoke_vs_raw={per_invoke:.2f} "
        f"busy_invokes_per_frame={busy_invokes:.2f} busy_cpu_ms_per_frame={busy_cpu * 1000:.1f} "
        f"quiet_cpu_vs_naive={quiet_cpu:.3f} peak_rss_mb={peak_mb:.0f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
