"""The segment ring: packets in, segments on disk, never more than the budget.

``SegmentRing`` cuts the packet stream into segments at keyframes (every ``segment_s``, and
wherever the labels change: a clock step, a clock sync, a switch of mode), indexes each one
when it is complete, evicts by the retention policy, and survives a full or failing disk:
ENOSPC drops the segment in progress, evicts the oldest footage and carries on, with a log
line and a counter; it never raises into the recorder.

Threading: the recorder thread owns the ring. ``stats``, ``bytes_used`` and ``recording``
are plain values other threads may read without a lock (each read takes one attribute whole).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av

from roadside.agent.recording.encoder import StreamTemplate
from roadside.agent.recording.index import SegmentIndex, SegmentRecord, open_index
from roadside.agent.recording.packets import EncodedPacket
from roadside.agent.recording.retention import RetentionPolicy
from roadside.agent.recording.segments import (
    Clock,
    Mode,
    Opener,
    SegmentFile,
    SegmentName,
    SegmentWriter,
    fsync_dir,
)

log = logging.getLogger(__name__)

RESERVE_BYTES = 64 * 1024  # muxer buffers and TS overhead not yet counted as written
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
ERROR_LOG_EVERY_S = 60.0


FreeSpace = Callable[[Path], int]


def disk_free(path: Path) -> int:
    """Bytes free (for unprivileged writers) on the filesystem holding ``path``."""
    return shutil.disk_usage(path).free


@dataclass(frozen=True)
class SegmentLabel:
    """How footage written now is labelled: a change starts a new segment."""

    offset: float  # wall - monotonic, seconds
    clock: Clock  # sync | nosync (retimed is given later, never to footage in progress)
    mode: Mode


@dataclass
class RingStats:
    """Counters since the ring opened (recorder thread writes, anyone reads)."""

    segments: int = 0
    bytes_written: int = 0
    evicted: int = 0
    evicted_bytes: int = 0
    disk_full: int = 0
    write_errors: int = 0
    relabelled: int = 0
    event_marks: int = 0
    waiting_keyframe: int = 0
    low_space: int = 0  # evictions to keep keep_free_bytes free on the filesystem


class SegmentRing:
    """The recordings folder ``root``: its segments, its index and its budget."""

    def __init__(
        self,
        root: Path,
        policy: RetentionPolicy,
        segment_s: float,
        boot: str,
        opener: Opener = SegmentFile,
        free_space: FreeSpace = disk_free,
    ) -> None:
        self.root = root
        self.free_space = free_space
        self.policy = policy
        self.segment_s = segment_s
        self.boot = boot
        self.opener = opener
        self.stats = RingStats()
        self.index: SegmentIndex = open_index(root, writer=True)
        self._closed_bytes = self.index.total_bytes()
        self._writer: SegmentWriter | None = None
        # True from a segment's first packet until recording stops; it stays True while a
        # segment closes and the next one takes over, when ``_writer`` is briefly None.
        self._recording = False
        self._name: SegmentName | None = None
        self._label: SegmentLabel | None = None
        self._open_event = False
        self._template: StreamTemplate | None = None
        self._retime_offset: float | None = None
        self._last_error_log = -ERROR_LOG_EVERY_S
        self._warned_small = False
        self._enforce_budget()

    # -- reading ------------------------------------------------------------------------
    @property
    def bytes_used(self) -> int:
        """Bytes of segment files on disk, the one in progress included."""
        writer = self._writer
        return self._closed_bytes + (writer.bytes if writer else 0)

    @property
    def recording(self) -> bool:
        """Whether footage is being recorded: a segment is open, or is closing (file, index)
        while the next one begins. Clips of the last seconds wait while it is True."""
        return self._recording

    # -- writing ------------------------------------------------------------------------
    def write(self, pkt: EncodedPacket, label: SegmentLabel) -> None:
        """Add one packet; a new segment starts at a keyframe when one is due."""
        try:
            if (
                self._writer is not None
                and pkt.keyframe
                and (label != self._label or pkt.pts - self._writer.start >= self.segment_s)
            ):
                self._finish(end=pkt.pts)
            if self._writer is None:
                if not pkt.keyframe:
                    self.stats.waiting_keyframe += 1
                    return
                if not self._begin(pkt, label):
                    return
            assert self._writer is not None
            self._writer.write(pkt)
            self._enforce_budget()
        except OSError as exc:
            self._on_write_error(exc)

    def close_segment(self, end: float | None = None) -> None:
        """Finish the segment in progress now (events mode: the post-roll is over)."""
        if self._writer is None:
            return
        try:
            self._finish(end)
        except OSError as exc:
            self._on_write_error(exc)
        self._recording = False

    def new_stream(self) -> None:
        """The stream's parameters may have changed: finish, and read them again."""
        self.close_segment()
        if self._template is not None:
            self._template.close()
            self._template = None

    def close(self) -> None:
        self.new_stream()
        self.index.close()

    # -- labels after the fact ----------------------------------------------------------
    def mark_event(self, t0: float, t1: float) -> None:
        """Footage in [t0, t1] (wall) overlaps an event: keep it longer (``-ev``)."""
        if self._writer is not None and self._name is not None and t1 >= self._name.start:
            self._open_event = True
        for rec in self.index.overlapping(t0, t1):
            if not rec.has_event:
                self._rename(rec, rec.name.but(event=True))
                self.stats.event_marks += 1

    def retime(self, offset: float) -> int:
        """The clock is synchronised and wall = monotonic + ``offset``: relabel this boot's
        footage recorded before (``nosync`` -> ``retimed``), now and when it closes."""
        self._retime_offset = offset
        moved = 0
        for rec in self.index.of_boot(self.boot, "nosync"):
            self._rename(rec, rec.name.but(start=rec.mono_start + offset, clock="retimed"))
            moved += 1
        if moved:
            self.stats.relabelled += moved
            log.warning("clock synchronised: %d segments of this boot relabelled", moved)
        return moved

    def enforce_age(self, now: float) -> None:
        """Evict what is past the maximum age (only while the clock can be trusted)."""
        if self.policy.max_age_s is None:
            return
        horizon = now - self.policy.max_age_s
        old = self.index.ending_before(horizon, ("sync", "retimed"), has_event=False)
        old += self.index.ending_before(
            horizon - self.policy.event_bonus_s, ("sync", "retimed"), has_event=True
        )
        expired = self.policy.expired(old, now)
        if expired:
            self._evict(expired, "older than the maximum age")

    # -- named steps --------------------------------------------------------------------
    def _begin(self, pkt: EncodedPacket, label: SegmentLabel) -> bool:
        if self._template is None:
            try:
                self._template = StreamTemplate(pkt.data)
            except (ValueError, av.FFmpegError) as exc:
                self.stats.waiting_keyframe += 1
                self._log_error("keyframe without stream headers, waiting for the next: %s", exc)
                self._recording = False
                return False
        name = SegmentName(
            start=label.offset + pkt.pts,
            boot=self.boot,
            mono=pkt.pts,
            clock=label.clock,
            mode=label.mode,
            event=label.mode == "event",
        )
        part = self.root / (name.relpath + ".part")
        self._writer = SegmentWriter(part, self._template, self.opener)
        self._name, self._label, self._open_event = name, label, name.event
        self._recording = True
        return True

    def _finish(self, end: float | None) -> None:
        writer, name = self._writer, self._name
        assert writer is not None and name is not None and self._template is not None
        self._writer = None
        try:
            summary = writer.close(end)
        except BaseException:
            writer.abort()
            raise
        start, clock = name.start, name.clock
        if clock == "nosync" and self._retime_offset is not None:
            start, clock = summary.start + self._retime_offset, "retimed"
        final_name = name.but(start=start, clock=clock, event=self._open_event)
        final = self.root / final_name.relpath
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(writer.part, final)
        fsync_dir(final.parent)
        rec = SegmentRecord(
            path=final_name.relpath,
            start=start,
            end=start + summary.end - summary.start,
            mono_start=summary.start,
            boot=self.boot,
            clock=clock,
            mode=name.mode,
            has_event=self._open_event,
            bytes=summary.bytes,
            keyframes=summary.keyframes,
            packets=summary.packets,
            width=self._template.width,
            height=self._template.height,
        )
        self._index_add(rec)
        self._closed_bytes += rec.bytes
        self.stats.segments += 1
        self.stats.bytes_written += rec.bytes
        self._keep_free()
        if clock != "nosync":
            self.enforce_age(time.time())

    def _index_add(self, rec: SegmentRecord) -> None:
        try:
            self.index.add(rec)
        except sqlite3.OperationalError as exc:
            # SQLite says "database or disk is full": make room (files first), then retry once.
            self._log_error("cannot index %s (%s): making room and trying again", rec.path, exc)
            self._make_room()
            try:
                self.index.add(rec)
            except sqlite3.Error as again:
                self.stats.write_errors += 1
                self._log_error(
                    "segment %s kept on disk but not indexed (%s); the index "
                    "takes it back at the next start",
                    rec.path,
                    again,
                )

    def _rename(self, rec: SegmentRecord, new: SegmentName) -> None:
        """Relabel a closed segment: its file name first, then its row (a crash between
        the two is repaired by the next start's reconcile, from the name)."""
        old_path = self.root / rec.path
        new_path = self.root / new.relpath
        try:
            new_path.parent.mkdir(parents=True, exist_ok=True)
            os.replace(old_path, new_path)
        except FileNotFoundError:
            self.index.remove([rec.path])
            return
        except OSError as exc:
            self.stats.write_errors += 1
            self._log_error("cannot relabel %s (%s): kept as it was", rec.path, exc)
            return
        old_rel = rec.path
        rec.path, rec.clock, rec.has_event = new.relpath, new.clock, new.event
        rec.end, rec.start = new.start + rec.duration, new.start
        try:
            with self.index.transaction():
                self.index.update(old_rel, rec)
        except sqlite3.Error as exc:
            self.stats.write_errors += 1
            self._log_error(
                "index could not follow the relabel of %s (%s); fixed at the next start",
                rec.path,
                exc,
            )
        if old_path.parent != new_path.parent:
            with contextlib.suppress(OSError):
                old_path.parent.rmdir()

    def _enforce_budget(self) -> None:
        excess = self.policy.excess(self.bytes_used + RESERVE_BYTES)
        if not excess:
            return
        victims = self.policy.pick(
            self.index.oldest(False, 64), self.index.oldest(True, 64), excess
        )
        if victims:
            self._evict(victims, "over the budget")
        elif not self._warned_small:
            self._warned_small = True
            log.warning(
                "recording budget (%d bytes) is smaller than one segment: raise "
                "recording.budget_bytes",
                self.policy.budget_bytes,
            )

    def _keep_free(self) -> None:
        """Leave ``keep_free_bytes`` free on the filesystem (the outbox shares the card)."""
        try:
            short = self.policy.shortfall(self.free_space(self.root))
        except OSError:
            return
        if not short:
            return
        victims = self.policy.pick(
            self.index.oldest(False, 256), self.index.oldest(True, 256), short
        )
        freed = self._evict(victims, "the filesystem is low on space")
        self.stats.low_space += 1
        self._log_error(
            "filesystem low on space (%d MB short of recording.keep_free_bytes): "
            "evicted %d segments (%.1f MB)",
            short // 10**6,
            len(victims),
            freed / 1e6,
        )

    def _make_room(self) -> tuple[int, int]:
        """After ENOSPC: free two segments' worth or 5 % of the budget, whichever is more."""
        count = max(1, self.index.count())
        want = max(2 * self._closed_bytes // count, self.policy.budget_bytes // 20)
        victims = self.policy.pick(
            self.index.oldest(False, 256), self.index.oldest(True, 256), want
        )
        return len(victims), self._evict(victims, "the disk is full")

    def _evict(self, victims: list[SegmentRecord], why: str) -> int:
        """Delete files first (that frees the space even if the index cannot be written)."""
        freed = 0
        for rec in victims:
            path = self.root / rec.path
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # only when the day is empty
            freed += rec.bytes
        try:
            self.index.remove(r.path for r in victims)
        except sqlite3.Error as exc:
            self._log_error(
                "index could not forget evicted segments (%s); fixed at the next start", exc
            )
        self._closed_bytes = max(0, self._closed_bytes - freed)
        self.stats.evicted += len(victims)
        self.stats.evicted_bytes += freed
        log.debug("evicted %d segments (%d bytes): %s", len(victims), freed, why)
        return freed

    def _on_write_error(self, exc: OSError) -> None:
        writer, name = self._writer, self._name
        self._writer = None
        self._recording = False
        lost = writer.abort() if writer is not None else 0
        where = name.filename if name is not None else "a new segment"
        if exc.errno in DISK_FULL:
            self.stats.disk_full += 1
            count, freed = self._make_room()
            log.warning(
                "disk full while recording %s: dropped it (%d KB), evicted %d "
                "segments (%.1f MB) to make room; recording goes on",
                where,
                lost // 1024,
                count,
                freed / 1e6,
            )
        else:
            self.stats.write_errors += 1
            self._log_error(
                "cannot write %s: %s; recording resumes at the next keyframe", where, exc
            )

    def _log_error(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last_error_log >= ERROR_LOG_EVERY_S:
            self._last_error_log = now
            log.error(msg, *args)
