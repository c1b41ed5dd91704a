"""Commands: station -> box on ``cmd/<name>``, one final reply on ``reply/<request id>``.

The envelope (``CommandMsg``) is lenient like every message, its parameters are strict:
a misspelt ``form`` is an error, not silently dropped.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from roadside.wire.bounds import JsonObject, Sentence, Word
from roadside.wire.messages import Message
from roadside.wire.topics import REQUEST_ID_PATTERN, ULID_PATTERN

COMMANDS = ("clip", "snapshot", "cancel", "ping", "status", "get_config", "set_config")


class ErrorCode(StrEnum):
    """Reason codes of error replies and aborted transfers; ``detail`` says the same for people.

    Messages carry the code as a plain string, so a code a newer box adds still parses here.
    """

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
    BAD_CONFIG = "bad_config"  # a desired config does not validate (the config's own line)
    WOULD_DISCONNECT = "would_disconnect"  # the change may cut the box off: needs the flag
    ROLLED_BACK = "rolled_back"  # applied, not healthy, the previous config restored


class CommandMsg(Message):
    """A request to one box, published by the station on ``cmd/<name>`` (QoS 1).

    ``id`` is the request id: the box answers on ``reply/<id>`` and runs a request id at most
    once, across restarts. Unknown envelope keys are ignored (newer stations, older boxes);
    unknown *parameters* are an error, so a misspelt ``form`` is not silently dropped.
    """

    id: str = Field(pattern=REQUEST_ID_PATTERN)
    requester: str = Field(
        alias="by", min_length=1, max_length=128, description="who asked: officer@station"
    )
    params: dict[str, Any] = Field(
        default_factory=dict, alias="p", description="the command's parameters"
    )
    expires: float | None = Field(
        None, alias="exp", description="do not start after this time, epoch seconds"
    )


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
    """``cmd/ping``, ``cmd/status`` and ``cmd/get_config`` take none."""


class SetConfigParams(Params):
    """``cmd/set_config``: run this config document, keep it if the box stays healthy.

    The document is the agent config as written (``roadside.config.document``); a secret left
    as the box redacted it keeps the box's own value. The final reply comes after the health
    check: done (the new config is current) or error (refused, or rolled back).
    """

    config: dict[str, Any] = Field(alias="cfg", description="the desired config document")
    allow_disconnect: bool = Field(
        False, alias="ad", description="the change may cut the box off from the broker"
    )
    health_s: float | None = Field(
        None, alias="hs", ge=5, le=3600, description="health check, s (default: fleet.health_s)"
    )


PARAMS: dict[str, type[Params]] = {
    "clip": ClipParams,
    "snapshot": SnapshotParams,
    "cancel": CancelParams,
    "ping": NoParams,
    "status": NoParams,
    "get_config": NoParams,
    "set_config": SetConfigParams,
}


class ReplyState(StrEnum):
    """Where a request stands: still running (PROGRESS), or finally DONE or ERROR."""

    DONE = "done"
    ERROR = "error"
    PROGRESS = "progress"


class ReplyMsg(Message):
    """On ``reply/<request id>`` (QoS 1): progress while a job runs, then one final answer.

    ``id`` is this message's own id (a repeated final reply keeps it, so the station can drop
    the repeat); ``request_id`` is the request it answers. Final: state DONE with ``result``,
    or ERROR with ``code`` and ``detail``.
    """

    request_id: str = Field(alias="rq", pattern=REQUEST_ID_PATTERN)
    state: ReplyState = Field(alias="st")
    result: JsonObject | None = Field(None, alias="r", description="done: the result")
    code: Word | None = Field(None, description="error: a reason code (ErrorCode)")
    detail: Sentence | None = Field(
        None,
        alias="msg",
        description="error: what went wrong, for people; progress: what the box is doing",
    )
    progress: float | None = Field(
        None, alias="pg", ge=0, le=1, description="progress: fraction done"
    )
    transfer_id: str | None = Field(
        None,
        alias="xid",
        pattern=ULID_PATTERN,
        description="the transfer carrying the file, once there is one",
    )

    @property
    def final(self) -> bool:
        return self.state != ReplyState.PROGRESS
