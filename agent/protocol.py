"""The wire contract between boxes and the station: topics and message schemas, versioned.

Imported by the agent and by the central service alike; docs/protocol.md explains it for
people. Payloads are compact JSON with short keys; the device id travels in the topic only.
Every message carries ``v`` (schema version) and ``id`` (a ULID, unique across restarts), so
the station can deduplicate what at-least-once delivery repeats.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

VERSION = 1
ROOT = f"roadside/v{VERSION}"

Phase = Literal["s", "e"]  # start (track confirmed) / end (track gone)


def topic(device: str, kind: str) -> str:
    """``roadside/v1/<device>/<kind>``; ``kind`` may have several levels (``cmd/clip``)."""
    return f"{ROOT}/{device}/{kind}"


def device_of(topic_name: str) -> str | None:
    """The device id in a topic under ROOT, or None for anything else."""
    parts = topic_name.split("/")
    if len(parts) < 4 or "/".join(parts[:2]) != ROOT:
        return None
    return parts[2]


class Message(BaseModel):
    """Base of every message: unknown keys are ignored so newer boxes talk to older stations."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    v: int = VERSION
    id: str = Field(min_length=26, max_length=26)

    def encode(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()

    @classmethod
    def decode(cls, payload: bytes | str):  # noqa: ANN206 - returns the calling class
        return cls.model_validate_json(payload)


class EventMsg(Message):
    """One tracked object: sent once when confirmed (k="s") and once when it ends (k="e").

    Both messages share ``id`` (the event's id); (id, k) identifies a message. The end message
    supersedes the start one: best score, box and last-seen time are final there.
    """

    k: Phase
    c: str = Field(description="class label, e.g. car, person, motorcycle")
    s: float = Field(ge=0, le=1, description="best detection score so far")
    t0: float = Field(description="first seen, epoch seconds")
    t1: float = Field(description="last seen, epoch seconds")
    b: tuple[float, float, float, float] = Field(
        description="box at the best frame: x, y, w, h normalised to the frame (0..1)"
    )
    tr: int = Field(ge=0, description="tracker's track number (restarts with the agent)")
    dir: str | None = Field(None, description="direction of travel in the image: N, NE, … W")
    z: list[str] | None = Field(None, description="zones the object passed through")
    ns: Literal[1] | None = Field(None, description="1 when the box clock was not NTP-synced")


class CountMsg(Message):
    """Objects confirmed per class over one interval [t0, t1)."""

    t0: float
    t1: float
    n: dict[str, int]


def dumps_line(device: str, msg: Message) -> str:
    """One JSON line for console and file sinks: the message with its device."""
    body = json.loads(msg.encode())
    return json.dumps({"dev": device, "type": type(msg).__name__.removesuffix("Msg").lower(),
                       **body}, separators=(",", ":"))
