"""Region detection: the model looks at crops of its own input size, where things are.

A detector squeezes the whole frame into its input (300x300 for the SSD): a 960x540 frame
loses two thirds of its pixels across, and a car 20 px wide becomes 6. Cropping squares of
about the model's size around what moves and around live tracks, and mapping the boxes back,
gives the model the picture at full resolution where it matters (Frigate's approach). Only
small things get crops: what is large is found in the whole frame, which is looked at
whenever something large moves or is tracked, and every ``full_frame_s`` anyway (it finds
what neither motion nor a track points to: an object that stopped before it was seen).

All boxes here are in pixels of the detection image unless said otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from roadside.agent.vision.decoders import Detection
from roadside.agent.vision.tracker import group, iou_matrix, overlap_matrix
from roadside.config.agent import RegionConfig

# A region is this much larger than what it was made for, so an object moving between two
# rounds stays inside it, and a box is not cut by the crop's edge.
CONTEXT = 1.6
# A detection this close to a crop edge that is not the frame's edge is probably cut in two.
EDGE = 0.02  # of the crop's side
MERGE_IOU = 0.5  # boxes of one object from two crops
# An object the model sees smaller than this (pixels at its input, in a whole-frame pass)
# is looked at in a crop too: COCO calls objects under 32 px "small", and the models' recall
# falls away below that size.
SMALL = 32
MERGE_HOLD = 0.85  # a box almost inside another of the same object (a part of it)
# The size the models score small objects best at: a crop around a small thing is made
# smaller than the model's input (the model sees it enlarged) until the thing is this large,
# ZOOM times at most.
BEST = 48
ZOOM = 2.0
ZOOM_ONLY = True


@dataclass(frozen=True, slots=True)
class Region:
    """A square crop (x0, y0, side) in pixels; ``full`` is the whole frame instead."""

    x0: int
    y0: int
    side: int
    full: bool = False

    @classmethod
    def whole(cls, width: int, height: int) -> Region:
        return cls(0, 0, max(width, height), True)


def _square(box: np.ndarray, side: float, width: int, height: int) -> tuple[int, int, int]:
    """A square of ``side`` centred on ``box``, moved inside the frame."""
    side = int(min(max(side, 1), width, height))
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    x0 = round(min(max(cx - side / 2, 0), width - side))
    y0 = round(min(max(cy - side / 2, 0), height - side))
    return x0, y0, side


class RegionPlanner:
    """Chooses this round's crops from motion boxes and live tracks."""

    def __init__(self, cfg: RegionConfig, model_side: int) -> None:
        self.cfg = cfg
        self.model_side = model_side
        self._last_full: float | None = None

    def plan(
        self,
        width: int,
        height: int,
        motion: list[tuple[float, float, float, float]],
        tracks: list[tuple[float, float, float, float]],
        t: float,
    ) -> list[Region]:
        """Crops for a round at time ``t``; boxes come normalised (0..1) and go out in pixels.

        Only what is small in the whole-frame view gets a crop (an object the model sees at
        ``SMALL`` pixels or more in the squeezed frame is found there as well as in a crop).
        The whole frame is looked at when something large moves or is tracked, when it is
        due, when crops would cost more than ``max_regions`` invokes, or would cover most of
        the frame anyway; the crops of small things ride along, ``max_regions`` in all.
        """
        if max(width, height) < 1.5 * self.model_side:
            return [Region.whole(width, height)]  # the frame is about the model's size
        scale = np.array([width, height, width, height], np.float64)
        shrink = self.model_side / max(width, height)  # pixels of the frame at model scale
        small, large = [], False
        for b in [*tracks, *motion]:
            box = np.array(b) * scale
            if max(box[2] - box[0], box[3] - box[1]) * shrink < SMALL:
                small.append(box)
            else:
                large = True
        crops = self._cover(small, width, height)
        covered = sum(side * side for _, _, side in crops)
        due = self._last_full is None or t - self._last_full >= self.cfg.full_frame_s
        too_many = len(crops) > self.cfg.max_regions or covered >= 0.9 * width * height
        if not (due or large or too_many):
            return [Region(*c) for c in crops]
        self._last_full = t
        crops = crops[: self.cfg.max_regions - 1]
        return [Region.whole(width, height), *(Region(*c) for c in crops)]

    def _cover(
        self, boxes: list[np.ndarray], width: int, height: int
    ) -> list[tuple[int, int, int]]:
        """Squares covering every box, those that cover the
        most boxes first (when crops are rationed, a crop over a queue of distant cars is
        worth more than one over a single car).

        Greedy set cover: each candidate square holds one box centred or at one of its
        corners; the one holding the most uncovered boxes (of two holding as many, the
        smaller, which enlarges more) is taken until all are covered.
        """
        todo = [b for b in boxes if b[2] - b[0] > 0 and b[3] - b[1] > 0]
        crops: list[tuple[int, int, int]] = []
        while todo:
            best: tuple[int, int, int] | None = None
            held: list[int] = []
            for box in todo:
                for crop in self._candidates(box, width, height):
                    inside = [i for i, b in enumerate(todo) if _inside(b, crop, width, height)]
                    if (len(inside), -crop[2]) > (len(held), -(best or crop)[2]):
                        best, held = crop, inside
            if best is None:  # a box too large for any square: its own, centred
                best, held = self._candidates(todo[0], width, height)[0], [0]
            crops.append(best)
            todo = [b for i, b in enumerate(todo) if i not in held]
        return crops

    def _candidates(self, box: np.ndarray, width: int, height: int) -> list[tuple[int, int, int]]:
        """Squares around ``box``: centred on it, and with it in each corner. The side is the
        model's for a box of ``BEST`` pixels or more, smaller for a smaller box (the model
        sees it enlarged, ``ZOOM`` times at most), and never under ``CONTEXT`` times the box."""
        size = max(box[2] - box[0], box[3] - box[1])
        zoomed = max(self.model_side / ZOOM, self.model_side * size / BEST)
        side = max(min(zoomed, self.model_side), CONTEXT * size)
        centred = _square(box, side, width, height)
        side_px = centred[2]
        m = EDGE * side_px * 2 + 1
        xs = (centred[0], box[0] - m, box[2] + m - side_px)
        ys = (centred[1], box[1] - m, box[3] + m - side_px)
        out = [centred]
        for x in xs:
            for y in ys:
                x0 = round(min(max(x, 0), width - side_px))
                y0 = round(min(max(y, 0), height - side_px))
                if (x0, y0, side_px) not in out:
                    out.append((x0, y0, side_px))
        return out


