"""The one LED a technician reads at the pole: what state is the box in?

| state    | pattern (one tick = 0.15 s)            | reads as                        |
|----------|----------------------------------------|---------------------------------|
| starting | 3 ticks on, 3 off                      | slow even blink                 |
| online   | on                                     | steady light                    |
| offline  | on, off, on, then 7 ticks off          | double flash every 1.5 s        |
| fault    | 1 tick on, 1 off                       | fast flicker                    |

Patterns run through gpiozero's own ``source`` mechanism (one value per tick on its
background thread), so they keep going while the agent works and stop with ``close()``.
"""

from __future__ import annotations

import itertools
import threading

from gpiozero import LED

from roadside.agent.hardware.liveness import BoxState

TICK_S = 0.15

PATTERNS: dict[BoxState, tuple[int, ...]] = {
    BoxState.STARTING: (1, 1, 1, 0, 0, 0),
    BoxState.ONLINE: (1,),
    BoxState.OFFLINE: (1, 0, 1, 0, 0, 0, 0, 0, 0, 0),
    BoxState.FAULT: (1, 0),
}


class StatusLed:
    """Shows a ``BoxState`` as a blink pattern on one LED.

    ``pin`` is a BCM number or gpiozero pin name; ``active_high`` false when the pin sinks
    the LED's current. ``show`` may be called from any thread (a lock guards the switch).
    """

    def __init__(self, pin: int | str, active_high: bool = True, tick_s: float = TICK_S) -> None:
        self.led = LED(pin, active_high=active_high, initial_value=False)
        self.tick_s = tick_s
        self.state: BoxState | None = None
        self._lock = threading.Lock()

    def show(self, state: BoxState) -> None:
        with self._lock:
            if state == self.state:
                return
            pattern = PATTERNS[state]
            self.led.source = None
            if len(set(pattern)) == 1:
                self.led.value = pattern[0]
            else:
                self.led.source_delay = self.tick_s
                self.led.source = itertools.cycle(pattern)
            self.state = state  # last: ``state`` is what the LED shows, never ahead of it

    def close(self) -> None:
        with self._lock:
            self.led.source = None
            self.led.close()
