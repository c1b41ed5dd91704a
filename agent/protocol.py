"""The wire contract between boxes and the station: topics and message schemas, versioned.

Imported by the agent and by the central service alike; docs/protocol.md explains it for
people. Payloads are compact JSON with short keys; the device id travels in the topic only.
Every message carries ``v`` (schema version) and ``id`` (a ULID, unique across restarts), so
the station can deduplicate what at-least-once delivery repeats.
"""

from __future__ import annotations

import json
import struct
import zlib
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

VERSION = 1
ROOT = f"roadside/v{VERSION}"

Phase = Literal["s", "e"]  # start (track confirmed) / end (track gone)

# Topic kinds under roadside/v1/<device>/ (docs/protocol.md lists QoS and retain for each).
STATUS = "status"  # retained: online / offline (also the last will)
EVENT = "event"
COUNT = "count"
HEALTH = "health"
CMD = "cmd"  # cmd/<name>: station -> box
REPLY = "reply"  # reply/<request id>: box -> station
XFER = "xfer"  # xfer/<transfer id>/...: box -> station, chunked uploads


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
    def decode(cls, payload: bytes | str):
        return cls.model_validate_json(payload)


# Colour names an event may carry (``col``): what the box reads at the object's best frame.
COLOURS = ("white", "grey", "black", "red", "orange", "yellow", "green", "blue", "purple", "brown")


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
    col: str | None = Field(
        None, max_length=12, description="named colour at the best frame: white, red, …"
    )


class CountMsg(Message):
    """Objects confirmed per class over one interval [t0, t1), and counting-line crossings."""

    t0: float
    t1: float
    n: dict[str, int]
    ln: dict[str, dict[str, dict[str, Annotated[int, Field(ge=0)]]]] | None = Field(
        None, description="line crossings: {line: {class: {direction: n}}}; absent when none"
    )


def dumps_line(device: str, msg: Message) -> str:
    """One JSON line for console and file sinks: the message with its device."""
    body = json.loads(msg.encode())
    return json.dumps(
        {"dev": device, "type": type(msg).__name__.removesuffix("Msg").lower(), **body},
        separators=(",", ":"),
    )


class StatusMsg(Message):
    """Retained at ``.../status``: whether the box is on the link, and what it runs.

    ``online`` is sent on every connect; the broker publishes the ``offline`` last will (``why``
    = "lost") when the link dies without a goodbye; a clean stop sends ``offline`` with
    ``why`` = "stop" itself.
    """

    st: Literal["online", "offline"]
    t: float = Field(description="when the box produced this status, epoch seconds")
    why: Literal["stop", "lost"] | None = Field(None, description="offline only: the cause")
    sw: str | None = Field(None, description="software version")
    m: str | None = Field(None, description="detector model name")
    cfg: str | None = Field(None, description="config hash: first 12 hex digits of sha256")


class HealthMsg(Message):
    """Periodic heartbeat (``.../health``). Readings a box cannot take are left out."""

    t: float = Field(description="when measured, epoch seconds")
    up: int | None = Field(None, description="system uptime, s")
    au: int | None = Field(None, description="agent uptime, s")
    ld: float | None = Field(None, description="1-minute load average")
    tc: float | None = Field(None, description="CPU temperature, °C")
    thr: int | None = Field(None, description="Raspberry Pi throttled flags (get_throttled)")
    mem: tuple[int, int] | None = Field(None, description="memory used, total: MiB")
    dk: dict[str, float] | None = Field(
        None,
        description="disk, MiB: used/free of the data filesystem, seg/ob held by "
        "segments and outbox",
    )
    fi: int | None = Field(None, ge=0, description="frames captured since start")
    fo: int | None = Field(None, ge=0, description="frames processed since start")
    fd: int | None = Field(None, ge=0, description="frames dropped (detection behind)")
    dl: float | None = Field(None, ge=0, description="last detector latency, ms")
    ob: int | None = Field(None, ge=0, description="outbox depth, messages waiting")
    od: dict[str, int] | None = Field(
        None, description="outbox losses by kind since the outbox was made (drops, folds)"
    )
    ln: Literal[0, 1] | None = Field(None, description="1 when the link was up at ``t``")
    rc: int | None = Field(None, ge=0, description="reconnects since the agent started")
    ck: Literal[0, 1] | None = Field(None, description="1 when the clock is NTP-synchronised")


