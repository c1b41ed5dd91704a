"""The long commands: a clip is cut from the recordings, a snapshot encoded, then uploaded.

Jobs wait in a bounded queue and run one at a time on the job thread (cutting and encoding
are the heavy part; the upload itself is the transfer sender's). The final reply of a job
comes when its transfer ends: done with the file's details, or the transfer's error.

The recorder is reached through ``ClipMaker``: anything with ``cut(start, end, out,
quality)`` returning the range actually covered (``ClipResult``) and raising a
``RecordingError`` (whose ``code`` is the reply's reason code) when it cannot.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from roadside.agent.commands.replies import Replies
from roadside.agent.commands.requests import RequestLog
from roadside.agent.commands.snapshots import BestFrames, latest_jpeg
from roadside.agent.frames import LatestFrame
from roadside.agent.recording.clipcut import ClipResult
from roadside.agent.recording.errors import RecordingError
from roadside.agent.transfer.sender import TransferSender
from roadside.agent.transfer.store import TransferRecord
from roadside.config.agent import CommandsConfig
from roadside.ids import ulid_time
from roadside.wire.commands import ClipParams, ErrorCode, SnapshotParams
from roadside.wire.transfer import TransferKind

log = logging.getLogger(__name__)


class ClipError(RecordingError):
    """A clip or snapshot request cannot be served; ``code`` is the reply's reason code."""

    def __init__(self, message: str, code: ErrorCode = ErrorCode.FAILED) -> None:
        super().__init__(message)
        self.code = code


class ClipMaker(Protocol):
    def cut(self, start: float, end: float, out: Path, quality: str) -> ClipResult: ...


@dataclass
class Job:
    rq: str
    name: str  # clip / snapshot
    requester: str | None
    params: ClipParams | SnapshotParams
    cancelled: bool = False


