"""Transfers: a file in chunks on ``xfer/<transfer id>/...`` (box to station) or
``dl/<transfer id>/...`` (station to box), acknowledged by the receiving side.

The manifest (``XferInit``), the receiver's acknowledgements (``XferAck``) and the sender's
abort are JSON messages; the data goes as binary chunks, each with a 16-byte header. The
same messages serve both directions.
"""

from __future__ import annotations

import struct
import zlib
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from roadside.wire.bounds import JsonObject, Sentence, Word
from roadside.wire.messages import Message
from roadside.wire.topics import REQUEST_ID_PATTERN, ULID_PATTERN

CHUNK_MAGIC = b"RC"
CHUNK_VERSION = 1
CHUNK_HEADER = struct.Struct(">2sBBIQ")  # magic, version, flags (0), crc32 of data, offset
MAX_ACK_RANGES = 64  # held ranges listed in one ack at most; later ones follow in later acks


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


class XferEvidence(BaseModel):
    """The box's signed manifest of the file (roadside/evidence.py signs and checks it)."""

    model_config = ConfigDict(
        extra="ignore", frozen=True, validate_by_name=True, validate_by_alias=True
    )

    manifest: str = Field(alias="m", max_length=2048, description="the signed canonical JSON")
    signature: str = Field(alias="sig", max_length=256, description="ECDSA, DER, base64")
    certificate: str = Field(
        alias="cert", max_length=4096, description="the device certificate, DER, base64"
    )


TransferKind = Literal["clip", "snapshot", "release"]  # release: station -> box


class XferInit(Message):
    """The manifest of one file (``id`` is the transfer id). Sent first, and again after a
    reconnect or a restart: the station answers with an XferAck saying what it holds."""

    kind: TransferKind
    request_id: str | None = Field(
        None, alias="rq", pattern=REQUEST_ID_PATTERN, description="request it serves"
    )
    requester: str | None = Field(None, alias="by", max_length=128, description="the requester")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", description="file name")
    size: int = Field(ge=0, le=1 << 40, description="bytes")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="of the whole file")
    chunk_size: int = Field(
        alias="cs", ge=1024, le=1 << 20, description="chunk size, bytes (the last is shorter)"
    )
    at: float = Field(alias="t", description="when the transfer was made, epoch seconds")
    expires: float | None = Field(
        None, alias="exp", description="the box gives up at this time, epoch seconds"
    )
    asking: int = Field(
        0, alias="q", ge=0, description="which asking this is; the answering ack echoes it"
    )
    meta: JsonObject = Field(
        default_factory=dict,
        description="what the file is: asked and actual range, quality, gaps, event id",
    )
    evidence: XferEvidence | None = Field(
        None, alias="ev", description="box uploads: the box's signed manifest of the file"
    )

    @property
    def chunks(self) -> int:
        return max(1, -(-self.size // self.chunk_size))


class XferAckState(StrEnum):
    """The station's view of one transfer."""

    RECEIVING = "recv"  # chunks are arriving; the ack says which are held
    DONE = "done"  # the whole file arrived and its sha256 matched
    FAILED = "fail"  # given up (why in code and detail)
    UNKNOWN = "unknown"  # no manifest seen: send init


class XferAck(Message):
    """The station's view of one transfer, on ``xfer/<xid>/ack`` (``id``: this message's).

    ``held`` chunks are held from the start; ``ranges`` lists more held ranges of chunk
    indexes [a, b) beyond them (selective acknowledgement).
    """

    transfer_id: str = Field(alias="x", pattern=ULID_PATTERN, description="the transfer id")
    state: XferAckState = Field(alias="st")
    held: int = Field(0, alias="n", ge=0, description="chunks held from the start")
    ranges: list[tuple[int, int]] = Field(
        default_factory=list,
        alias="r",
        max_length=MAX_ACK_RANGES,
        description="more held chunk ranges [a, b)",
    )
    asking: int | None = Field(None, alias="q", description="the ``q`` of the init this answers")
    code: Word | None = Field(None, description="fail: a reason code (ErrorCode)")
    detail: Sentence | None = Field(None, alias="msg", description="fail: why, for people")


class XferAbort(Message):
    """The box abandons a transfer (cancelled, past its deadline): the station drops it."""

    code: Word = Field(description="a reason code (ErrorCode)")
    detail: Sentence = Field(alias="msg", description="why, for people")
