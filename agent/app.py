"""Assembling the agent from its config: source, detector, pipeline and sinks."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from roadside.agent.commands.service import CommandService
from roadside.agent.events.sinks import ConsoleSink, JsonlSink, Sink
from roadside.agent.hardware.alerts import SharedSinks
from roadside.agent.hardware.box import BoxHardware
from roadside.agent.hardware.liveness import LinkSummary
from roadside.agent.pipeline import Pipeline, PipelineStats
from roadside.agent.recording.recorder import Recorder
from roadside.agent.sources import open_source
from roadside.agent.uplink import Uplink
from roadside.agent.uplink.heartbeat import pipeline_counters
from roadside.agent.vision.detector import Detector
from roadside.config.agent import AgentConfig

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
        sinks = build_sinks(cfg)
        # The station link: events go to a durable outbox; the uplink sends it to the broker.
        self.uplink: Uplink | None = None
        if "mqtt" in cfg.events.sinks:
            self.uplink = Uplink.from_config(cfg, lambda: pipeline_counters(self.pipeline))
            # The outbox goes first: a message reaches a local log (jsonl, console) only once
            # it is durable for the station, so a kill between the two can never leave a
            # logged message that was not queued.
            sinks.insert(0, self.uplink.sink)
        # The pipeline and hardware alerts (a forced door) share the sinks under one lock.
        self.sinks = SharedSinks(sinks)
        self.pipeline = Pipeline(cfg, self.source, self.detector, [self.sinks])
        # Recording: its own thread, fed by a capture tap (or the Pi camera's own encoder),
        # told of events (a forced door too) as one of the shared sinks; None when off.
        self.recorder = Recorder.from_config(cfg, live=self.source.live)
        if self.recorder is not None:
            self.recorder.attach(self.pipeline, self.source, self.sinks.sinks)
        self.hardware = BoxHardware(
            cfg,
            self.pipeline,
            publish=self.sinks.publish,
            link=self._link_state if self.uplink else None,
        )
        # Requests from the station (clips, snapshots) and the uploads that answer them.
        self.commands: CommandService | None = None
        if self.uplink is not None and cfg.commands.enabled:
            self.commands = CommandService(
                cfg,
                self.uplink,
                self.pipeline,
                clips=self.recorder.clips if self.recorder else None,
            )

    def _link_state(self) -> LinkSummary | None:
        if self.uplink is None:
            return None
        return LinkSummary(self.uplink.connected, self.uplink.queued)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.warning("signal %s: stopping", signal.Signals(signum).name)
        self.pipeline.stop()

    def run(self, duration: float | None = None) -> PipelineStats:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, self._on_signal)
        if self.commands is not None:
            self.commands.start()  # subscribes before the uplink's first connect
        if self.uplink is not None:
            self.uplink.start()
        self.hardware.start()
        if self.recorder is not None:
            self.recorder.start()
        try:
            return self.pipeline.run(duration)
        finally:
            self.hardware.stop()
            self.source.close()
            if self.recorder is not None:
                self.recorder.stop()  # after the source: the camera's last packets are in
            if self.commands is not None:
                self.commands.stop()
            if self.uplink is not None:
                self.uplink.stop()  # after the pipeline's last messages are in the outbox
