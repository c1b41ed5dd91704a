"""What boxes report: the message base, and the event, count, status and health messages.

Payloads are compact JSON with short keys; the device id travels in the topic only. Code
reads and writes the long field names; each field's alias is its key on the wire, so
``encode`` and ``decode`` speak the short keys and nothing else. Every message carries ``v``
(schema version) and ``id`` (a ULID, unique across restarts), so the station can deduplicate
what at-least-once delivery repeats.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

from roadside.wire.bounds import (
    INT32_MAX,
    MAX_LABELS,
    MAX_ZONES,
    Amount,
    Direction,
    Integer,
    Name,
    Word,
)
from roadside.wire.topics import COUNT, EVENT, HEALTH, STATUS, VERSION


class Message(BaseModel):
    """Base of every message: unknown keys are ignored so newer boxes talk to older stations.

    Values are bounded as ``roadside.wire.bounds`` says: no NaN or infinity anywhere.
    """

    model_config = ConfigDict(
        extra="ignore",
        frozen=True,
        validate_by_name=True,
        validate_by_alias=True,
        allow_inf_nan=False,
    )

    version: int = Field(VERSION, alias="v", description="schema version")
    id: str = Field(min_length=26, max_length=26)

    def encode(self) -> bytes:
        """The wire form: compact JSON under the short keys, absent values left out."""
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()

    @classmethod
    def decode(cls, payload: bytes | bytearray | str) -> Self:
        """Parse a wire payload; only the short keys count (raises ValidationError)."""
        return cls.model_validate_json(payload, by_alias=True, by_name=False)

    @classmethod
    def from_wire(cls, data: Any) -> Self:
        """Like ``decode``, for a payload already parsed from JSON."""
        return cls.model_validate(data, by_alias=True, by_name=False)


class EventPhase(StrEnum):
    """Which of an event's two messages this is."""

    START = "s"  # the track was confirmed
    END = "e"  # the track is gone


# Colour names an event may carry (``col``): what the box reads at the object's best frame.
COLOURS = ("white", "grey", "black", "red", "orange", "yellow", "green", "blue", "purple", "brown")


class EventMsg(Message):
    """One tracked object: sent once when confirmed (phase START) and once when it ends (END).

    Both messages share ``id`` (the event's id); (id, phase) identifies a message. The end
    message supersedes the start one: best score, box and last-seen time are final there.
    """

    phase: EventPhase = Field(alias="k")
    label: Name = Field(alias="c", description="class label, e.g. car, person, motorcycle")
    score: float = Field(alias="s", ge=0, le=1, description="best detection score so far")
    first_seen: float = Field(alias="t0", description="first seen, epoch seconds")
    last_seen: float = Field(alias="t1", description="last seen, epoch seconds")
    box: tuple[float, float, float, float] = Field(
        alias="b", description="box at the best frame: x, y, w, h normalised to the frame (0..1)"
    )
    track: int = Field(
        alias="tr",
        ge=0,
        le=INT32_MAX,
        description="tracker's track number (restarts with the agent)",
    )
    direction: Direction | None = Field(
        None, alias="dir", description="direction of travel in the image: N, NE, … W"
    )
    zones: list[Name] | None = Field(
        None, alias="z", max_length=MAX_ZONES, description="zones the object passed through"
    )
    unsynced: Literal[1] | None = Field(
        None, alias="ns", description="1 when the box clock was not NTP-synced"
    )
    colour: str | None = Field(
        None,
        alias="col",
        max_length=12,
        description="named colour at the best frame: white, red, …",
    )


# {line: {class: {direction: crossings}}}; ``line_counts.n`` is an INTEGER column
Crossings = Annotated[
    dict[Direction, Annotated[int, Field(ge=0, le=INT32_MAX)]], Field(max_length=16)
]
CrossingsByClass = Annotated[dict[Name, Crossings], Field(max_length=MAX_LABELS)]
LineCounts = Annotated[dict[Name, CrossingsByClass], Field(max_length=MAX_ZONES)]


