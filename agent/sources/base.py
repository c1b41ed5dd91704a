"""The one small interface every camera source implements, and the factory from config."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from roadside.agent.frames import Frame
from roadside.config.agent import SourceConfig


class FrameSource(Protocol):
    """A camera, a stream or a file.

    ``read`` blocks until the next frame and returns None only at a true end (a file played
    once); live sources reconnect on their own and never return None.
    """

    fps: float
    live: bool

    def open(self) -> None: ...

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...


class PacketSink(Protocol):
    """Where a camera's own H.264 goes: the recorder. Called on the camera's encoder thread,
    so it must not block (the recorder queues)."""

    def write_packet(self, data: bytes, pts_s: float, keyframe: bool) -> None: ...


@runtime_checkable
class EncodingSource(Protocol):
    """A camera that encodes H.264 itself (the Pi camera): its packets go to the recorder as
    they are, instead of frames from a capture tap."""

    def attach_recorder(self, sink: PacketSink) -> None: ...


@runtime_checkable
class NightAware(Protocol):
    """A camera with night settings (the Pi camera), told of each day/night switch."""

    def set_night(self, night: bool) -> None: ...


def open_source(cfg: SourceConfig) -> FrameSource:
    """Build the source named by the config; camera modules are imported only when used."""
    if cfg.kind == "file":
        from roadside.agent.sources.file import FileSource

        source: FrameSource = FileSource(cfg.path or "", loop=cfg.loop, pace=cfg.pace)
    elif cfg.kind in ("device", "rtsp"):
        from roadside.agent.sources.stream import StreamSource

        source = StreamSource.from_config(cfg)
    else:
        from roadside.agent.sources.picamera import Picamera2Source

        source = Picamera2Source.from_config(cfg)
    source.open()
    return source
