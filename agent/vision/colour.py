"""The colour of an object, named, from its best frame: a few bytes an officer can search by.

Nothing here knows what the object is: a car's paint, a motorbike's tank and a person's coat
are read alike. The middle of the box is used (its edges are road, sky or the next object),
shrunk to a small picture, and each pixel is put in HSV: pixels with little saturation are
achromatic (white, grey or black by brightness), the rest vote by hue. A chromatic name wins
when enough of the object carries it (windows, tyres and shadow are dark and grey on any
vehicle); otherwise the object is white, grey or black by the brightness of its brighter
part.
"""

from __future__ import annotations

import cv2
import numpy as np

from roadside.wire.messages import COLOURS

INNER = 0.2  # of the box's width and height cut from each side
SIDE = 24  # pixels of the small picture the vote is taken on
CHROMA_SAT = 70  # saturation (0..255) from which a pixel has a hue worth naming
CHROMA_VAL = 45  # below this brightness a pixel is black whatever its hue
CHROMA_SHARE = 0.25  # of the pixels must be chromatic for a chromatic name
# An achromatic object is named by its upper-quartile brightness: windows, tyres and shade
# darken the median of any vehicle, while its paint is the brightest large area (on the
# overpass clip: a white SUV 241, a silver saloon 197, dark blue and dark grey cars 92-94).
BRIGHT_Q = 75
BLACK_BELOW = 110
WHITE_FROM = 215
# OpenCV hue runs 0..179 (degrees / 2): the upper bound of each named band.
_HUES = ((8, "red"), (20, "orange"), (34, "yellow"), (85, "green"), (130, "blue"),
         (160, "purple"), (180, "red"))  # fmt: skip


def _hue_name(hue: np.ndarray, val: np.ndarray) -> np.ndarray:
    names = np.empty(hue.shape, object)
    low = 0
    for high, name in _HUES:
        names[(hue >= low) & (hue < high)] = name
        low = high
    # Dark orange is brown: the same hue as orange, half the light.
    names[(names == "orange") & (val < 150)] = "brown"
    return names


assert {name for _, name in _HUES} | {"brown", "white", "grey", "black"} <= set(COLOURS)


def colour_of(image: np.ndarray, box: tuple[float, float, float, float]) -> str | None:
    """The named colour of what is in ``box`` (normalised x0, y0, x1, y1) of a BGR image."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    cx0, cx1 = int((x0 + INNER * bw) * w), int(np.ceil((x1 - INNER * bw) * w))
    cy0, cy1 = int((y0 + INNER * bh) * h), int(np.ceil((y1 - INNER * bh) * h))
    cx0, cy0 = max(cx0, 0), max(cy0, 0)
    cx1, cy1 = min(cx1, w), min(cy1, h)
    if cx1 - cx0 < 2 or cy1 - cy0 < 2:
        return None
    small = cv2.resize(image[cy0:cy1, cx0:cx1], (SIDE, SIDE), interpolation=cv2.INTER_AREA)
    hsv = cv2.cvtColor(small, cv2.COLOR_BGR2HSV).reshape(-1, 3).astype(np.int32)
    hue, sat, val = hsv[:, 0], hsv[:, 1], hsv[:, 2]
    chroma = (sat >= CHROMA_SAT) & (val >= CHROMA_VAL)
    if chroma.mean() >= CHROMA_SHARE:
        names, votes = np.unique(_hue_name(hue[chroma], val[chroma]), return_counts=True)
        return str(names[votes.argmax()])
    grey = val[~chroma] if (~chroma).any() else val
    bright = float(np.percentile(grey, BRIGHT_Q))
    if bright < BLACK_BELOW:
        return "black"
    return "white" if bright >= WHITE_FROM else "grey"
