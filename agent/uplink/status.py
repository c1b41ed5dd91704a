"""What the box says on its retained status topic: online with what it runs, or offline."""

from __future__ import annotations

import time

from roadside.ids import new_id
from roadside.wire.messages import OfflineReason, Presence, StatusMsg


class StatusReporter:
    """Builds status payloads; each has a fresh id (the will is rebuilt at every connect).

    ``config`` is the hash of the current config (``roadside.config.document.config_hash``),
    ``trial`` that of a config running on trial, not yet confirmed; the fleet service changes
    both when a trial ends (plain attribute writes, read by the link thread).
    """

    def __init__(
        self,
        software: str | None = None,
        model: str | None = None,
        config: str | None = None,
        trial: str | None = None,
    ) -> None:
        self.software = software
        self.model = model
        self.config = config
        self.trial = trial

    def online(self) -> bytes:
        return StatusMsg(
            id=new_id(),
            state=Presence.ONLINE,
            at=round(time.time(), 2),
            software=self.software,
            model=self.model,
            config_hash=self.config,
            config_trial=self.trial,
        ).encode()

    def offline(self, reason: OfflineReason) -> bytes:
        return StatusMsg(
            id=new_id(),
            state=Presence.OFFLINE,
            at=round(time.time(), 2),
            reason=reason,
            software=self.software,
            model=self.model,
            config_hash=self.config,
            config_trial=self.trial,
        ).encode()
