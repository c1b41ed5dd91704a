"""One transaction's worth of incoming messages, folded so each row is written once.

The broker delivers at least once, and two workers may each hold a copy of one message, so
folding here only saves work; the exactly-once guarantee comes from the upserts in
``writer.py``. Rules: an event's end supersedes its start; the newest status (by arrival) and
health (by id, which grows with the box's clock) become the device's current ones. Health and
status bodies are kept as JSON under the messages' long field names (``load_1m``, not ``ld``).
An event id or a request id is bound to the device whose topic it came on: a message naming
another box's event or request changes nothing of that box's (the writer checks the stored
rows the same way).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from roadside.wire.messages import CountMsg, EventMsg, EventPhase, HealthMsg, StatusMsg
from roadside.wire.topics import DEVICE_PATTERN, EVENT, device_of
from roadside.wire.topics import topic as topic_name

REJECT_PAYLOAD_MAX = 4096  # bytes of a rejected payload kept: enough to see what it was
REJECT_TOPIC_MAX = 256
REJECT_REASON_MAX = 500
DEVICE = re.compile(DEVICE_PATTERN)  # a box's name, as provisioning makes them


def reject_device(topic: str) -> str:
    """The box a rejected message counts against: its topic's, or '' for a topic that names
    no box provisioning would make (all such topics share one count)."""
    device = device_of(topic)
    return device if device is not None and DEVICE.match(device) else ""


@dataclass
class DeviceTouch:
    """What this batch says about one device."""

    last_seen: float
    status: dict[str, Any] | None = None
    health: dict[str, Any] | None = None


@dataclass
class ReplyUpdate:
    """A box's answer to an officer request, as the audit log records it."""

    state: str
    result: dict[str, Any] | None
    detail: str | None
    at: float
    final: bool


@dataclass
class Batch:
    """Rows by table, keyed by id; filled by the ingest thread, written by ``BatchWriter``."""

    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    counts: dict[str, dict[str, Any]] = field(default_factory=dict)
    line_counts: dict[tuple[str, str, str, str], dict[str, Any]] = field(default_factory=dict)
    health: dict[str, dict[str, Any]] = field(default_factory=dict)
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    devices: dict[str, DeviceTouch] = field(default_factory=dict)
    replies: dict[tuple[str, str], ReplyUpdate] = field(default_factory=dict)  # (device, rq)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    messages: int = 0  # every message taken in, rejects included (the ingest counts them)

    def __len__(self) -> int:
        return self.messages

    def touch(self, device: str, received: float) -> DeviceTouch:
        """Any message at all says the device is alive."""
        seen = self.devices.get(device)
        if seen is None:
            seen = self.devices[device] = DeviceTouch(received)
        seen.last_seen = max(seen.last_seen, received)
        return seen

    def add_event(self, device: str, msg: EventMsg, received: float) -> None:
        self.touch(device, received)
        held = self.events.get(msg.id)
        if held is not None and held["device"] != device:
            self.add_reject(
                topic_name(device, EVENT),
                msg.encode(),
                f"event {msg.id} belongs to another box",
                received,
            )
            return
        if held is not None and not (
            held["phase"] == EventPhase.START and msg.phase == EventPhase.END
        ):
            return
        self.events[msg.id] = {
            "id": msg.id,
            "device": device,
            "phase": msg.phase.value,
            "cls": msg.label,
            "score": msg.score,
            "t0": msg.first_seen,
            "t1": msg.last_seen,
            "box": list(msg.box),
            "track": msg.track,
            "direction": msg.direction,
            "zones": msg.zones,
            "unsynced": bool(msg.unsynced),
            "received": received,
            "updated": received,
            "colour": msg.colour,
        }

    def add_count(self, device: str, msg: CountMsg, received: float) -> None:
        self.touch(device, received)
        self.counts.setdefault(
            msg.id,
            {
                "id": msg.id,
                "device": device,
                "t0": msg.start,
                "t1": msg.end,
                "n": dict(msg.counts),
                "received": received,
            },
        )
        for line, by_class in (msg.lines or {}).items():
            for cls, by_direction in by_class.items():
                for direction, n in by_direction.items():
                    self.line_counts.setdefault(
                        (msg.id, line, cls, direction),
                        {"count_id": msg.id, "line": line, "cls": cls, "direction": direction,
                         "device": device, "t0": msg.start, "t1": msg.end, "n": n},
                    )  # fmt: skip

    def add_health(self, device: str, msg: HealthMsg, received: float) -> None:
        seen = self.touch(device, received)
        body = msg.model_dump(mode="json", exclude_none=True, exclude={"version", "id", "at"})
        row = {"id": msg.id, "device": device, "t": msg.at, "body": body, "received": received}
        self.health.setdefault(msg.id, row)
        if seen.health is None or msg.id > seen.health["id"]:
            seen.health = row

    def add_status(self, device: str, msg: StatusMsg, received: float) -> None:
        seen = self.touch(device, received)
        body = msg.model_dump(mode="json", exclude_none=True, exclude={"version", "id"})
        row = {
            "id": msg.id,
            "device": device,
            "st": msg.state.value,
            "why": None if msg.reason is None else msg.reason.value,
            "t": msg.at,
            "received": received,
            "body": body,
        }
        self.statuses.setdefault(msg.id, row)
        if seen.status is None or received >= seen.status["received"]:
            seen.status = row

    def add_reply(self, device: str, request_id: str, update: ReplyUpdate) -> None:
        self.touch(device, update.at)
        held = self.replies.get((device, request_id))
        if held is None or not held.final:  # the first final answer stands
            self.replies[(device, request_id)] = update

    def add_reject(self, topic: str, payload: bytes, reason: str, received: float) -> None:
        """Keep the reason and the payload's first bytes (never a whole oversized payload)."""
        if len(payload) > REJECT_PAYLOAD_MAX:
            reason = f"{reason} ({len(payload)} bytes, the first {REJECT_PAYLOAD_MAX} kept)"
        self.rejects.append(
            {
                "topic": topic[:REJECT_TOPIC_MAX],
                "payload": bytes(payload[:REJECT_PAYLOAD_MAX]),
                "reason": reason.replace("\x00", "")[:REJECT_REASON_MAX],
                "received": received,
                "device": reject_device(topic),
            }
        )
