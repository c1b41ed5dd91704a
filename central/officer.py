"""An officer's request to one box: sent on ``cmd/<name>``, followed on ``reply/<id>``.

``BoxRequest`` opens the audit row first (so even an unanswered request is on record),
subscribes to everything that tells how the request goes, then publishes the command:
- ``reply/<request id>``: progress, then the one final answer (done or error);
- ``status``: the box going offline and coming back (the progress bar shows drops, resumes);
- ``xfer/+/init`` and ``xfer/+/ack``: the file's size, and how much of it the station holds.

Threads: paho's network thread parses and appends ``Update``s to ``updates`` (a Queue); the
caller's thread reads them. Nothing else is shared.
"""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from pydantic import ValidationError

from roadside.central.config import CentralConfig
from roadside.central.mqtt import BrokerError, connect_now, make_client
from roadside.central.replies import AUDIT_STATE, reply_result
from roadside.central.store import Store
from roadside.central.store.asked import FILE_COMMANDS
from roadside.central.store.audit import who_am_i
from roadside.config.agent import DEVICE_ID
from roadside.digest import sha256_file
from roadside.errors import RoadsideError, UsageError
from roadside.evidence import sidecar_path
from roadside.ids import new_id
from roadside.wire.commands import PARAMS, CommandMsg, ReplyMsg, ReplyState
from roadside.wire.messages import Message, StatusMsg
from roadside.wire.topics import CMD, REPLY, STATUS, XFER, XFER_ACK, XFER_INIT, kind_of, topic
from roadside.wire.transfer import XferAck, XferInit

log = logging.getLogger(__name__)

REQUEST_EXPIRY_S = 86400.0  # a request still queued for an offline box after this is not run


class RequestError(RoadsideError):
    """An officer request could not be made or did not succeed."""


class DeviceNameError(RequestError, UsageError):
    """The box asked for cannot exist: its name would not be one topic level (``+``, ``#``,
    ``/``) or breaks the naming rule every box is provisioned with."""


def check_device(device: str) -> str:
    """``device`` when it can be a box's name; a one-line usage error otherwise."""
    if not DEVICE_ID.fullmatch(device):
        raise DeviceNameError(
            f"{device!r} is not a box name: 1-63 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit"
        )
    return device


@dataclass(frozen=True, slots=True)
class Update:
    """Something the box or the station said about the request."""

    kind: str  # reply | status | init | ack
    msg: Message


