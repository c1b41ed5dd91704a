"""Is the box doing its job? One judgement shared by the systemd watchdog and the status LED.

The pipeline is alive when frames keep arriving and the detector keeps answering within
bounds. A stuck camera stops the first; a stuck detector stops both (it runs on the pipeline
thread); either way the box stops saying it is alive and systemd restarts it.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from roadside.agent.pipeline import PipelineStats
from roadside.config.agent import WatchdogConfig


class BoxState(enum.Enum):
    """What the status LED shows."""

    STARTING = "starting"  # no frame processed yet
    ONLINE = "online"  # healthy, and the uplink is connected (or there is none)
    OFFLINE = "offline"  # healthy, the uplink is down: events wait in the outbox
    FAULT = "fault"  # frames or the detector stalled


@dataclass(frozen=True)
class LinkSummary:
    """The uplink as the box sees it: connected, and how many messages wait to be sent."""

    connected: bool
    queued: int = 0

    def describe(self) -> str:
        if self.connected:
            return f"link online, {self.queued} queued" if self.queued else "link online"
        return f"link offline, {self.queued} queued"


LinkProbe = Callable[[], LinkSummary | None]


class StationLink(Protocol):
    """What the uplink (``agent.uplink.link.Uplink``) tells about itself, cheaply."""

    @property
    def connected(self) -> bool: ...

    @property
    def queued(self) -> int: ...


def link_probe(link: StationLink) -> LinkProbe:
    """A probe for the watchdog: the uplink's state, read on every tick (in-memory reads)."""
    return lambda: LinkSummary(bool(link.connected), int(link.queued))


@dataclass(frozen=True)
class Verdict:
    """One look at the pipeline: healthy or not, and why."""

    ready: bool
    healthy: bool
    reason: str


class PipelineLiveness:
    """Judges ``PipelineStats`` against the watchdog bounds.

    ``detect_timeout_s`` counts beyond the motion keepalive: the detector is allowed to sleep
    while nothing moves, but never longer than the keepalive.
    """

    def __init__(self, stats: PipelineStats, cfg: WatchdogConfig, keepalive_s: float = 0.0) -> None:
        self.stats = stats
        self.frame_timeout_s = cfg.frame_timeout_s
        self.detect_bound_s = keepalive_s + cfg.detect_timeout_s

    def check(self, now: float | None = None) -> Verdict:
        now = time.monotonic() if now is None else now
        stats = self.stats
        if stats.frames == 0 or stats.started_mono == 0.0:
            return Verdict(False, True, "starting: waiting for the first frame")
        frame_age = now - max(stats.last_frame_mono, stats.started_mono)
        if frame_age > self.frame_timeout_s:
            return Verdict(True, False, f"stalled: no frame for {frame_age:.0f} s")
        detect_age = now - max(stats.last_detect_mono, stats.started_mono)
        if detect_age > self.detect_bound_s:
            return Verdict(True, False, f"stalled: detector silent for {detect_age:.0f} s")
        return Verdict(True, True, "running")


def box_state(verdict: Verdict, link: LinkSummary | None) -> BoxState:
    """The LED's state from the pipeline's verdict and the uplink."""
    if not verdict.healthy:
        return BoxState.FAULT
    if not verdict.ready:
        return BoxState.STARTING
    if link is not None and not link.connected:
        return BoxState.OFFLINE
    return BoxState.ONLINE
