"""The one small interface every camera source implements, and the factory from config."""

from __future__ import annotations

from typing import Protocol

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