class JobRunner:
    """Runs clip and snapshot jobs; see the module doc.

    Threading: the command thread calls ``submit`` and ``cancel``; the job thread runs jobs;
    the transfer clock thread calls the transfer listeners. ``_jobs`` (rq -> Job, waiting or
    running and not yet uploading) is guarded by ``_lock``.
    """

    def __init__(
        self,
        cfg: CommandsConfig,
        device: str,
        sender: TransferSender,
        replies: Replies,
        requests: RequestLog,
        clips: ClipMaker | None = None,
        latest: LatestFrame | None = None,
        best: BestFrames | None = None,
    ) -> None:
        self.cfg = cfg
        self.device = device
        self.sender = sender
        self.replies = replies
        self.requests = requests
        self.clips = clips
        self.latest = latest
        self.best = best
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        sender.on_progress.append(self._on_progress)
        sender.on_finished.append(self._on_finished)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="command-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        if self._thread is not None:
            self._thread.join(10)

    # -- the command thread --------------------------------------------------------------
    def submit(self, job: Job) -> bool:
        """Queue a job; False when ``max_jobs`` are already waiting or running."""
        with self._lock:
            if len(self._jobs) >= self.cfg.max_jobs:
                return False
            self._jobs[job.rq] = job
        self._queue.put(job)
        return True

    def cancel(self, rq: str) -> bool:
        """Cancel a job not yet uploading; True when there was one."""
        with self._lock:
            job = self._jobs.get(rq)
            if job is None:
                return False
            job.cancelled = True
        return True

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._jobs)

    # -- the job thread ------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            try:
                if job.cancelled:
                    self.replies.error(job.rq, ErrorCode.CANCELLED, "cancelled before it started")
                elif job.name == "clip":
                    self._clip(job)
                else:
                    self._snapshot(job)
            except RecordingError as exc:
                self.replies.error(job.rq, exc.code, str(exc))
            except Exception as exc:  # the job thread must survive any one job
                log.exception("request %s failed", job.rq)
                self.replies.error(job.rq, ErrorCode.FAILED, f"the box failed: {exc}")
            finally:
                with self._lock:
                    self._jobs.pop(job.rq, None)

    def _clip(self, job: Job) -> None:
        p = job.params
        assert isinstance(p, ClipParams)
        if self.clips is None:
            raise ClipError("this box keeps no recordings to cut clips from", ErrorCode.UNAVAILABLE)
        self.replies.progress(job.rq, 0.0, "cutting the clip")
        out = self.sender.outgoing / f"{job.rq}.mp4"
        try:
            cut = self.clips.cut(p.start, p.end, out, p.quality)
            if job.cancelled:
                raise ClipError("cancelled on request", ErrorCode.CANCELLED)
            size = cut.path.stat().st_size
            if p.max_bytes is not None and size > p.max_bytes:
                raise ClipError(
                    f"the clip is {_mb(size)}, over the {_mb(p.max_bytes)} asked for at most: "
                    "ask for a shorter range or quality 'low'",
                    ErrorCode.TOO_LARGE,
                )
        except BaseException:
            with contextlib.suppress(OSError):
                out.unlink()
            raise
        meta = {
            "from": p.start,
            "to": p.end,
            "actual_from": round(cut.start, 3),
            "actual_to": round(cut.end, 3),
            "quality": p.quality,
            "gaps": [[round(a, 3), round(b, 3)] for a, b in cut.gaps],
        }
        name = f"{self.device}_{_stamp(cut.start)}_{_stamp(cut.end)}.mp4"
        self._upload(job, cut.path, "clip", name, meta)

    def _snapshot(self, job: Job) -> None:
        p = job.params
        assert isinstance(p, SnapshotParams)
        if p.event is not None:
            jpeg = self.best.get(p.event) if self.best is not None else None
            if jpeg is None:
                raise ClipError(
                    f"no best frame is kept for event {p.event} (the box keeps the "
                    f"last {self.cfg.best_frames} events)",
                    ErrorCode.NOT_FOUND,
                )
            at = ulid_time(p.event)
            meta = {"event": p.event, "t": at}
        else:
            got = (
                latest_jpeg(self.latest, self.cfg.snapshot_width, self.cfg.snapshot_quality)
                if self.latest is not None
                else None
            )
            if got is None:
                raise ClipError("the camera has given no frame yet", ErrorCode.UNAVAILABLE)
            jpeg, at = got
            meta = {"t": round(at, 3)}
        out = self.sender.outgoing / f"{job.rq}.jpg"
        out.write_bytes(jpeg)
        self._upload(job, out, "snapshot", f"{self.device}_{_stamp(at)}.jpg", meta)

    def _upload(self, job: Job, path: Path, kind: TransferKind, name: str, meta: dict) -> None:
        rec = self.sender.send_file(path, kind, name, rq=job.rq, requester=job.requester, meta=meta)
        self.requests.running(job.rq, rec.xid)
        self.replies.progress(job.rq, 0.0, f"uploading {_mb(rec.size)}", rec.xid)

    # -- the transfer clock thread -------------------------------------------------------
    def _on_progress(self, rec: TransferRecord, fraction: float) -> None:
        if rec.rq:
            self.replies.progress(rec.rq, fraction, "uploading", rec.xid)

    def _on_finished(self, rec: TransferRecord) -> None:
        if rec.rq:
            finish(self.replies, rec)


def finish(replies: Replies, rec: TransferRecord) -> None:
    """The final reply of the request a finished transfer served."""
    assert rec.rq is not None
    if rec.state == "done":
        took = (rec.finished or time.time()) - rec.created
        replies.done(
            rec.rq,
            {
                "xid": rec.xid,
                "name": rec.name,
                "bytes": rec.size,
                "sha256": rec.sha256,
                "took_s": round(took, 1),
                **rec.meta,
            },
            rec.xid,
        )
    else:
        replies.error(rec.rq, rec.code or ErrorCode.FAILED, rec.msg or "the upload failed", rec.xid)


def _stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y%m%dT%H%M%SZ")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.0f} kB"
