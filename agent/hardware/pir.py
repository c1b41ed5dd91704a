"""An optional PIR sensor that wakes the detector.

At night, or in fog, the picture's motion gate can miss what a passive-infrared sensor feels.
A PIR trigger makes the detector run on every frame for ``wake_s`` seconds.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from gpiozero import MotionSensor

from roadside.agent.pipeline import Gate
from roadside.config.agent import PirConfig

log = logging.getLogger(__name__)


class WakeGate:
    """Wraps the motion gate: says "moving" while a wake-up is in force.

    The inner gate still sees every frame, so its background keeps learning. ``wake`` is
    called from the PIR's thread and only writes one float; ``update`` runs on the pipeline
    thread and only reads it: no lock is needed.
    """

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.awake_until = 0.0
        self.wakes = 0

    def wake(self, seconds: float) -> None:
        self.awake_until = max(self.awake_until, time.monotonic() + seconds)
        self.wakes += 1

    @property
    def awake(self) -> bool:
        return time.monotonic() < self.awake_until

    def update(self, image: np.ndarray) -> bool:
        moving = self.gate.update(image)
        return moving or self.awake

    def boxes(self) -> list[tuple[float, float, float, float]]:
        return self.gate.boxes()

    def __getattr__(self, name: str) -> object:  # changed, cfg… of the inner gate
        return getattr(self.gate, name)


class PirSensor:
    """A PIR module's output on one GPIO; each trigger wakes the detector."""

    def __init__(self, cfg: PirConfig, gate: WakeGate) -> None:
        self.wake_s = cfg.wake_s
        self.gate = gate
        self.triggers = 0
        self.sensor = MotionSensor(cfg.pin, queue_len=1, sample_rate=20)
        self.sensor.when_motion = self._on_motion
        # gpiozero fires on edges after its first sample; reading the value waits for that
        # sample, and a sensor already triggered at start wakes the detector at once.
        if self.sensor.motion_detected:
            self._on_motion()

    def _on_motion(self) -> None:
        self.triggers += 1
        log.info("PIR: motion, detector awake for %.0f s", self.wake_s)
        self.gate.wake(self.wake_s)

    def close(self) -> None:
        self.sensor.close()
