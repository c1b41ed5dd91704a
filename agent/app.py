"""Assembling the agent from its config: source, detector, pipeline and sinks."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from roadside.agent.config import AgentConfig
from roadside.agent.events.sinks import ConsoleSink, JsonlSink, Sink
from roadside.agent.pipeline import Pipeline, PipelineStats
from roadside.agent.sources import open_source
from roadside.agent.vision.detector import Detector

log = logging.getLogger(__name__)


def build_sinks(cfg: AgentConfig) -> list[Sink]:
    sinks: list[Sink] = []
    for name in cfg.events.sinks:
        if name == "console":
            sinks.append(ConsoleSink(cfg.device))
        elif name == "jsonl":
            sinks.append(JsonlSink(cfg.device, cfg.events.jsonl_path or ""))
    return sinks


class Agent:
    """The running box: owns the pipeline and shuts it down cleanly on SIGINT/SIGTERM."""

    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self.detector = Detector(cfg.detector)
        self.source = open_source(cfg.source)
        self.pipeline = Pipeline(cfg, self.source, self.detector, build_sinks(cfg))

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.warning("signal %s: stopping", signal.Signals(signum).name)
        self.pipeline.stop()

    def run(self, duration: float | None = None) -> PipelineStats:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, self._on_signal)
        try:
            return self.pipeline.run(duration)
        finally:
            self.source.close()
