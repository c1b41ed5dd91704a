"""Day and night: the infrared illuminator relay and the camera's night settings.

Night is decided either by the clock (``mode = schedule``) or by the picture itself
(``mode = brightness``). Brightness is measured on the capture thread by ``BrightnessMeter``,
a tap that looks at a few hundred pixels of one frame a second and never blocks. The decision
(``DayNight``) has three guards against flapping, which matter because the IR light itself
brightens the picture it is judged by:

- a band: night below ``on_below``, day above ``off_above``, nothing changes in between;
- confirmation: a level must hold for ``confirm_s`` before it counts;
- a hold: at least ``hold_s`` between two switches, whatever the picture does.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Sequence

from gpiozero import DigitalOutputDevice

from roadside.agent.frames import Frame
from roadside.config.agent import IrLightConfig

log = logging.getLogger(__name__)


class BrightnessMeter:
    """Mean grey level (0..255) of the scene, smoothed; a capture tap.

    Runs on the capture thread: samples every ``step``-th pixel of the detection image at
    most once per ``every_s`` of frame time (microseconds of work), and publishes ``level``
    as a plain float that other threads read without a lock.
    """

    def __init__(self, every_s: float = 1.0, smoothing: float = 0.3, step: int = 16) -> None:
        self.every_s = every_s
        self.smoothing = smoothing
        self.step = step
        self.level: float | None = None
        self.samples = 0
        self._last_mono = -float("inf")

    def __call__(self, frame: Frame) -> None:
        if frame.mono - self._last_mono < self.every_s:
            return
        self._last_mono = frame.mono
        self.observe(float(frame.detect_image[:: self.step, :: self.step].mean()))

    def observe(self, value: float) -> None:
        """Fold one reading into the smoothed level."""
        level = self.level
        self.level = value if level is None else level + self.smoothing * (value - level)
        self.samples += 1


class DayNight:
    """Hysteresis with confirmation and hold time: is it night (IR on)?"""

    def __init__(self, on_below: float, off_above: float, confirm_s: float, hold_s: float) -> None:
        if off_above <= on_below:
            raise ValueError("off_above must be greater than on_below")
        self.on_below = on_below
        self.off_above = off_above
        self.confirm_s = confirm_s
        self.hold_s = hold_s
        self.night = False
        self._switched_at = -float("inf")
        self._pending_since: float | None = None

    def update(self, level: float, now: float) -> bool:
        """Feed a brightness level at monotonic time ``now``; returns whether it is night."""
        wants_night = level < self.on_below if not self.night else not level > self.off_above
        if wants_night == self.night:
            self._pending_since = None
            return self.night
        if self._pending_since is None:
            self._pending_since = now
        confirmed = now - self._pending_since >= self.confirm_s
        if confirmed and now - self._switched_at >= self.hold_s:
            self.night = wants_night
            self._switched_at = now
            self._pending_since = None
        return self.night


class NightSchedule:
    """Night between two local clock times (``on_at`` to ``off_at``, across midnight)."""

    def __init__(self, on_at: str, off_at: str) -> None:
        self.on_at = dt.time.fromisoformat(on_at)
        self.off_at = dt.time.fromisoformat(off_at)

    def is_night(self, when: dt.datetime) -> bool:
        t = when.time()
        if self.on_at <= self.off_at:
            return self.on_at <= t < self.off_at
        return t >= self.on_at or t < self.off_at


NightListener = Callable[[bool], None]


class IrLight(threading.Thread):
    """Switches the IR relay (and tells listeners such as the camera) between day and night.

    One loop, ``while not stop.wait(interval)``. The relay pin is optional: without it the
    decision still reaches the listeners. Listeners are called from this thread.
    """

    def __init__(
        self,
        cfg: IrLightConfig,
        meter: BrightnessMeter | None = None,
        interval_s: float = 1.0,
        clock: Callable[[], dt.datetime] = dt.datetime.now,
        listeners: Sequence[NightListener] = (),
    ) -> None:
        super().__init__(name="ir-light", daemon=True)
        self.cfg = cfg
        self.meter = meter or BrightnessMeter()
        self.interval_s = interval_s
        self.clock = clock
        self.relay = (
            DigitalOutputDevice(cfg.pin, active_high=cfg.active_high, initial_value=False)
            if cfg.pin is not None
            else None
        )
        self.decision = DayNight(cfg.on_below, cfg.off_above, cfg.confirm_s, cfg.hold_s)
        self.schedule = NightSchedule(cfg.on_at, cfg.off_at)
        self.listeners = tuple(listeners)
        self.night = False
        self.switches = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        self.tick()
        while not self._stop_event.wait(self.interval_s):
            self.tick()

    def tick(self, now: float | None = None) -> bool:
        """Decide once and apply the result; returns whether it is night."""
        now = time.monotonic() if now is None else now
        if self.cfg.mode == "schedule":
            night = self.schedule.is_night(self.clock())
        else:
            level = self.meter.level
            night = self.night if level is None else self.decision.update(level, now)
        if night != self.night:
            self._switch(night)
        return night

    def _switch(self, night: bool) -> None:
        self.night = night
        self.switches += 1
        level = self.meter.level
        log.info(
            "%s: IR light %s (scene level %s)",
            "night" if night else "day",
            "on" if night else "off",
            "n/a" if level is None else f"{level:.0f}",
        )
        if self.relay is not None:
            self.relay.value = night
        for listener in self.listeners:
            try:
                listener(night)
            except Exception:
                log.exception("night listener failed")

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(timeout=5)
        if self.relay is not None:
            self.relay.close()
