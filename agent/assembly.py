"""The agent assembled from its config: every part of the box and every connection, here.

Frames flow from the source through the capture taps, the motion gate, the detector and the
tracker; the events made from the tracks fan out to the sinks (the outbox first, then the
local logs, then the recorder), and the uplink sends the outbox to the station. Beside the
pipeline live the recorder, the hardware and the command side. Every part gets what it reads
or calls in its constructor; nothing wires itself in after construction.
"""

from __future__ import annotations

from roadside.agent.app import Agent
from roadside.agent.commands.service import CommandService
from roadside.agent.events.fanout import SinkFanout
from roadside.agent.events.sinks import local_sinks
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
from roadside.agent.vision.detector import Detector
from roadside.agent.vision.motion import MotionGate
from roadside.agent.vision.tracker import Tracker
from roadside.config.agent import AgentConfig


def assemble(cfg: AgentConfig) -> Agent:
    """The whole box, in the order data flows through it."""
    detector = Detector(cfg.detector)  # the model loads (or fails) before the camera opens
    source = open_source(cfg.source)
    latest = LatestFrame()
    stats = PipelineStats()
    uplink = (
        # the heartbeat reads the pipeline's counters once it runs
        Uplink.from_config(cfg, lambda: pipeline_counters(pipeline))
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
    commands = (
        CommandService(cfg, uplink, latest, clips=recorder.clips if recorder else None)
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
    )
    agent = Agent(source, pipeline, sinks, hardware, uplink, recorder, commands)
    if uplink is not None and cfg.update.enabled:
        agent.update = UpdateService(
            cfg.update, uplink, cfg.data_dir, lambda: box_health(hardware), agent.request_restart
        )
    return agent


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
