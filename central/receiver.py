"""The station's end of box uploads: where verified clips and snapshots land, and who hears.

The reassembly itself (chunks, acks, the sha256 check, resuming) is the shared
``roadside.transfer.receiver.TransferReceiver``; the box runs the same one for releases.
Here a finished file moves to ``<files_dir>/<device>/<YYYY-MM-DD>/<name>`` (the day it
arrived, by the station's clock) and the station's clip records follow every transfer.
"""

from __future__ import annotations

import logging
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from roadside.transfer.receiver import DEFAULT_MAX_SIZE, TransferReceiver
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

    def finished(self, device: str, xid: str, path: str, size: int, sha256: str) -> None: ...

    def failed(self, device: str, xid: str, reason: str) -> None: ...


class ClipLanding:
    """Lands uploads from boxes in ``files_dir`` and tells the clip records (when given)."""

    def __init__(self, files_dir: str | Path, clips: ClipLog | None = None) -> None:
        self.files = Path(files_dir)
        self.files.mkdir(parents=True, exist_ok=True)
        self.clips = clips

    def admits(self, device: str, init: XferInit) -> tuple[str, str] | None:
        return None  # the broker's ACL lets only the box itself publish on its topics

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
        shutil.move(str(part), final)
        return final

    def finished(self, device: str, init: XferInit, path: Path) -> None:
        if self.clips is not None:
            self.clips.finished(device, init.id, str(path), init.size, init.sha256)

    def failed(self, device: str, xid: str, reason: str) -> None:
        if self.clips is not None:
            self.clips.failed(device, xid, reason)


def clip_receiver(
    incoming_dir: str | Path,
    files_dir: str | Path,
    clips: ClipLog | None = None,
    max_size: int = DEFAULT_MAX_SIZE,
) -> TransferReceiver:
    """The station's receiver of box uploads (``xfer/<xid>/...``), landing in ``files_dir``."""
    return TransferReceiver(incoming_dir, ClipLanding(files_dir, clips), XFER, max_size)
