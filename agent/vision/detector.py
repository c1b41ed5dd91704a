"""The object detector: a TFLite model described by a manifest, run on one frame at a time.

Three families are supported:
- ``ssd``: TFLite_Detection_PostProcess outputs (boxes, classes, scores, count);
- ``ssd_lstm``: the same outputs plus LSTM state tensors (c, h) that are fed back on the next
  frame, so the model sees motion over time (AutoML Video traffic model);
- ``yolox``: raw grid predictions decoded here, with NMS.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import cv2
import numpy as np

from roadside import assets
from roadside.agent.vision.decoders import Detection, YoloxDecoder, decode_ssd, letterbox
from roadside.agent.vision.regions import Region, crop_of, merge, to_frame
from roadside.agent.vision.runtime import default_threads, load_interpreter
from roadside.config.agent import DetectorConfig
from roadside.errors import AssetError, DetectorError


def read_labels(
    path: Path, fmt: str, offset: int, rename: dict[str, str] | None = None
) -> dict[int, str]:
    """Map the model's class output to label names.

    ``lines``: one label a line, class k is line k + offset (``???`` lines are unused ids);
    ``pbtxt``: ``item { name: "…" id: N }`` entries, class k is id k + offset.
    ``rename`` turns a file's own spellings into the COCO names events use.
    """
    text = path.read_text(encoding="utf-8")
    if fmt == "pbtxt":
        pairs = re.findall(r'name:\s*"([^"]+)"\s*id:\s*(\d+)', text, re.S)
        by_id = {int(i): n for n, i in pairs}
    else:
        by_id = {k: ln.strip() for k, ln in enumerate(text.splitlines())}
    rename = rename or {}
    return {
        k - offset: rename.get(n, n)
        for k, n in by_id.items()
        if k - offset >= 0 and n and n != "???"
    }


class Detector:
    """Runs one model on frames and returns detections of the classes of interest."""

    def __init__(self, cfg: DetectorConfig) -> None:
        self.cfg = cfg
        self.manifest = assets.manifest(cfg.model)
        store = Path(cfg.models_dir) if cfg.models_dir else assets.default_store()
        problems = assets.verify(self.manifest, store)
        if problems:
            raise AssetError(
                f"model {cfg.model!r} is not usable ({problems[0][1]}); "
                f"run: roadside model fetch {cfg.model}"
            )
        weights = self.manifest.file("weights")
        labels = self.manifest.file("labels")
        self.labels = read_labels(
            store / labels.file,
            labels.extra.get("format", "lines"),
            labels.extra.get("offset", 0),
            labels.extra.get("rename"),
        )
        unknown = sorted(set(cfg.classes) - set(self.labels.values()))
        if unknown:
            raise DetectorError(
                f"detector.classes has {unknown} which model {cfg.model!r} does not know; "
                f"it knows: {', '.join(sorted(set(self.labels.values())))}"
            )
        self.wanted = {k: v for k, v in self.labels.items() if v in cfg.classes}
        self.interpreter_threads = cfg.threads or default_threads()
        self.interpreter, self.runtime = load_interpreter(
            str(store / weights.file), self.interpreter_threads, cfg.runtime
        )
        self.family = self.manifest.family
        spec = self.manifest.input
        self.input_size = (int(spec["width"]), int(spec["height"]))
        self.rgb = spec.get("color", "rgb") == "rgb"
        self._inputs = self.interpreter.get_input_details()
        self._outputs = self.interpreter.get_output_details()
        self._image_input = self._inputs[0]["index"]
        self._state: list[tuple[int, int]] = []  # (output index, input index) pairs to feed back
        if self.family == "ssd_lstm":
            self._bind_lstm_state()
        self._yolox = YoloxDecoder(self.input_size) if self.family == "yolox" else None
        self.min_score = min([cfg.score, *cfg.scores.values()])
        self.last_latency = 0.0
        self.invocations = 0

    def _bind_lstm_state(self) -> None:
        ins = {d["name"].rsplit("_", 1)[-1]: d for d in self._inputs[1:]}
        outs = {d["name"].rsplit("_", 1)[-1]: d for d in self._outputs[4:]}
        for key in ("c", "h"):
            if key not in ins or key not in outs:
                raise DetectorError(f"model {self.cfg.model!r} lacks LSTM state tensor {key!r}")
            self._state.append((outs[key]["index"], ins[key]["index"]))
            zero = np.zeros(ins[key]["shape"], ins[key]["dtype"])
            self.interpreter.set_tensor(ins[key]["index"], zero)

    def reset(self) -> None:
        """Forget the LSTM memory (after a gap in frames, say)."""
        for _, idx in self._state:
            detail = next(d for d in self._inputs if d["index"] == idx)
            self.interpreter.set_tensor(idx, np.zeros(detail["shape"], detail["dtype"]))

    def _preprocess(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        if self.family == "yolox":
            boxed, ratio = letterbox(image, self.input_size)  # BGR, as YOLOX was trained
            return boxed.transpose(2, 0, 1)[None].astype(np.float32), ratio
        resized = cv2.resize(image, self.input_size, interpolation=cv2.INTER_LINEAR)
        if self.rgb:
            resized = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
        return resized[None], 1.0

    def _threshold(self, label: str) -> float:
        return self.cfg.scores.get(label, self.cfg.score)

    @property
    def input_side(self) -> int:
        """The model's input side in pixels (the larger one): a region crop's least size."""
        return max(self.input_size)

    def detect_regions(self, image: np.ndarray, regions: list[Region]) -> list[Detection]:
        """Detections in each region of ``image``, mapped back to the frame and merged."""
        if len(regions) == 1 and regions[0].full:
            return self.detect(image)
        h, w = image.shape[:2]
        found = []
        for region in regions:
            found += to_frame(self.detect(crop_of(image, region)), region, w, h)
        return merge(found)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Detections of the wanted classes at or above their floor, boxes normalised 0..1."""
        tensor, ratio = self._preprocess(image)
        self.interpreter.set_tensor(self._image_input, tensor)
        start = time.perf_counter()
        self.interpreter.invoke()
        self.last_latency = time.perf_counter() - start
        self.invocations += 1
        get = self.interpreter.get_tensor
        if self._yolox is not None:
            h, w = image.shape[:2]
            found = self._yolox(
                get(self._outputs[0]["index"])[0],
                ratio,
                (w, h),
                self.wanted,
                self.min_score,
                self.cfg.nms_iou,
            )
        else:
            boxes, classes, scores, count = (get(self._outputs[i]["index"]) for i in range(4))
            found = decode_ssd(boxes[0], classes[0], scores[0], int(count[0]), self.wanted)
            for out_idx, in_idx in self._state:
                self.interpreter.set_tensor(in_idx, get(out_idx))
        return [d for d in found if d.score >= self._threshold(d.label)]
