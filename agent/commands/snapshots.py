"""Pictures for snapshot requests: the latest frame, and the best frame of each recent event.

The newest frame is the pipeline's ``LatestFrame`` tap; it is encoded only when asked.

``BestFrames`` observes the pipeline: after each frame, a track whose best score was set on
that very frame keeps a scaled-down copy of it while the track lives; when the track ends as
an event the copy is encoded to ``<data_dir>/bestframes/<event id>.jpg``, and the oldest files
beyond ``keep`` files or ``max_bytes`` bytes are removed (the card is shared with the outbox:
best frames give way before events do). A write the card refuses loses that picture only.
The resize runs on the pipeline thread only when a track's best score improves (a few times
per track); the encode once per event.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from roadside.agent.frames import Frame, LatestFrame
from roadside.agent.vision.tracker import Track

log = logging.getLogger(__name__)


def encode_jpeg(image: np.ndarray, width: int, quality: int) -> bytes:
    """A JPEG of ``image`` (BGR) scaled down to ``width`` (never up)."""
    h, w = image.shape[:2]
    if w > width:
        image = cv2.resize(
            image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA
        )
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("the frame could not be encoded as JPEG")
    return buf.tobytes()


def latest_jpeg(latest: LatestFrame, width: int, quality: int) -> tuple[bytes, float] | None:
    """(JPEG, capture time) of the newest frame, or None before the first frame."""
    frame = latest.frame
    if frame is None:
        return None
    return encode_jpeg(frame.image, width, quality), frame.time


@dataclass
class _Candidate:
    """The best picture so far of one live track, scaled down but not yet encoded."""

    score: float
    image: np.ndarray
    event_id: str | None


class BestFrames:
    """Best-frame JPEGs of recent events, bounded by count and bytes on disk.

    Threading: ``observe`` runs on the pipeline thread; ``get`` on the command worker. The
    in-memory map is guarded by ``_lock``; files are written before they are listed.
    """

    def __init__(
        self,
        folder: str | Path,
        keep: int,
        width: int,
        quality: int,
        also: Iterable[str | Path] = (),
        max_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        # Other folders of per-event pictures, looked up by event id (the tamper pictures).
        self.also = [Path(p) for p in also]
        self.keep = keep
        self.max_bytes = max_bytes
        self.width = width
        self.quality = quality
        self._lock = threading.Lock()
        self._live: dict[int, _Candidate] = {}  # track id -> its best picture so far

    def observe(self, frame: Frame, tracks: Iterable[Track]) -> None:
        """Called after each frame with the tracks still alive.

        A track's best detection often comes before it is confirmed, so every live track keeps
        its best picture (scaled down to ``width``: a resize, no encode); it is encoded and
        stored when the track ends as an event, and forgotten when it ends unconfirmed.
        """
        alive: set[int] = set()
        ended: list[_Candidate] = []
        with self._lock:
            for track in tracks:
                alive.add(track.track_id)
                cand = self._live.get(track.track_id)
                if cand is not None and track.event_id is not None:
                    cand.event_id = track.event_id
                if track.best_time == frame.time and (
                    cand is None or track.best_score > cand.score
                ):
                    self._live[track.track_id] = _Candidate(
                        track.best_score, _scaled(frame.image, self.width), track.event_id
                    )
            for tid in [t for t in self._live if t not in alive]:
                cand = self._live.pop(tid)
                if cand.event_id is not None:
                    ended.append(cand)
        for cand in ended:
            self._store(cand)

    def flush(self) -> None:
        """Store the pictures of events still alive (the agent is stopping)."""
        with self._lock:
            done = [c for c in self._live.values() if c.event_id is not None]
            self._live.clear()
        for cand in done:
            self._store(cand)

    def get(self, event_id: str) -> bytes | None:
        """The best-frame JPEG of an event, live or stored; None when not kept."""
        with self._lock:
            live = next((c for c in self._live.values() if c.event_id == event_id), None)
        if live is not None:
            return encode_jpeg(live.image, self.width, self.quality)
        for folder in (self.folder, *self.also):
            try:
                return (folder / f"{event_id}.jpg").read_bytes()
            except OSError:
                continue
        return None

    def _store(self, cand: _Candidate) -> None:
        if self.keep <= 0 or cand.event_id is None:
            return
        tmp = self.folder / f"{cand.event_id}.tmp"
        try:
            tmp.write_bytes(encode_jpeg(cand.image, self.width, self.quality))
            tmp.replace(self.folder / f"{cand.event_id}.jpg")
        except (OSError, ValueError) as exc:  # a full card loses a snapshot, not the pipeline
            log.warning("cannot keep the best frame of event %s: %s", cand.event_id, exc)
            with contextlib.suppress(OSError):
                tmp.unlink()
            return
        self._trim()

    def _trim(self) -> None:
        """Remove the oldest pictures beyond ``keep`` files or ``max_bytes`` bytes."""
        sizes: list[tuple[Path, int]] = []
        for path in sorted(self.folder.glob("*.jpg")):  # event ids are ULIDs: oldest first
            with contextlib.suppress(OSError):
                sizes.append((path, path.stat().st_size))
        total = sum(size for _path, size in sizes)
        count = len(sizes)
        for path, size in sizes:
            if count <= self.keep and total <= self.max_bytes:
                break
            with contextlib.suppress(OSError):
                path.unlink()
            count -= 1
            total -= size


def _scaled(image: np.ndarray, width: int) -> np.ndarray:
    h, w = image.shape[:2]
    if w <= width:
        return image.copy()
    return cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)