def _inside(box: np.ndarray, crop: tuple[int, int, int], width: int, height: int) -> bool:
    """Is ``box`` inside the crop with a margin (so it is not cut by its edge)? A crop's edge
    on the frame's edge cuts nothing, so it needs no margin."""
    x0, y0, side = crop
    m = EDGE * side * 2
    lo_x = x0 + m if x0 > 0 else 0
    lo_y = y0 + m if y0 > 0 else 0
    hi_x = x0 + side - m if x0 + side < width else width
    hi_y = y0 + side - m if y0 + side < height else height
    return box[0] >= lo_x and box[1] >= lo_y and box[2] <= hi_x and box[3] <= hi_y


def crop_of(image: np.ndarray, region: Region) -> np.ndarray:
    """The pixels of a region (the whole image for a full-frame region)."""
    if region.full:
        return image
    return image[region.y0 : region.y0 + region.side, region.x0 : region.x0 + region.side]


def to_frame(
    found: list[Detection], region: Region, width: int, height: int
) -> list[tuple[Detection, bool]]:
    """Boxes normalised to the crop, back to the frame (0..1); flags boxes cut by a crop edge."""
    if region.full:
        return [(d, False) for d in found]
    out = []
    s, x0, y0 = region.side, region.x0, region.y0
    for d in found:
        bx0, by0, bx1, by1 = d.box
        box = ((x0 + bx0 * s) / width, (y0 + by0 * s) / height,
               (x0 + bx1 * s) / width, (y0 + by1 * s) / height)  # fmt: skip
        cut = (
            (bx0 < EDGE and x0 > 0)
            or (by0 < EDGE and y0 > 0)
            or (bx1 > 1 - EDGE and x0 + s < width)
            or (by1 > 1 - EDGE and y0 + s < height)
        )
        out.append((Detection(d.label, d.score, box), cut))
    return out


def merge(candidates: list[tuple[Detection, bool]]) -> list[Detection]:
    """One box per object from overlapping crops: whole boxes before cut ones, then by score.

    Within a class group (vehicles together), a box is dropped when it overlaps a kept one
    by ``MERGE_IOU``, or lies almost inside it, or holds it almost whole (a part of the same
    object, or the same object cut by a crop edge).
    """
    if len(candidates) <= 1:
        return [d for d, _ in candidates]
    ranked = sorted(candidates, key=lambda c: (c[1], -c[0].score))  # whole, then by score
    dets = [d for d, _ in ranked]
    boxes = np.array([d.box for d in dets], np.float64)
    iou = iou_matrix(boxes, boxes)
    hold = overlap_matrix(boxes, boxes)
    groups = [group(d.label) for d in dets]
    kept: list[int] = []
    for i in range(len(dets)):
        same = [k for k in kept if groups[k] == groups[i]]
        if any(iou[i, k] >= MERGE_IOU or hold[i, k] >= MERGE_HOLD for k in same):
            continue
        kept.append(i)
    return [dets[i] for i in kept]