class BoxRequest:
    """One command to one box and everything said about it until the final reply."""

    def __init__(
        self,
        cfg: CentralConfig,
        store: Store,
        device: str,
        command: str,
        params: dict[str, Any],
        requester: str | None = None,
        audit_note: dict[str, Any] | None = None,
        audit_params: dict[str, Any] | None = None,
        audited: bool = True,
        expiry_s: float = REQUEST_EXPIRY_S,
    ) -> None:
        check_device(device)
        if command not in PARAMS:
            raise RequestError(f"unknown command {command!r}")
        try:
            PARAMS[command].model_validate(params)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise RequestError(f"{command}: {first['msg']}") from None
        self.cfg = cfg
        self.store = store
        self.device = device
        self.command = command
        self.params = params
        self.requester = requester or who_am_i()
        self.audit_note = audit_note or {}  # kept in the audit row only, never sent to the box
        # what the audit row keeps instead of the parameters (a config change: its diff)
        self.audit_params = audit_params
        self.audited = audited  # False: part of a larger request that has its own row
        self.expiry_s = expiry_s
        self.request_id = new_id()
        self.updates: queue.Queue[Update] = queue.Queue()
        self.final: ReplyMsg | None = None
        self._subscribed = threading.Event()
        self._client = make_client(cfg.broker, f"roadside-officer-{self.request_id}")
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe

    # -- network thread -------------------------------------------------------------------
    def _on_subscribe(self, *_args: object) -> None:
        self._subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        kind = kind_of(m.topic) or ""
        try:
            if kind.startswith(REPLY + "/"):
                self.updates.put(Update("reply", ReplyMsg.decode(bytes(m.payload))))
            elif kind == STATUS:
                self.updates.put(Update("status", StatusMsg.decode(bytes(m.payload))))
            elif kind.endswith("/" + XFER_INIT):
                self.updates.put(Update("init", XferInit.decode(bytes(m.payload))))
            elif kind.endswith("/" + XFER_ACK):
                self.updates.put(Update("ack", XferAck.decode(bytes(m.payload))))
        except ValidationError as exc:
            log.warning("ignoring a malformed message on %s: %s", m.topic, exc.errors()[0])

    # -- caller's thread ------------------------------------------------------------------
    def send(self, timeout: float = 10.0) -> str:
        """Record, subscribe, publish; returns the request id once the broker has it."""
        if self.command in FILE_COMMANDS:
            self.store.asked.record(self.request_id, self.device, self.command)
        if self.audited:
            self.store.audit.open(
                self.request_id,
                self.requester,
                self.command,
                self.device,
                {
                    **(self.params if self.audit_params is None else self.audit_params),
                    **self.audit_note,
                },
            )
        try:
            connect_now(self._client, self.cfg.broker, timeout)
            filters = [
                (topic(self.device, f"{REPLY}/{self.request_id}"), 1),
                (topic(self.device, STATUS), 1),
                (topic(self.device, f"{XFER}/+/{XFER_INIT}"), 1),
                (topic(self.device, f"{XFER}/+/{XFER_ACK}"), 1),
            ]
            self._client.subscribe(filters)
            if not self._subscribed.wait(timeout):
                raise BrokerError("the broker did not confirm the subscription")
            cmd = CommandMsg(
                id=self.request_id,
                requester=self.requester,
                params=self.params,
                expires=time.time() + self.expiry_s,
            )
            info = self._client.publish(
                topic(self.device, f"{CMD}/{self.command}"), cmd.encode(), qos=1
            )
            info.wait_for_publish(timeout)
            if not info.is_published():
                raise BrokerError("the broker did not acknowledge the command")
        except RoadsideError as exc:
            if self.audited:
                self.store.audit.update(self.request_id, "failed", detail=str(exc))
            self.close()
            raise
        return self.request_id

    def next_update(self, timeout: float) -> Update | None:
        """The next update, or None after ``timeout`` seconds of silence."""
        try:
            update = self.updates.get(timeout=timeout)
        except queue.Empty:
            return None
        if update.kind == "reply":
            reply = update.msg
            assert isinstance(reply, ReplyMsg)
            if reply.request_id == self.request_id and reply.final and self.final is None:
                self.final = reply
            if self.final is reply and self.audited:
                self.store.audit.update(
                    self.request_id,
                    AUDIT_STATE[reply.state],
                    result=reply_result(reply),
                    detail=reply.detail if reply.state == ReplyState.ERROR else None,
                )
        return update

    def give_up(self, why: str) -> None:
        if self.audited:
            self.store.audit.update(self.request_id, "timeout", detail=why)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def wait_for_file(store: Store, request_id: str, timeout: float) -> dict[str, Any] | None:
    """The received file's record once the receiver has stored it (it may trail the reply)."""
    deadline = time.monotonic() + timeout
    while True:
        row = store.clips.for_request(request_id)
        if row and row["state"] in ("done", "failed"):
            return row
        if time.monotonic() >= deadline:
            return row
        time.sleep(0.1)


def deliver(row: dict[str, Any], out: Path | None) -> tuple[Path, str]:
    """Copy the stored file to ``out`` (if given), with the box's signed evidence beside it
    (the two go together to whoever checks the clip), and check its sha256 against the
    record."""
    stored = Path(row["path"])
    if not stored.is_file():
        raise RequestError(f"the station recorded {stored} but the file is not there")
    target = stored
    if out is not None:
        if out.is_dir():
            out = out / stored.name
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(stored, out)
        if sidecar_path(stored).is_file():
            shutil.copyfile(sidecar_path(stored), sidecar_path(out))
        target = out
    digest = sha256_file(target)
    if row.get("sha256") and digest != row["sha256"]:
        raise RequestError(
            f"{target}: sha256 {digest} does not match the station's record {row['sha256']}"
        )
    return target, digest
