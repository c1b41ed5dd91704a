"""The box's receiving side of releases: the station's chunked transfer on ``dl/<xid>/...``.

The reassembly is the same ``TransferReceiver`` the station runs for uploads (chunks written
at their offsets, selective acks, resume after a cut or a restart, sha256 at the end); only
the topic kind (``dl``) and the landing differ. Messages arrive on the uplink's link thread
and are handed to a worker thread here (writing chunks must not hold up the link). Acks go
back as a bulk source of the uplink: never before a reply or an event, never stored on the
card, and only the newest per transfer waits (it says all the older ones said).
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import cast

from roadside.agent.uplink import BulkMessage, Inbound, Uplink
from roadside.transfer.receiver import Outgoing, TransferReceiver
from roadside.wire.commands import ErrorCode
from roadside.wire.topics import DL, XFER_ABORT, XFER_DATA, XFER_INIT
from roadside.wire.transfer import XferAck, XferAckState, XferInit
from roadside.wire.update import VERSION_PATTERN

log = logging.getLogger(__name__)

_VERSION = re.compile(VERSION_PATTERN)

Admit = Callable[[str], tuple[str, str] | None]  # version -> None, or (code, why) to refuse
Arrived = Callable[[str, str, Path], None]  # version, transfer id, the verified download
Progressed = Callable[[str, str, float], None]  # version, transfer id, fraction held


class AckQueue:
    """The box's acks waiting for the link, the newest per transfer (a ``BulkSource``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: OrderedDict[str, tuple[str, XferAck]] = OrderedDict()

    def put(self, topic: str, ack: XferAck) -> None:
        with self._lock:
            older = self._waiting.pop(ack.transfer_id, None)
            if older is not None and ack.asking is None and older[1].asking is not None:
                ack = ack.model_copy(update={"asking": older[1].asking})  # the answer stays
            self._waiting[ack.transfer_id] = (topic, ack)

    def next_message(self) -> BulkMessage | None:
        with self._lock:
            if not self._waiting:
                return None
            _xid, (topic, ack) = self._waiting.popitem(last=False)
        return BulkMessage(topic, ack.encode(), token=(topic, ack))

    def acked(self, msg: BulkMessage) -> None:
        return None

    def lost(self, msg: BulkMessage) -> None:
        topic, ack = cast(tuple[str, XferAck], msg.token)
        with self._lock:
            if ack.transfer_id not in self._waiting:  # nothing newer: this one goes again
                self._waiting[ack.transfer_id] = (topic, ack)


class ReleaseLanding:
    """Verified downloads land in ``folder`` as ``<xid>.release``; the updater is told."""

    def __init__(self, folder: Path, admit: Admit, arrived: Arrived) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.admit = admit
        self.arrived = arrived
        self.versions: dict[str, str] = {}  # xid -> version, for progress reports

    def admits(self, device: str, init: XferInit) -> tuple[str, str] | None:
        version = str(init.meta.get("version", ""))
        if init.kind != "release" or not _VERSION.match(version):
            return ErrorCode.BAD_REQUEST, "a box takes only releases with a version here"
        return self.admit(version)

    def started(self, device: str, init: XferInit) -> None:
        self.versions[init.id] = str(init.meta["version"])

    def place(self, device: str, init: XferInit, part: Path) -> Path:
        final = self.folder / f"{init.id}.release"
        part.replace(final)
        return final

    def finished(self, device: str, init: XferInit, path: Path) -> None:
        self.arrived(str(init.meta["version"]), init.id, path)

    def failed(self, device: str, xid: str, reason: str) -> None:
        log.warning("release download %s given up: %s", xid, reason)


class ReleaseDownloads:
    """Takes releases the station sends this box; ``start`` before the uplink starts."""

    def __init__(
        self,
        uplink: Uplink,
        folder: Path,
        admit: Admit,
        arrived: Arrived,
        progressed: Progressed | None = None,
        max_size: int = 1 << 30,
    ) -> None:
        self.uplink = uplink
        self.landing = ReleaseLanding(folder / "done", admit, arrived)
        self.receiver = TransferReceiver(
            folder / "incoming", self.landing, DL, max_size, "the station", "download"
        )
        self.acks = AckQueue()
        self.progressed = progressed
        self._reported: dict[str, float] = {}
        self._inbox: queue.Queue[Inbound | None] = queue.Queue()
        self._worker = threading.Thread(target=self._work, name="release-download", daemon=True)

    def start(self) -> None:
        for part in (XFER_INIT, XFER_DATA, XFER_ABORT):
            self.uplink.subscribe(f"{DL}/+/{part}", self._inbox.put)
        self.uplink.add_bulk(self.acks)
        self._worker.start()

    def stop(self) -> None:
        self._inbox.put(None)
        self._worker.join(10)
        self.receiver.close()

    def _work(self) -> None:
        while (inbound := self._inbox.get()) is not None:
            try:
                outs = self.receiver.handle(inbound.topic, inbound.payload)
            except Exception:  # one bad message must not stop the downloads
                log.exception("release download: message on %s failed", inbound.topic)
                continue
            for out in outs:
                self._send(out)

    def _send(self, out: Outgoing) -> None:
        ack = XferAck.decode(out.payload)
        self.acks.put(out.topic, ack)
        self.uplink.sender.wake()
        self._progress(ack)

    def _progress(self, ack: XferAck) -> None:
        """Tell the updater at the start and about every fifth of the way."""
        version = self.landing.versions.get(ack.transfer_id)
        state = self.receiver.state(ack.transfer_id)
        if self.progressed is None or version is None or state is None:
            return
        if ack.state != XferAckState.RECEIVING:
            return
        fraction = state["held"] / max(1, state["chunks"])
        last = self._reported.get(ack.transfer_id)
        if last is None or fraction - last >= 0.2:
            self._reported[ack.transfer_id] = fraction
            self.progressed(version, ack.transfer_id, fraction)
