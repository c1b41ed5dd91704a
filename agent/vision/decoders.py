"""Turning raw model outputs into detections, one function per output family.

Boxes come out as (x0, y0, x1, y1) normalised to the whole frame (0..1).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(slots=True)
class Detection:
    label: str
    score: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1, normalised


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, float]:
    """Scale ``image`` into ``size`` (w, h) keeping its aspect, pad 114 at the bottom/right."""
    w, h = size
    ih, iw = image.shape[:2]
    ratio = min(w / iw, h / ih)
    nw, nh = round(iw * ratio), round(ih * ratio)
    canvas = np.full((h, w, 3), 114, np.uint8)
    canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas, ratio


def decode_ssd(
    boxes: np.ndarray, classes: np.ndarray, scores: np.ndarray, count: int, labels: dict[int, str]
) -> list[Detection]:
    """TFLite_Detection_PostProcess outputs: [ymin, xmin, ymax, xmax] boxes, class ids, scores."""
    found = []
    for i in range(min(int(count), len(scores))):
        label = labels.get(int(classes[i]))
        if label is None:
            continue
        y0, x0, y1, x1 = (float(np.clip(v, 0.0, 1.0)) for v in boxes[i])
        if x1 > x0 and y1 > y0:
            found.append(Detection(label, float(scores[i]), (x0, y0, x1, y1)))
    return found


def _yolox_grid(size: tuple[int, int], strides: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    w, h = size
    grids, steps = [], []
    for s in strides:
        gy, gx = np.meshgrid(np.arange(h // s), np.arange(w // s), indexing="ij")
        grids.append(np.stack((gx, gy), -1).reshape(-1, 2))
        steps.append(np.full((grids[-1].shape[0], 1), s))
    return np.concatenate(grids).astype(np.float32), np.concatenate(steps).astype(np.float32)


class YoloxDecoder:
    """Decodes YOLOX raw grid predictions ([N, 85]: cx, cy, w, h, objectness, 80 classes)."""

    def __init__(self, input_size: tuple[int, int], strides: tuple[int, ...] = (8, 16, 32)) -> None:
        self.input_size = input_size
        self.grid, self.stride = _yolox_grid(input_size, strides)

    def __call__(
        self,
        raw: np.ndarray,
        ratio: float,
        frame_size: tuple[int, int],
        labels: dict[int, str],
        min_score: float,
        nms_iou: float,
    ) -> list[Detection]:
        xy = (raw[:, :2] + self.grid) * self.stride
        wh = np.exp(np.clip(raw[:, 2:4], -10, 10)) * self.stride
        cls_scores = raw[:, 5:] * raw[:, 4:5]
        cls = cls_scores.argmax(1)
        score = cls_scores[np.arange(len(cls)), cls]
        keep = score >= min_score
        if not keep.any():
            return []
        xy, wh, cls, score = xy[keep], wh[keep], cls[keep], score[keep]
        fw, fh = frame_size
        x0 = (xy[:, 0] - wh[:, 0] / 2) / ratio / fw
        y0 = (xy[:, 1] - wh[:, 1] / 2) / ratio / fh
        bw = wh[:, 0] / ratio / fw
        bh = wh[:, 1] / ratio / fh
        found = []
        for c in np.unique(cls):
            label = labels.get(int(c))
            if label is None:
                continue
            idx = np.flatnonzero(cls == c)
            rects = np.stack((x0[idx], y0[idx], bw[idx], bh[idx]), 1).tolist()
            kept = cv2.dnn.NMSBoxes(rects, score[idx].tolist(), min_score, nms_iou)
            for k in np.array(kept).reshape(-1):
                i = idx[k]
                left, top, right, bottom = np.clip(
                    (x0[i], y0[i], x0[i] + bw[i], y0[i] + bh[i]), 0.0, 1.0
                )
                box = (float(left), float(top), float(right), float(bottom))
                if box[2] > box[0] and box[3] > box[1]:
                    found.append(Detection(label, float(score[i]), box))
        return found
