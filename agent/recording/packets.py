"""The unit the recorder stores: one encoded H.264 access unit on the monotonic clock."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class EncodedPacket:
    """One H.264 access unit in Annex B form (start codes, SPS/PPS before each keyframe).

    ``pts`` and ``dts`` are monotonic seconds (the capture clock, immune to wall-clock steps):
    ``pts`` when the picture was taken, ``dts`` when it must be decoded (earlier with B-frames;
    equal without). Keyframes are IDR pictures: a segment or a clip may start at one.
    """

    data: bytes
    pts: float
    dts: float
    keyframe: bool

    @property
    def size(self) -> int:
        return len(self.data)
