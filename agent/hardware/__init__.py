"""The box as an appliance: systemd watchdog, status LED, IR light, door switch, PIR.

GPIO devices use gpiozero, so they run on any Raspberry Pi and, for tests, on gpiozero's own
mock pins (``GPIOZERO_PIN_FACTORY=mock``). A pin is claimed only when its table is in the
config, so a box without pins (a Jetson, a PC) runs the same code with the watchdog alone.
"""

from roadside.agent.hardware.liveness import BoxState, LinkSummary, PipelineLiveness, link_probe
from roadside.agent.hardware.watchdog import SystemdNotifier, Watchdog

__all__ = [
    "BoxState",
    "LinkSummary",
    "PipelineLiveness",
    "SystemdNotifier",
    "Watchdog",
    "link_probe",
]
