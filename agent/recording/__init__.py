"""Recording: the segment ring on disk, the pre-roll in RAM, and clips cut from them.

``Recorder`` (its own thread) takes frames or camera packets and events; ``SegmentRing``
keeps the segments within the budget; ``ClipCutter`` cuts wall-time ranges into MP4 by
stream copy. docs/recording.md explains the whole.
"""

from roadside.agent.recording.clipcut import ClipCutter, ClipResult
from roadside.agent.recording.errors import NoFootageError, RecordingError
from roadside.agent.recording.recorder import Recorder

__all__ = ["ClipCutter", "ClipResult", "NoFootageError", "Recorder", "RecordingError"]
