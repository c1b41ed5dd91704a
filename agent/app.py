"""The running agent: start the assembled parts, run the pipeline, stop them in reverse.

The parts and their connections are made in ``assembly.assemble``; this module owns their
life cycle and stops it cleanly on SIGINT/SIGTERM.
"""

from __future__ import annotations

import logging
import signal
import threading
from dataclasses import dataclass
from types import FrameType

from roadside.agent.commands.service import CommandService
from roadside.agent.events.fanout import SinkFanout
from roadside.agent.fleet.restart import RestartRequest
from roadside.agent.hardware.box import BoxHardware
from roadside.agent.pipeline import Pipeline, PipelineStats
from roadside.agent.recording.recorder import Recorder
from roadside.agent.sources.base import FrameSource
from roadside.agent.update.service import UpdateService
from roadside.agent.uplink import Uplink

log = logging.getLogger(__name__)


@dataclass
class Agent:
    """The box's parts that have a life of their own (threads, devices, files).

    ``uplink``, ``recorder``, ``commands`` and ``update`` are None when the config leaves
    them out. ``restart`` is asked when the agent must stop to be started again (a config
    change or a release to apply or undo): ``roadside agent run`` then exits with
    ``ExitCode.RESTART`` and systemd starts it again.
    """

    source: FrameSource
    pipeline: Pipeline
    sinks: SinkFanout
    hardware: BoxHardware
    uplink: Uplink | None = None
    recorder: Recorder | None = None
    commands: CommandService | None = None
    update: UpdateService | None = None
    restart: RestartRequest | None = None

    @property
    def restart_asked(self) -> bool:
        return self.restart is not None and self.restart.asked

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        log.warning("signal %s: stopping", signal.Signals(signum).name)
        self.pipeline.stop()

    def run(self, duration: float | None = None) -> PipelineStats:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, self._on_signal)
        if self.commands is not None:
            self.commands.start()  # subscribes before the uplink's first connect
        if self.update is not None:
            self.update.start()  # the same
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
            if self.update is not None:
                self.update.stop()
            if self.uplink is not None:
                self.uplink.stop()  # after the pipeline's last messages are in the outbox