class CountMsg(Message):
    """Objects confirmed per class over one interval [start, end), and counting-line crossings."""

    start: float = Field(alias="t0", description="start of the interval, epoch seconds")
    end: float = Field(alias="t1", description="end of the interval, epoch seconds")
    counts: dict[Name, Amount] = Field(
        alias="n", max_length=MAX_LABELS, description="objects confirmed, by class label"
    )
    lines: LineCounts | None = Field(
        None,
        alias="ln",
        description="line crossings: {line: {class: {direction: n}}}; absent when none",
    )


class Presence(StrEnum):
    """Whether a box is on the link (its retained status)."""

    ONLINE = "online"
    OFFLINE = "offline"


class OfflineReason(StrEnum):
    """Why a box went offline."""

    STOP = "stop"  # a clean stop said goodbye
    LOST = "lost"  # the broker published the last will


class StatusMsg(Message):
    """Retained at ``.../status``: whether the box is on the link, and what it runs.

    ``online`` is sent on every connect; the broker publishes the ``offline`` last will
    (reason LOST) when the link dies without a goodbye; a clean stop sends ``offline`` with
    reason STOP itself.
    """

    state: Presence = Field(alias="st")
    at: float = Field(alias="t", description="when the box produced this status, epoch seconds")
    reason: OfflineReason | None = Field(None, alias="why", description="offline only: the cause")
    software: Word | None = Field(None, alias="sw", description="software version")
    model: Word | None = Field(None, alias="m", description="detector model name")
    config_hash: Word | None = Field(
        None, alias="cfg", description="config hash: first 12 hex digits of sha256"
    )
    config_trial: Word | None = Field(
        None,
        alias="cft",
        description="hash of a config on trial: running, not yet confirmed healthy",
    )


class HealthMsg(Message):
    """Periodic heartbeat (``.../health``). Readings a box cannot take are left out."""

    at: float = Field(alias="t", description="when measured, epoch seconds")
    uptime_s: Integer | None = Field(None, alias="up", description="system uptime, s")
    agent_uptime_s: Integer | None = Field(None, alias="au", description="agent uptime, s")
    load_1m: float | None = Field(None, alias="ld", description="1-minute load average")
    cpu_temp_c: float | None = Field(None, alias="tc", description="CPU temperature, °C")
    throttled: Integer | None = Field(
        None, alias="thr", description="Raspberry Pi throttled flags (get_throttled)"
    )
    memory_mib: tuple[Integer, Integer] | None = Field(
        None, alias="mem", description="memory used, total: MiB"
    )
    disk_mib: dict[Name, float] | None = Field(
        None,
        max_length=MAX_LABELS,
        alias="dk",
        description="disk, MiB: used/free of the data filesystem, seg/ob held by "
        "segments and outbox; full=1 while the card is full (the outbox sheds)",
    )
    frames_in: Amount | None = Field(
        None, alias="fi", ge=0, description="frames captured since start"
    )
    frames_out: Amount | None = Field(
        None, alias="fo", ge=0, description="frames processed since start"
    )
    frames_dropped: Amount | None = Field(
        None, alias="fd", ge=0, description="frames dropped (detection behind)"
    )
    detect_latency_ms: float | None = Field(
        None, alias="dl", ge=0, description="last detector latency, ms"
    )
    outbox_depth: Amount | None = Field(
        None, alias="ob", ge=0, description="outbox depth, messages waiting"
    )
    outbox_losses: dict[Name, Integer] | None = Field(
        None,
        max_length=MAX_LABELS,
        alias="od",
        description="outbox losses by kind since the outbox was made (drops, folds)",
    )
    link_up: Literal[0, 1] | None = Field(
        None, alias="ln", description="1 when the link was up at ``at``"
    )
    reconnects: Amount | None = Field(
        None, alias="rc", ge=0, description="reconnects since the agent started"
    )
    clock_synced: Literal[0, 1] | None = Field(
        None, alias="ck", description="1 when the clock is NTP-synchronised"
    )


MESSAGES: dict[str, type[Message]] = {
    EVENT: EventMsg,
    COUNT: CountMsg,
    STATUS: StatusMsg,
    HEALTH: HealthMsg,
}


def dumps_line(device: str, msg: Message) -> str:
    """One JSON line for console and file sinks: the message's wire form with its device."""
    body = json.loads(msg.encode())
    return json.dumps(
        {"dev": device, "type": type(msg).__name__.removesuffix("Msg").lower(), **body},
        separators=(",", ":"),
    )
