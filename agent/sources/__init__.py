"""Frame sources: video files, OpenCV devices and streams, the Raspberry Pi camera."""

from roadside.agent.sources.base import FrameSource, open_source

__all__ = ["FrameSource", "open_source"]
