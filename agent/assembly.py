"""The agent assembled from its config: every part of the box and every connection, here.

Frames flow from the source through the capture taps, the motion gate, the detector and the
tracker; the events made from the tracks fan out to the sinks (the outbox first, then the
local logs, then the recorder), and the uplink sends the outbox to the station. Beside the
pipeline live the recorder, the hardware and the command side, with the config service that
takes config changes from the station when the agent runs from a config file (``local``).
Every part gets what it reads or calls in its constructor; nothing wires itself in after
construction.
"""

from __future__ import annotations

import threading

from roadside import __version__
from roadside.agent.app import Agent
from roadside.agent.commands.service import CommandService
from roadside.agent.events.fanout import SinkFanout
from roadside.agent.events.sinks import local_sinks
from roadside.agent.fleet.local import LocalConfig
from roadside.agent.fleet.restart import RestartRequest
from roadside.agent.fleet.service import ConfigService
from roadside.agent.frames import LatestFrame
from roadside.agent.hardware.box import BoxHardware
from roadside.agent.hardware.liveness import BoxState, link_probe
from roadside.agent.pipeline import Pipeline, PipelineStats
from roadside.agent.recording.recorder import Recorder
from roadside.agent.sources import open_source
from roadside.agent.sources.base import EncodingSource, FrameSource, NightAware
from roadside.agent.sources.feed import FrameTap
from roadside.agent.update.service import UpdateService
from roadside.agent.uplink import Uplink
from roadside.agent.uplink.heartbeat import pipeline_counters
from roadside.agent.uplink.status import StatusReporter
from roadside.agent.vision.detector import Detector
from roadside.agent.vision.motion import MotionGate
from roadside.agent.vision.tracker import Tracker
from roadside.config.agent import AgentConfig
from roadside.config.document import config_hash


def assemble(cfg: AgentConfig, local: LocalConfig | None = None) -> Agent:
    """The whole box, in the order data flows through it; ``local`` is the config file it
    was read from (with its trial record), which config changes replace."""
    detector = Detector(cfg.detector)  # the model loads (or fails) before the camera opens
    source = open_source(cfg.source)
    latest = LatestFrame()
    stats = PipelineStats()
    stop = threading.Event()  # ends the pipeline: a signal, or a restart to apply a config
    restart = RestartRequest(stop)
    current, trial = local.status_hashes(cfg) if local else (config_hash(cfg), None)
    status = StatusReporter(__version__, cfg.detector.model, current, trial)
    uplink = (
        # the heartbeat reads the pipeline's counters once it runs
        Uplink.from_config(cfg, lambda: pipeline_counters(pipeline), status)
        if "mqtt" in cfg.events.sinks
        else None
    )
    recorder = Recorder.from_config(cfg, live=source.live)
    sinks = SinkFanout(
        [
            *([uplink.sink] if uplink else []),  # durable for the station before any local log
            *local_sinks(cfg.events, cfg.device),
            *([recorder] if recorder else []),  # every event marks footage
        ]
    )
    hardware = BoxHardware(
        cfg,
        stats,
        MotionGate(cfg.motion),
        latest,
        publish=sinks.publish,
        night=[source.set_night] if isinstance(source, NightAware) else [],
        link=link_probe(uplink) if uplink else None,
    )
    config = (
        ConfigService(
            cfg,
            local,
            restart,
            status,
            uplink.refresh_status,
            uplink,
            hardware.watchdog.liveness if hardware.watchdog else None,
            stats,
        )
        if local is not None and uplink is not None
        else None
    )
    commands = (
        CommandService(
            cfg, uplink, latest, clips=recorder.clips if recorder else None, config=config
        )
        if uplink is not None and cfg.commands.enabled
        else None
    )
    pipeline = Pipeline(
        cfg,
        source,
        taps=[latest, *recording_taps(recorder, source), *hardware.taps],
        gate=hardware.gate,
        detector=detector,
        tracker=Tracker(cfg.tracker),
        observers=[commands.best.observe] if commands else [],
        sinks=[sinks],
        stats=stats,
        stop_event=stop,
    )
    update = (
        UpdateService(cfg.update, uplink, cfg.data_dir, lambda: box_health(hardware), restart.ask)
        if uplink is not None and cfg.update.enabled
        else None
    )
    return Agent(source, pipeline, sinks, hardware, uplink, recorder, commands, update, restart)


def box_health(hardware: BoxHardware) -> tuple[bool, str]:
    """What a release on trial must show: frames and the detector flowing (the watchdog
    pings systemd) and the link to the station up."""
    watchdog = hardware.watchdog
    if watchdog is None:
        return False, "no watchdog to judge health"
    state = watchdog.state
    return state is BoxState.ONLINE, f"box {state.value}"


def recording_taps(recorder: Recorder | None, source: FrameSource) -> list[FrameTap]:
    """Connects the recorder to the camera: a camera that encodes H.264 itself (the Pi camera)
    hands it its packets as they are; any other source is recorded from a capture tap."""
    if recorder is None:
        return []
    if isinstance(source, EncodingSource):
        source.attach_recorder(recorder)
        return []
    return [recorder.submit]
