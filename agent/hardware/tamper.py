"""The door switch: a forced box sends an urgent event and keeps a picture of the moment.

Opening the door publishes an ``EventMsg`` with ``c = "tamper"`` (k = "s"); closing it
publishes the end (k = "e", same id). A JPEG of the latest frame is kept as
``<data_dir>/snapshots/<event id>.jpg`` (written whole, then renamed, so a power cut never
leaves half a picture) for the station to fetch; only the newest ``keep`` are kept.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
from gpiozero import Button

from roadside.agent.frames import Frame, LatestFrame
from roadside.config.agent import TamperConfig
from roadside.ids import new_id
from roadside.wire.messages import EventMsg, EventPhase, Message

log = logging.getLogger(__name__)

TAMPER_CLASS = "tamper"
TAMPER_SNAPSHOTS = "snapshots"  # under data_dir; pictures named by event id
WHOLE_FRAME = (0.0, 0.0, 1.0, 1.0)

Publish = Callable[[str, Message], None]


class SnapshotStore:
    """JPEG snapshots under one folder, the newest ``keep`` of them."""

    def __init__(self, folder: str | os.PathLike, keep: int = 50, quality: int = 85) -> None:
        self.folder = Path(folder)
        self.keep = keep
        self.quality = quality

    def save(self, name: str, frame: Frame) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        ok, jpeg = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise ValueError("the frame could not be encoded as JPEG")
        path = self.folder / f"{name}.jpg"
        tmp = path.with_suffix(".jpg.part")
        with open(tmp, "wb") as fh:
            fh.write(jpeg.tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        self._prune()
        return path

    def _prune(self) -> None:
        shots = sorted(self.folder.glob("*.jpg"), key=lambda p: p.stat().st_mtime)
        for old in shots[: max(0, len(shots) - self.keep)]:
            old.unlink(missing_ok=True)


class TamperSwitch:
    """Watches the door switch; on open: urgent event and snapshot, on close: end event.

    gpiozero calls the handlers on its pin-event thread; a lock keeps open/close in order.
    ``publish`` must be safe to call from that thread.
    """

    def __init__(
        self,
        cfg: TamperConfig,
        publish: Publish,
        latest: LatestFrame,
        snapshots: SnapshotStore,
    ) -> None:
        self.publish = publish
        self.latest = latest
        self.snapshots = snapshots
        self.button = Button(cfg.pin, pull_up=cfg.pull_up, bounce_time=cfg.bounce_s or None)
        self.open_when = cfg.open_when
        self.opened_at: float | None = None
        self.event_id: str | None = None
        self.events = 0
        self.last_snapshot: Path | None = None
        self._lock = threading.Lock()
        if cfg.open_when == "released":
            self.button.when_released = self._on_open
            self.button.when_pressed = self._on_close
        else:
            self.button.when_pressed = self._on_open
            self.button.when_released = self._on_close

    @property
    def is_open(self) -> bool:
        pressed = self.button.is_pressed
        return not pressed if self.open_when == "released" else pressed

    def check_at_start(self) -> None:
        """A door already open when the agent starts is reported too."""
        if self.is_open:
            self._on_open()

    def _on_open(self) -> None:
        with self._lock:
            if self.event_id is not None:
                return
            now = time.time()
            self.opened_at = now
            self.event_id = new_id(now)
            log.warning("tamper: the box door was opened (event %s)", self.event_id)
            self._send(EventPhase.START, now)
            self._snapshot()

    def _on_close(self) -> None:
        with self._lock:
            if self.event_id is None:
                return
            log.warning("tamper: the box door was closed (event %s)", self.event_id)
            self._send(EventPhase.END, time.time())
            self.event_id = None
            self.opened_at = None

    def _send(self, phase: EventPhase, now: float) -> None:
        assert self.event_id is not None and self.opened_at is not None
        msg = EventMsg(
            id=self.event_id,
            phase=phase,
            label=TAMPER_CLASS,
            score=1.0,
            first_seen=round(self.opened_at, 2),
            last_seen=round(now, 2),
            box=WHOLE_FRAME,
            track=0,
        )
        self.events += 1
        try:
            self.publish("event", msg)
        except Exception:  # the snapshot is still kept; the loss is logged loudly
            log.exception("tamper event %s (%s) could not be published", msg.id, phase)

    def _snapshot(self) -> None:
        frame = self.latest.frame
        if frame is None:
            log.error("tamper: no frame yet, no snapshot for event %s", self.event_id)
            return
        try:
            self.last_snapshot = self.snapshots.save(self.event_id or "tamper", frame)
        except (OSError, ValueError):
            log.exception("tamper snapshot for event %s failed", self.event_id)

    def close(self) -> None:
        self.button.close()
