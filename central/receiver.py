"""The station's end of box uploads: which it takes, where they land, and who hears.

The reassembly itself (chunks, acks, the sha256 check, resuming) is the shared
``roadside.transfer.receiver.TransferReceiver``; the box runs the same one for releases.
Here a new upload is admitted only when it is signed by the box it comes from (its device
certificate chains to the device CA and is not revoked: roadside/evidence.py, with the
revocation list read again when it changes: revocation.py) and the
station asked that box for it, or it is a picture within the box's daily quota of unasked
ones. A finished file moves to ``<files_dir>/<device>/<YYYY-MM-DD>/<name>`` (the day it
arrived, by the station's clock) with its signed manifest beside it
(``<name>.evidence.json``), and the station's clip records follow every transfer.
"""

from __future__ import annotations

import collections
import logging
import shutil
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from roadside.central.config import CentralConfig
from roadside.central.revocation import WatchedTrust
from roadside.central.store import Store
from roadside.evidence import (
    EvidenceError,
    EvidenceFailure,
    Trust,
    parse_manifest,
    sidecar_bytes,
    sidecar_path,
    verify_evidence,
)
from roadside.transfer.receiver import DEFAULT_MAX_SIZE, Bounds, TransferReceiver
from roadside.wire.commands import ErrorCode
from roadside.wire.topics import XFER
from roadside.wire.transfer import XferInit

log = logging.getLogger(__name__)


class ClipLog(Protocol):
    """Where finished and failed files are recorded for officers (store.clips.ClipRecords)."""

    def started(
        self,
        device: str,
        xid: str,
        kind: str,
        *,
        request_id: str | None = None,
        requester: str | None = None,
        name: str | None = None,
        size: int | None = None,
        sha256: str | None = None,
        meta: dict[str, Any] | None = None,
        path: str | None = None,
    ) -> None: ...

    def finished(
        self,
        device: str,
        xid: str,
        path: str,
        size: int,
        sha256: str,
        evidence: dict[str, Any] | None = None,
    ) -> None: ...

    def failed(self, device: str, xid: str, reason: str) -> None: ...


class AskedLog(Protocol):
    """The files the station asked boxes for (store.asked.AskedFiles)."""

    def command(self, device: str, request_id: str) -> str | None: ...


UNASKED_KINDS = frozenset({"snapshot"})  # a box may send pictures unasked (the tamper ones)
DAY_S = 86400.0


class UploadPolicy:
    """Which new uploads the station takes: signed by their box, and asked for.

    ``trust`` None refuses every upload (the station cannot check a signature without the
    device CA); a ``WatchedTrust`` follows changes of the revocation list. Refusals are
    counted by reason in ``refused``.
    """

    def __init__(
        self,
        trust: Trust | WatchedTrust | None,
        asked: AskedLog,
        unasked_per_day: int = 20,
        unasked_bytes_per_day: int = 20 << 20,
    ) -> None:
        self.trust = trust
        self.asked = asked
        self.unasked_per_day = unasked_per_day
        self.unasked_bytes_per_day = unasked_bytes_per_day
        self.refused: collections.Counter[str] = collections.Counter()
        self._unasked: dict[str, collections.deque[tuple[float, int]]] = {}
        self._lock = threading.Lock()

    def admits(self, device: str, init: XferInit) -> tuple[str, str] | None:
        refused = self._signed(device, init) or self._wanted(device, init)
        if refused is not None:
            self.refused[refused[0]] += 1
            return refused[1], refused[2]
        return None

    def _signed(self, device: str, init: XferInit) -> tuple[str, str, str] | None:
        trust = self.trust.current() if isinstance(self.trust, WatchedTrust) else self.trust
        if trust is None:
            why = "the station has no device CA (receiver.device_ca) to check signed uploads"
            return "no_trust", ErrorCode.UNAVAILABLE, why
        if init.evidence is None:
            return EvidenceFailure.MISSING, ErrorCode.BAD_REQUEST, "the upload is not signed"
        try:
            verify_evidence(init.evidence, trust, device=device)
            manifest = parse_manifest(init.evidence)
        except EvidenceError as exc:
            return exc.failure, ErrorCode.BAD_REQUEST, f"the upload's signature: {exc}"
        signed = (manifest.xid, manifest.kind, manifest.name, manifest.size, manifest.sha256)
        announced = (init.id, init.kind, init.name, init.size, init.sha256)
        if signed != announced or manifest.request_id != init.request_id:
            why = "the signed manifest describes another file than the upload announces"
            return EvidenceFailure.MISMATCH, ErrorCode.BAD_REQUEST, why
        return None

    def _wanted(self, device: str, init: XferInit) -> tuple[str, str, str] | None:
        if init.request_id is not None and self.asked.command(device, init.request_id) == init.kind:
            return None
        if init.kind not in UNASKED_KINDS:
            why = f"the station did not ask {device} for this {init.kind}"
            return "unasked", ErrorCode.NOT_FOUND, why
        now = time.time()
        with self._lock:
            sent = self._unasked.setdefault(device, collections.deque())
            while sent and sent[0][0] < now - DAY_S:
                sent.popleft()
            total = sum(size for _, size in sent)
            if len(sent) >= self.unasked_per_day or total + init.size > self.unasked_bytes_per_day:
                why = (
                    f"{device} sent {len(sent)} unasked pictures ({total} bytes) in the last "
                    f"24 h: over the station's quota of {self.unasked_per_day} "
                    f"({self.unasked_bytes_per_day} bytes)"
                )
                return "quota", ErrorCode.BUSY, why
            sent.append((now, init.size))
        return None


