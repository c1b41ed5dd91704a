"""Software updates: what a box says about them, retained on ``update`` (box -> station).

The release itself travels as a chunked transfer on ``dl/<transfer id>/...`` (station to
box, kind ``release``, ``meta.version`` naming it); the box answers every step of taking it
on its retained ``update`` topic, so the station sees each box's last word at once.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from roadside.wire.messages import Message

VERSION_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$"


class UpdateState(StrEnum):
    """Where a box stands with one release."""

    DOWNLOADING = "downloading"  # chunks are arriving
    INSTALLING = "installing"  # verified; a new slot is being made
    TRIAL = "trial"  # switched to the new slot and restarting: not yet proven healthy
    HEALTHY = "healthy"  # the new release ran healthy for the health time: it stays
    ROLLED_BACK = "rolled_back"  # the new release was not healthy: the previous one runs again
    REFUSED = "refused"  # not installed: a bad signature, a sha256 mismatch, the wrong box


class UpdateReport(Message):
    """The box's word on one release (retained on ``update``)."""

    state: UpdateState = Field(alias="st")
    release: str = Field(alias="rel", pattern=VERSION_PATTERN, description="the release")
    running: str = Field(alias="sw", description="the software version running now")
    transfer_id: str | None = Field(
        None, alias="xid", description="the download that brought the release"
    )
    at: float = Field(alias="t", description="when, epoch seconds")
    progress: float | None = Field(None, alias="pg", ge=0, le=1, description="downloading")
    code: str | None = Field(None, description="rolled_back, refused: a reason code")
    detail: str | None = Field(None, alias="msg", description="what happened, for people")
