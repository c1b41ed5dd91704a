"""Rolling a release out: a canary group first, the rest only when every canary is healthy.

What each box says comes from the broker's retained messages (``FleetView``): its status
(online, the version it runs) and its last ``update`` report. A box is done with a release
when it reports ``healthy`` for it (and runs it), or ``rolled_back`` or ``refused``, or when
its download fails; a canary that is not healthy stops the rollout before anyone else is
offered the release.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from pydantic import ValidationError

from roadside.central.config import BrokerConfig
from roadside.central.fleet.sender import Delivery, ReleaseSender
from roadside.central.mqtt import make_client
from roadside.ids import new_id
from roadside.wire.messages import Presence, StatusMsg
from roadside.wire.topics import ROOT, STATUS, UPDATE, device_of
from roadside.wire.update import UpdateReport, UpdateState

log = logging.getLogger(__name__)

FINAL = (UpdateState.HEALTHY, UpdateState.ROLLED_BACK, UpdateState.REFUSED)


@dataclass
class BoxView:
    """One box as the broker's retained messages show it."""

    device: str
    online: bool | None = None
    version: str | None = None
    update: UpdateReport | None = None

    @property
    def last_error(self) -> str | None:
        u = self.update
        if u is not None and u.state in (UpdateState.ROLLED_BACK, UpdateState.REFUSED):
            return f"{u.code}: {u.detail}" if u.code else u.detail
        return None


class FleetView:
    """Every box's retained status and update report, kept up to date while it runs."""

    def __init__(self, cfg: BrokerConfig) -> None:
        self.boxes: dict[str, BoxView] = {}
        self.changed = threading.Condition()
        self._client = make_client(cfg, f"roadside-fleet-view-{new_id()[-10:]}")
        self._client.on_connect = lambda c, *_a: c.subscribe(
            [(f"{ROOT}/+/{STATUS}", 1), (f"{ROOT}/+/{UPDATE}", 1)]
        )
        self._client.on_message = self._on_message
        self._cfg = cfg

    def start(self) -> FleetView:
        self._client.connect_async(self._cfg.host, self._cfg.effective_port, keepalive=60)
        self._client.loop_start()
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def box(self, device: str) -> BoxView:
        with self.changed:
            return self.boxes.setdefault(device, BoxView(device))

    def wait(self, timeout: float) -> None:
        with self.changed:
            self.changed.wait(timeout)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        device = device_of(msg.topic)
        if device is None:
            return
        kind = msg.topic.rsplit("/", 1)[-1]
        try:
            with self.changed:
                view = self.boxes.setdefault(device, BoxView(device))
                if kind == STATUS:
                    status = StatusMsg.decode(msg.payload)
                    view.online = status.state == Presence.ONLINE
                    view.version = status.software or view.version
                elif kind == UPDATE:
                    view.update = UpdateReport.decode(msg.payload)
                self.changed.notify_all()
        except (ValidationError, ValueError):
            log.warning("unreadable %s message from %s: dropped", kind, device)


@dataclass
class BoxResult:
    device: str
    state: str  # healthy, rolled_back, refused, failed (download), timeout, not_offered
    detail: str = ""
    delivery: Delivery | None = None


@dataclass
class Rollout:
    """Offers ``release`` (a file) as ``version`` to ``devices``, canaries first."""

    sender: ReleaseSender
    view: FleetView
    release: Path
    version: str
    devices: list[str]
    canary: int = 0
    timeout_s: float = 6 * 3600.0
    progress: Callable[[str], None] = lambda _line: None
    results: dict[str, BoxResult] = field(default_factory=dict)

    def run(self) -> dict[str, BoxResult]:
        for device in self.devices:
            if self.view.box(device).version == self.version:
                self.results[device] = BoxResult(device, "healthy", "runs it already")
        todo = [d for d in self.devices if d not in self.results]
        canaries, rest = todo[: self.canary], todo[self.canary :]
        if canaries:
            self.progress(f"canaries first: {', '.join(canaries)}")
            self._wave(canaries)
            bad = [d for d in canaries if self.results[d].state != "healthy"]
            if bad:
                for d in rest:
                    self.results[d] = BoxResult(d, "not_offered", "a canary was not healthy")
                self.progress(f"stopped: canary {bad[0]} {self.results[bad[0]].state}")
                return self.results
            self.progress("every canary is healthy: the rest")
        if rest:
            self._wave(rest)
        return self.results

    def _wave(self, devices: list[str]) -> None:
        """Send to every box of the wave at once, wait until each has its final word."""
        deliveries = {d: self.sender.send(d, self.release, self.version) for d in devices}
        deadline = time.monotonic() + self.timeout_s
        waiting = set(devices)
        while waiting and time.monotonic() < deadline:
            for device in sorted(waiting):
                result = self._settled(device, deliveries[device])
                if result is not None:
                    self.results[device] = result
                    waiting.discard(device)
                    self.progress(f"{device}: {result.state} {result.detail}".rstrip())
            if waiting:
                self.view.wait(1.0)
        for device in waiting:
            self.sender.cancel(deliveries[device].xid, "the rollout timed out")
            self.results[device] = BoxResult(device, "timeout", "", deliveries[device])

    def _settled(self, device: str, delivery: Delivery) -> BoxResult | None:
        box = self.view.box(device)
        report = box.update
        if report is not None and report.transfer_id == delivery.xid:
            if report.state is UpdateState.HEALTHY and report.running == self.version:
                return BoxResult(device, "healthy", report.detail or "", delivery)
            if report.state in (UpdateState.ROLLED_BACK, UpdateState.REFUSED):
                return BoxResult(device, report.state.value, report.detail or "", delivery)
        ending = delivery.ending
        if ending is not None and not delivery.done:
            return BoxResult(device, "failed", f"download {ending.ending.value}: {ending.msg}")
        return None