MESSAGES: dict[str, type[Message]] = {
    EVENT: EventMsg,
    COUNT: CountMsg,
    STATUS: StatusMsg,
    HEALTH: HealthMsg,
}


def kind_of(topic_name: str) -> str | None:
    """The kind part of a topic under ROOT (``event``, ``cmd/clip`` …), or None."""
    parts = topic_name.split("/")
    if device_of(topic_name) is None:
        return None
    return "/".join(parts[3:])


# -- commands: station -> box on cmd/<name>, one final reply on reply/<request id> -------------
# A request id names the reply topic, so it is restricted to characters safe in a topic level.
REQUEST_ID_PATTERN = r"^[0-9A-Za-z_-]{1,64}$"
ULID_PATTERN = r"^[0-9A-HJKMNP-TV-Z]{26}$"
COMMANDS = ("clip", "snapshot", "cancel", "ping", "status")


class ErrorCode:
    """Reason codes of error replies; the reply's ``msg`` says the same for people."""

    BAD_REQUEST = "bad_request"  # not JSON, not an object, a field of the envelope is wrong
    UNKNOWN_COMMAND = "unknown_command"
    BAD_PARAMS = "bad_params"  # a parameter is missing, of the wrong type, or unknown
    OUT_OF_RANGE = "out_of_range"  # times outside the footage the box holds
    TOO_LARGE = "too_large"  # the request, or the file it asks for, is over a limit
    NOT_FOUND = "not_found"  # the event, request or transfer named is not known here
    BUSY = "busy"  # too many jobs waiting on the box
    EXPIRED = "expired"  # the request's ``exp`` passed before the box could start it
    CANCELLED = "cancelled"
    DEADLINE = "deadline"  # the upload did not finish in the configured time
    UNAVAILABLE = "unavailable"  # the box has no recording (or camera) to serve it from
    FAILED = "failed"  # the job failed on the box (the sentence says why)


class CommandMsg(Message):
    """A request to one box, published by the station on ``cmd/<name>`` (QoS 1).

    ``id`` is the request id: the box answers on ``reply/<id>`` and runs a request id at most
    once, across restarts. Unknown envelope keys are ignored (newer stations, older boxes);
    unknown *parameters* are an error, so a misspelt ``form`` is not silently dropped.
    """

    id: str = Field(pattern=REQUEST_ID_PATTERN)
    by: str = Field(min_length=1, max_length=128, description="who asked: officer@station")
    p: dict[str, Any] = Field(default_factory=dict, description="the command's parameters")
    exp: float | None = Field(None, description="do not start after this time, epoch seconds")


