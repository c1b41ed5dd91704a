"""What the box says on its retained status topic: online with what it runs, or offline."""

from __future__ import annotations

import hashlib
import time

from roadside.agent.protocol import StatusMsg
from roadside.ids import new_id


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
            st="online",
            t=round(time.time(), 2),
            sw=self.software,
            m=self.model,
            cfg=self.config,
        ).encode()

    def offline(self, why: str) -> bytes:
        return StatusMsg(
            id=new_id(),
            st="offline",
            t=round(time.time(), 2),
            why=why,
            sw=self.software,
            m=self.model,
            cfg=self.config,
        ).encode()
