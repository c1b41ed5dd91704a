"""The health heartbeat: a compact HealthMsg into the outbox every ``health_period_s``.

Health rides the outbox like everything else (priority below counts), so a heartbeat taken
while the link was down still arrives and shows the station what the box went through.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from roadside.agent.hardware import health
from roadside.agent.uplink.client import UplinkClient
from roadside.agent.uplink.outbox import Outbox
from roadside.ids import new_id
from roadside.wire.messages import HealthMsg

if TYPE_CHECKING:
    from roadside.agent.pipeline import Pipeline

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PipelineCounters:
    """What the heartbeat reports of the vision pipeline."""

    frames_in: int
    frames_out: int
    frames_dropped: int
    detect_latency_s: float


PipelineProbe = Callable[[], PipelineCounters | None]


def pipeline_counters(pipeline: Pipeline | None) -> PipelineCounters | None:
    """The counters of a running pipeline (plain reads of numbers other threads write)."""
    if pipeline is None:
        return None
    return PipelineCounters(
        frames_in=pipeline.capture.frames,
        frames_out=pipeline.stats.frames,
        frames_dropped=pipeline.feed.dropped,
        detect_latency_s=pipeline.stats.detect_latency_s,
    )


def _mib(value: int | None) -> float | None:
    return None if value is None else round(value / health.MIB, 1)


class HealthReporter:
    """Takes one set of readings and builds the HealthMsg.

    ``segments_dir`` is where recordings live (its size is reported when it exists);
    ``pipeline`` returns the pipeline's counters, or None before it runs.
    """

    def __init__(
        self,
        data_dir: str | Path,
        outbox: Outbox,
        client: UplinkClient | None,
        pipeline: PipelineProbe | None = None,
        segments_dir: str | Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.segments_dir = Path(segments_dir) if segments_dir else self.data_dir / "segments"
        self.outbox = outbox
        self.client = client
        self.pipeline = pipeline
        self.started_mono = time.monotonic()

    def measure(self) -> HealthMsg:
        host = health.read_host()
        ob = self.outbox.stats()
        link = self.client.state() if self.client is not None else None
        counters = self.pipeline() if self.pipeline is not None else None
        return HealthMsg(
            id=new_id(),
            at=round(time.time(), 1),
            uptime_s=None if host.uptime_s is None else round(host.uptime_s),
            agent_uptime_s=round(time.monotonic() - self.started_mono),
            load_1m=None if host.load_1m is None else round(host.load_1m, 2),
            cpu_temp_c=host.cpu_temp_c,
            throttled=host.throttled,
            memory_mib=None
            if host.mem_total_mib is None
            else (host.mem_used_mib or 0, host.mem_total_mib),
            disk_mib=self._disk(),
            frames_in=counters.frames_in if counters else None,
            frames_out=counters.frames_out if counters else None,
            frames_dropped=counters.frames_dropped if counters else None,
            detect_latency_ms=round(counters.detect_latency_s * 1000, 1) if counters else None,
            outbox_depth=ob.depth,
            outbox_losses={k: n for k, n in ob.losses.items() if n} or None,
            link_up=None if link is None else (1 if link.connected else 0),
            reconnects=None if link is None else link.reconnects,
            clock_synced=None if host.clock_synced is None else (1 if host.clock_synced else 0),
        )

    def _disk(self) -> dict[str, float] | None:
        out: dict[str, float] = {}
        fs = health.disk_mib(self.data_dir)
        if fs is not None:
            out["used"], out["free"] = fs
        seg = _mib(health.tree_bytes(self.segments_dir))
        if seg is not None:
            out["seg"] = seg
        out["ob"] = _mib(self.outbox.file_bytes()) or 0.0
        if self.outbox.disk_full:
            out["full"] = 1.0  # the card is full: the outbox sheds by priority
        return out


class Heartbeat:
    """A thread that emits one health message at start and then every ``period_s``."""

    def __init__(
        self, reporter: HealthReporter, emit: Callable[[HealthMsg], object], period_s: float
    ) -> None:
        self.reporter = reporter
        self.emit = emit
        self.period_s = period_s
        self.sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="uplink-heartbeat", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def beat(self) -> None:
        """Measure and emit once (also called by the thread)."""
        self.emit(self.reporter.measure())
        self.sent += 1

    def _run(self) -> None:
        while True:
            try:
                self.beat()
            except Exception:  # a failing reading must not end the heartbeat
                log.exception("health heartbeat failed")
            if self._stop.wait(self.period_s):
                return
