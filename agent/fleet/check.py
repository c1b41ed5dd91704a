"""Is the box healthy with the config on trial? Watched for ``health_s`` after the start.

Healthy means, over the whole window: frames go through the pipeline and keep going (the
watchdog's own judgement: no stall past ``frame_timeout_s``), the detector answered at least
once, and while the link is up the outbox drains (the broker acknowledged messages, or nothing
waits). A change that may cut the box off must also reach the broker within the window. A
link that is down for an unrelated reason (3G) does not fail a change that left [mqtt] alone.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Protocol

from roadside.agent.hardware.liveness import PipelineLiveness
from roadside.agent.pipeline import PipelineStats

SAMPLE_S = 0.25


class LinkView(Protocol):
    """What the check reads of the uplink (``agent.uplink.link.Uplink``)."""

    @property
    def connected(self) -> bool: ...

    def acked(self) -> int: ...

    def waiting(self) -> int: ...

    def describe_failure(self) -> str: ...


@dataclass(frozen=True)
class CheckResult:
    healthy: bool
    reason: str  # not healthy: what failed, for the reply; healthy: what was seen


class TrialCheck:
    """One judgement of a config on trial; ``run`` blocks for up to ``health_s``."""

    def __init__(
        self,
        liveness: PipelineLiveness,
        stats: PipelineStats,
        link: LinkView | None,
        health_s: float,
        link_change: bool,
    ) -> None:
        self.liveness = liveness
        self.stats = stats
        self.link = link
        self.health_s = health_s
        self.link_change = link_change

    def run(self, stop: threading.Event) -> CheckResult | None:
        """The verdict, or None when ``stop`` was set first (the agent is stopping)."""
        deadline = time.monotonic() + self.health_s
        ready = link_seen = False
        acked_at_link: int | None = None
        while time.monotonic() < deadline:
            verdict = self.liveness.check()
            ready = ready or verdict.ready
            if ready and not verdict.healthy:
                return CheckResult(False, f"pipeline {verdict.reason}")
            if self.link is not None and self.link.connected:
                link_seen = True
                if acked_at_link is None:
                    acked_at_link = self.link.acked()
            if stop.wait(SAMPLE_S):
                return None
        return self._at_end(ready, link_seen, acked_at_link)

    def _at_end(self, ready: bool, link_seen: bool, acked_at_link: int | None) -> CheckResult:
        s = f"{self.health_s:.0f} s"
        if not ready:
            return CheckResult(False, f"no frame went through the pipeline in {s}")
        if self.stats.detections_run == 0:
            return CheckResult(False, f"the detector did not answer in {s}")
        if self.link is not None:
            if self.link_change and not link_seen:
                failure = self.link.describe_failure()
                return CheckResult(False, f"the box did not reach the broker in {s}: {failure}")
            if (
                self.link.connected
                and acked_at_link is not None
                and self.link.waiting() > 0
                and self.link.acked() == acked_at_link
            ):
                return CheckResult(
                    False,
                    f"the outbox is not draining: {self.link.waiting()} messages wait and the "
                    f"broker acknowledged none in {s}",
                )
        return CheckResult(
            True,
            f"{self.stats.frames} frames, {self.stats.detections_run} detector runs in {s}"
            + (", link up" if link_seen else ", link down"),
        )
