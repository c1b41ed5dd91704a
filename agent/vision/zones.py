"""Named zones in normalised image coordinates."""

from __future__ import annotations

import cv2
import numpy as np

from roadside.config.agent import Zone


class ZoneMap:
    """Tells which zones contain a point."""

    def __init__(self, zones: list[Zone]) -> None:
        self._zones = [(z.name, np.array(z.polygon, np.float32)) for z in zones]

    def __bool__(self) -> bool:
        return bool(self._zones)

    def at(self, x: float, y: float) -> list[str]:
        return [
            name
            for name, poly in self._zones
            if cv2.pointPolygonTest(poly, (float(x), float(y)), False) >= 0
        ]