class ClipLanding:
    """Lands uploads from boxes in ``files_dir`` and tells the clip records (when given)."""

    def __init__(
        self,
        files_dir: str | Path,
        clips: ClipLog | None = None,
        policy: UploadPolicy | None = None,
    ) -> None:
        self.files = Path(files_dir)
        self.files.mkdir(parents=True, exist_ok=True)
        self.clips = clips
        # None (bench tools on one machine): every upload is taken, signed or not.
        self.policy = policy

    def admits(self, device: str, init: XferInit) -> tuple[str, str] | None:
        return None if self.policy is None else self.policy.admits(device, init)

    def started(self, device: str, init: XferInit) -> None:
        if self.clips is not None:
            self.clips.started(
                device,
                init.id,
                init.kind,
                request_id=init.request_id,
                requester=init.requester,
                name=init.name,
                size=init.size,
                sha256=init.sha256,
                meta=init.meta,
            )

    def place(self, device: str, init: XferInit, part: Path) -> Path:
        """Move the verified file to files/<device>/<date>/<name> (never over another)."""
        day = datetime.now(UTC).strftime("%Y-%m-%d")  # the station's clock: a box's may be off
        folder = self.files / device / day
        folder.mkdir(parents=True, exist_ok=True)
        name = init.name
        final = folder / name
        if final.exists():
            stem, dot, ext = name.rpartition(".")
            final = folder / (f"{stem}-{init.id[-8:]}.{ext}" if dot else f"{name}-{init.id}")
        if init.evidence is not None:  # first: a file in place always has its evidence
            sidecar_path(final).write_bytes(sidecar_bytes(init.evidence))
        shutil.move(str(part), final)
        return final

    def finished(self, device: str, init: XferInit, path: Path) -> None:
        if self.clips is not None:
            evidence = None if init.evidence is None else init.evidence.model_dump()
            self.clips.finished(device, init.id, str(path), init.size, init.sha256, evidence)

    def failed(self, device: str, xid: str, reason: str) -> None:
        if self.clips is not None:
            self.clips.failed(device, xid, reason)


def clip_receiver(
    incoming_dir: str | Path,
    files_dir: str | Path,
    clips: ClipLog | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
    policy: UploadPolicy | None = None,
    bounds: Bounds | None = None,
) -> TransferReceiver:
    """The station's receiver of box uploads (``xfer/<xid>/...``), landing in ``files_dir``."""
    landing = ClipLanding(files_dir, clips, policy)
    return TransferReceiver(incoming_dir, landing, XFER, max_size, bounds=bounds)


def station_receiver(cfg: CentralConfig, store: Store) -> TransferReceiver:
    """The receiver ``roadside central run`` runs, with the checks and bounds of its config."""
    r = cfg.receiver
    trust = None if r.device_ca is None else WatchedTrust(r.device_ca, r.crl, r.crl_check_s)
    if trust is None:
        log.error("receiver: receiver.device_ca is not set: every upload will be refused")
    policy = UploadPolicy(trust, store.asked, r.unasked_per_day, r.unasked_mb_per_day << 20)
    bounds = Bounds(
        max_deadline_s=r.max_deadline_h * 3600, partial_bytes=r.partial_mb_per_box << 20
    )
    incoming = Path(cfg.data_dir) / "incoming"
    return clip_receiver(incoming, cfg.clips_path, store.clips, policy=policy, bounds=bounds)