class Params(BaseModel):
    """Base of command parameters: unknown keys are errors."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, strict=True, allow_inf_nan=False
    )


class ClipParams(Params):
    """``cmd/clip``: footage from ``from`` to ``to`` (epoch seconds), cut without re-encoding."""

    start: float = Field(alias="from", description="start of the range, epoch seconds")
    end: float = Field(alias="to", description="end of the range, epoch seconds")
    quality: Literal["original", "low"] = Field(
        "original", description="original: stream copy; low: transcoded down for a slow link"
    )
    max_bytes: int | None = Field(
        None, ge=1024, le=1 << 40, description="refuse rather than send a file larger than this"
    )

    @model_validator(mode="after")
    def _ordered(self) -> ClipParams:
        if self.end <= self.start:
            raise ValueError("'to' must be after 'from'")
        return self


class SnapshotParams(Params):
    """``cmd/snapshot``: a small JPEG of now, or the best frame of an event."""

    event: str | None = Field(None, pattern=ULID_PATTERN, description="an event id")


class CancelParams(Params):
    """``cmd/cancel``: stop a clip or snapshot request, named by its request or transfer id."""

    target: str = Field(pattern=REQUEST_ID_PATTERN)


class NoParams(Params):
    """``cmd/ping`` and ``cmd/status`` take none."""


PARAMS: dict[str, type[Params]] = {
    "clip": ClipParams,
    "snapshot": SnapshotParams,
    "cancel": CancelParams,
    "ping": NoParams,
    "status": NoParams,
}

ReplyState = Literal["done", "error", "progress"]


class ReplyMsg(Message):
    """On ``reply/<request id>`` (QoS 1): progress while a job runs, then one final answer.

    ``id`` is this message's own id (a repeated final reply keeps it, so the station can drop
    the repeat); ``rq`` is the request it answers. Final: ``st`` = "done" with ``r``, or
    "error" with ``code`` and ``msg``.
    """

    rq: str = Field(pattern=REQUEST_ID_PATTERN)
    st: ReplyState
    r: dict[str, Any] | None = Field(None, description="done: the result")
    code: str | None = Field(None, description="error: a reason code (ErrorCode)")
    msg: str | None = Field(
        None, description="error: what went wrong, for people; progress: what the box is doing"
    )
    pg: float | None = Field(None, ge=0, le=1, description="progress: fraction done")
    xid: str | None = Field(None, description="the transfer carrying the file, once there is one")

    @property
    def final(self) -> bool:
        return self.st != "progress"


# -- transfers: a file in chunks on xfer/<transfer id>/..., acknowledged by the station -------
XFER_INIT = "init"  # box -> station, QoS 1, JSON XferInit; sent again to ask what is held
XFER_DATA = "d"  # box -> station, QoS 0, binary: CHUNK_HEADER + data
XFER_ABORT = "abort"  # box -> station, QoS 1, JSON XferAbort
XFER_ACK = "ack"  # station -> box, QoS 1, JSON XferAck

CHUNK_MAGIC = b"RC"
CHUNK_VERSION = 1
CHUNK_HEADER = struct.Struct(">2sBBIQ")  # magic, version, flags (0), crc32 of data, offset


def xfer_topic(device: str, xid: str, part: str) -> str:
    """``roadside/v1/<device>/xfer/<xid>/<part>``."""
    return topic(device, f"{XFER}/{xid}/{part}")


def pack_chunk(offset: int, data: bytes) -> bytes:
    """One data message: a 16-byte header (offset and CRC-32 of the data), then the data."""
    return CHUNK_HEADER.pack(CHUNK_MAGIC, CHUNK_VERSION, 0, zlib.crc32(data), offset) + data


def unpack_chunk(payload: bytes) -> tuple[int, bytes]:
    """(offset, data) of a data message; ValueError when it is damaged or not one."""
    if len(payload) < CHUNK_HEADER.size:
        raise ValueError("shorter than a chunk header")
    magic, version, _flags, crc, offset = CHUNK_HEADER.unpack_from(payload)
    if magic != CHUNK_MAGIC or version != CHUNK_VERSION:
        raise ValueError("not a version 1 chunk")
    data = payload[CHUNK_HEADER.size :]
    if zlib.crc32(data) != crc:
        raise ValueError(f"chunk at offset {offset}: CRC-32 mismatch")
    return offset, data


class XferInit(Message):
    """The manifest of one file (``id`` is the transfer id). Sent first, and again after a
    reconnect or a restart: the station answers with an XferAck saying what it holds."""

    kind: Literal["clip", "snapshot"]
    rq: str | None = Field(None, pattern=REQUEST_ID_PATTERN, description="request it serves")
    by: str | None = Field(None, max_length=128, description="the requester")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", description="file name")
    size: int = Field(ge=0, le=1 << 40, description="bytes")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="of the whole file")
    cs: int = Field(ge=1024, le=1 << 20, description="chunk size, bytes (the last is shorter)")
    t: float = Field(description="when the transfer was made, epoch seconds")
    exp: float | None = Field(None, description="the box gives up at this time, epoch seconds")
    q: int = Field(0, ge=0, description="which asking this is; the answering ack echoes it")
    meta: dict[str, Any] = Field(
        default_factory=dict,
        description="what the file is: asked and actual range, quality, gaps, event id",
    )

    @property
    def chunks(self) -> int:
        return max(1, -(-self.size // self.cs))


XferAckState = Literal["recv", "done", "fail", "unknown"]


class XferAck(Message):
    """The station's view of one transfer, on ``xfer/<xid>/ack`` (``id``: this message's).

    ``n`` chunks are held from the start; ``r`` lists more held ranges of chunk indexes
    [a, b) beyond them (selective acknowledgement). ``done``: the whole file arrived and its
    sha256 matched; ``unknown``: no manifest seen (send ``init``); ``fail``: given up (why in
    ``code`` and ``msg``).
    """

    x: str = Field(pattern=ULID_PATTERN, description="the transfer id")
    st: XferAckState
    n: int = Field(0, ge=0)
    r: list[tuple[int, int]] = Field(default_factory=list)
    q: int | None = Field(None, description="the ``q`` of the init this answers")
    code: str | None = None
    msg: str | None = None


class XferAbort(Message):
    """The box abandons a transfer (cancelled, past its deadline): the station drops it."""

    code: str
    msg: str
