"""What the box says on its retained status topic: online with what it runs, or offline."""

from __future__ import annotations

import hashlib
import time

from roadside.ids import new_id
from roadside.wire.messages import OfflineReason, Presence, StatusMsg


def config_hash(config_json: str) -> str:
    """First 12 hex digits of the sha256 of the config, to spot a box running a stale config."""
    return hashlib.sha256(config_json.encode()).hexdigest()[:12]


class StatusReporter:
    """Builds status payloads; each has a fresh id (the will is rebuilt at every connect)."""

    def __init__(
        self, software: str | None = None, model: str | None = None, config: str | None = None
    ) -> None:
        self.software = software
        self.model = model
        self.config = config

    def online(self) -> bytes:
        return StatusMsg(
            id=new_id(),
            state=Presence.ONLINE,
            at=round(time.time(), 2),
            software=self.software,
            model=self.model,
            config_hash=self.config,
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
        ).encode()
