"""From a topic and a payload to rows: which schema each topic carries, and what is rejected.

A message that does not parse, is over its kind's size or holds a value the store cannot keep
(``roadside.wire.bounds``) is kept in the ``rejects`` table with the reason, its first bytes
only (and then acknowledged: the broker re-sending it would not make it parse). Nothing is
dropped silently. The device is always the one in the topic: what a box says lands in its rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from pydantic import ValidationError

from roadside.central.replies import reply_update
from roadside.central.store.batch import DEVICE, Batch
from roadside.wire.bounds import MAX_PAYLOAD, MAX_REPLY_PAYLOAD
from roadside.wire.messages import CountMsg, EventMsg, HealthMsg, StatusMsg
from roadside.wire.topics import (
    COUNT,
    EVENT,
    HEALTH,
    REPLY,
    STATUS,
    device_of,
    kind_of,
)


def _event(batch: Batch, device: str, payload: bytes, received: float) -> None:
    batch.add_event(device, EventMsg.decode(payload), received)


def _count(batch: Batch, device: str, payload: bytes, received: float) -> None:
    batch.add_count(device, CountMsg.decode(payload), received)


def _health(batch: Batch, device: str, payload: bytes, received: float) -> None:
    batch.add_health(device, HealthMsg.decode(payload), received)


def _status(batch: Batch, device: str, payload: bytes, received: float) -> None:
    batch.add_status(device, StatusMsg.decode(payload), received)


_ROUTES: dict[str, Callable[[Batch, str, bytes, float], None]] = {
    EVENT: _event,
    COUNT: _count,
    HEALTH: _health,
    STATUS: _status,
}


def route(batch: Batch, topic: str, payload: bytes, received: float) -> None:
    """Add one message to ``batch``: as rows when it parses, as a reject when it does not."""
    batch.messages += 1
    device = device_of(topic)
    kind = kind_of(topic) if device else None
    try:
        if device is None or kind is None:
            raise ValueError("not a roadside topic")
        if not DEVICE.match(device):
            device = None
            raise ValueError("not a device name in the topic")
        limit = MAX_REPLY_PAYLOAD if kind.startswith(REPLY + "/") else MAX_PAYLOAD
        if len(payload) > limit:
            raise ValueError(f"{len(payload)} bytes is over the limit of {limit} for {kind}")
        handler = _ROUTES.get(kind)
        if handler is not None:
            handler(batch, device, payload, received)
        elif kind.startswith(REPLY + "/"):
            request_id, update = reply_update(payload, received)
            if request_id != kind.split("/", 1)[1]:
                raise ValueError(f"reply to {request_id} on the topic of another request")
            batch.add_reply(device, request_id, update)
        else:
            raise ValueError(f"no schema for topic kind {kind!r}")
    except (ValidationError, ValueError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if isinstance(exc, ValidationError):
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(message)"
            reason = f"{type(exc).__name__}: {where}: {first['msg']}"
        if device is not None:
            batch.touch(device, received)
        batch.add_reject(topic, payload, reason, received)
