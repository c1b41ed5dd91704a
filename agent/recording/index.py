"""The segment index: one SQLite table (WAL) describing every complete segment on disk.

Why SQLite rather than a JSON-lines journal: the index is read by other threads and by other
processes (``roadside agent clip`` while the agent records) at the same time as it is
written; eviction, event marks and relabelling after a clock sync change many rows at once
and must do so atomically; clip cuts ask for ranges, which an index on ``start`` answers
without reading everything. WAL mode with ``synchronous=NORMAL`` never corrupts on a power
cut (the last commits may be lost, and the files put them back).

The index is a cache of what the files say: when it is missing or damaged, ``open_index``
rebuilds it by reading every segment file (names carry the labels, PyAV reads the rest),
and ``reconcile`` repairs the differences a crash leaves (a row without a file, a file
without a row, a ``.part`` file).

Threading: a ``SegmentIndex`` (one connection) is used by one thread at a time. The
recorder's is opened when it starts and then used by its thread only; each clip cut opens
its own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from roadside.agent.recording.segments import (
    PART,
    SUFFIX,
    SegmentName,
    probe_segment,
    recover_partial,
)
from roadside.statefile import MovedAside, StateSchema, open_state_file

log = logging.getLogger(__name__)

INDEX_FILE = "index.db"
GAP_TOLERANCE_S = 0.5  # footage further apart than this is reported as a gap

SCHEMA_V1 = """
CREATE TABLE IF NOT EXISTS segments (
    id         INTEGER PRIMARY KEY,
    path       TEXT NOT NULL UNIQUE,   -- relative to the recordings folder
    start      REAL NOT NULL,          -- wall time of the first picture, epoch s
    end        REAL NOT NULL,          -- wall time just after the last picture
    mono_start REAL NOT NULL,          -- monotonic time of the first picture
    boot       TEXT NOT NULL,          -- boot id: the monotonic clock's domain
    clock      TEXT NOT NULL,          -- sync | nosync | retimed
    mode       TEXT NOT NULL,          -- cont | event
    has_event  INTEGER NOT NULL DEFAULT 0,
    bytes      INTEGER NOT NULL,
    keyframes  TEXT NOT NULL,          -- JSON list of offsets from start, s
    packets    INTEGER NOT NULL,
    width      INTEGER NOT NULL DEFAULT 0,
    height     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS segments_start ON segments (start);
CREATE INDEX IF NOT EXISTS segments_evict ON segments (has_event, start);
"""

_COLUMNS = (
    "id",
    "path",
    "start",
    "end",
    "mono_start",
    "boot",
    "clock",
    "mode",
    "has_event",
    "bytes",
    "keyframes",
    "packets",
    "width",
    "height",
)
SCHEMA = StateSchema(
    "recording index",
    (SCHEMA_V1,),
    probe=f"SELECT {', '.join(_COLUMNS)} FROM segments LIMIT 1",
    derived=True,  # the segment files' names hold it all
)


@dataclass
class SegmentRecord:
    """One complete segment as the index knows it (times are wall clock, epoch seconds)."""

    path: str
    start: float
    end: float
    mono_start: float
    boot: str
    clock: str
    mode: str
    has_event: bool
    bytes: int
    keyframes: list[float] = field(default_factory=lambda: [0.0])
    packets: int = 0
    width: int = 0
    height: int = 0
    id: int | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def name(self) -> SegmentName:
        parsed = SegmentName.parse(Path(self.path).name)
        if parsed is None:
            raise ValueError(f"not a segment name: {self.path}")
        return parsed

    def keyframe_times(self) -> list[float]:
        return [self.start + k for k in self.keyframes]

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> SegmentRecord:
        d = dict(row)
        d["keyframes"] = json.loads(d["keyframes"])
        d["has_event"] = bool(d["has_event"])
        return cls(**d)


@dataclass(frozen=True)
class Range:
    """Footage without a gap: consecutive segments closer than GAP_TOLERANCE_S."""

    start: float
    end: float
    bytes: int
    segments: int
    modes: frozenset[str]
    clocks: frozenset[str]

    @property
    def duration(self) -> float:
        return self.end - self.start


def merge_ranges(
    records: Iterable[SegmentRecord], tolerance: float = GAP_TOLERANCE_S
) -> list[Range]:
    """Segments (sorted by start) joined into ranges of continuous footage."""
    out: list[Range] = []
    for r in records:
        if out and r.start - out[-1].end <= tolerance:
            last = out[-1]
            out[-1] = Range(
                last.start,
                max(last.end, r.end),
                last.bytes + r.bytes,
                last.segments + 1,
                last.modes | {r.mode},
                last.clocks | {r.clock},
            )
        else:
            out.append(Range(r.start, r.end, r.bytes, 1, frozenset({r.mode}), frozenset({r.clock})))
    return out


class SegmentIndex:
    """The index of one recordings folder. Open it with ``open_index``."""

    def __init__(
        self, root: Path, db: sqlite3.Connection, moved_aside: MovedAside | None = None
    ) -> None:
        self.root = root
        self._db = db
        self.moved_aside = moved_aside  # set when the file was damaged and rebuilt

    # -- reading ------------------------------------------------------------------------
    def _select(
        self,
        where: str = "",
        params: Iterable[object] = (),
        order: str = "start, id",
        limit: int | None = None,
    ) -> list[SegmentRecord]:
        sql = f"SELECT {', '.join(_COLUMNS)} FROM segments"
        if where:
            sql += f" WHERE {where}"
        sql += f" ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [SegmentRecord.from_row(r) for r in self._db.execute(sql, tuple(params))]

    def all(self) -> list[SegmentRecord]:
        return self._select()

    def overlapping(self, start: float, end: float) -> list[SegmentRecord]:
        """Segments with footage in [start, end], by start time."""
        return self._select("start <= ? AND end > ?", (end, start))

    def oldest(self, has_event: bool, limit: int) -> list[SegmentRecord]:
        return self._select("has_event = ?", (int(has_event),), limit=limit)

    def of_boot(self, boot: str, clock: str) -> list[SegmentRecord]:
        return self._select("boot = ? AND clock = ?", (boot, clock))

    def ending_before(
        self, t: float, clocks: tuple[str, ...], has_event: bool
    ) -> list[SegmentRecord]:
        marks = ", ".join("?" for _ in clocks)
        return self._select(
            f"end < ? AND has_event = ? AND clock IN ({marks})", (t, int(has_event), *clocks)
        )

    def total_bytes(self) -> int:
        return int(self._db.execute("SELECT COALESCE(SUM(bytes), 0) FROM segments").fetchone()[0])

    def count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM segments").fetchone()[0])

    def ranges(self) -> list[Range]:
        return merge_ranges(self.all())

    def paths(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT path FROM segments")}

    # -- writing ------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        with self._db:
            yield

    def add(self, rec: SegmentRecord) -> int:
        with self._db:
            cur = self._db.execute(
                "INSERT OR REPLACE INTO segments (path, start, end, mono_start, boot, clock, "
                "mode, has_event, bytes, keyframes, packets, width, height) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    rec.path,
                    rec.start,
                    rec.end,
                    rec.mono_start,
                    rec.boot,
                    rec.clock,
                    rec.mode,
                    int(rec.has_event),
                    rec.bytes,
                    json.dumps(rec.keyframes),
                    rec.packets,
                    rec.width,
                    rec.height,
                ),
            )
        rec.id = cur.lastrowid
        return int(cur.lastrowid or 0)

    def remove(self, paths: Iterable[str]) -> None:
        with self._db:
            self._db.executemany("DELETE FROM segments WHERE path = ?", [(p,) for p in paths])

    def update(self, old_path: str, rec: SegmentRecord) -> None:
        """Rewrite one row after its file was renamed (relabel, event mark)."""
        self._db.execute(
            "UPDATE segments SET path = ?, start = ?, end = ?, clock = ?, has_event = ? "
            "WHERE path = ?",
            (rec.path, rec.start, rec.end, rec.clock, int(rec.has_event), old_path),
        )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SegmentIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- repair -------------------------------------------------------------------------
    def reconcile(self, recover_parts: bool = True) -> tuple[int, int]:
        """Make the index match the files: (rows dropped, files added).

        ``recover_parts`` also salvages ``.part`` files a crash left: only the recorder may
        ask for it, when it starts (a reader would take the recorder's segment in progress).
        """
        on_disk = {p.relative_to(self.root).as_posix() for p in self.root.glob(f"*/*{SUFFIX}")}
        known = self.paths()
        gone = known - on_disk
        if gone:
            self.remove(gone)
            log.warning("index: %d segments were missing on disk, forgotten", len(gone))
        added = 0
        for part in sorted(self.root.glob(f"*/*{PART}")) if recover_parts else []:
            final = part.with_name(part.name.removesuffix(".part"))
            if recover_partial(part, final) is not None:
                on_disk.add(final.relative_to(self.root).as_posix())
        for rel in sorted(on_disk - known):
            rec = record_from_file(self.root, rel)
            if rec is None:
                continue
            self.add(rec)
            added += 1
        if added:
            log.warning("index: %d segment files were not indexed, added", added)
        return len(gone), added


def record_from_file(root: Path, rel: str) -> SegmentRecord | None:
    """Index entry for a segment file: labels from its name, the rest from the video.

    An unreadable file, or one with a name that is not a segment's, is left alone (logged):
    the index never deletes what it does not understand.
    """
    path = root / rel
    name = SegmentName.parse(path.name)
    if name is None:
        log.warning("not a segment file name, ignored: %s", path)
        return None
    probe = probe_segment(path)
    if probe is None:
        return None
    return SegmentRecord(
        path=rel,
        start=name.start,
        end=name.start + probe.duration,
        mono_start=name.mono,
        boot=name.boot,
        clock=name.clock,
        mode=name.mode,
        has_event=name.event,
        bytes=path.stat().st_size,
        keyframes=probe.keyframes,
        packets=probe.packets,
        width=probe.width,
        height=probe.height,
    )


def rebuild(index: SegmentIndex, recover_parts: bool) -> int:
    """Fill an empty index from the segment files; returns how many were indexed."""
    started = time.monotonic()
    _rows_dropped, added = index.reconcile(recover_parts)
    if added:
        log.warning(
            "index rebuilt from %d segment files in %.1f s", added, time.monotonic() - started
        )
    return added


def open_index(root: Path, writer: bool = False) -> SegmentIndex:
    """Open (creating or rebuilding as needed) the index of the recordings folder ``root``.

    ``writer`` (the recorder, when it starts) also compares the index with the files and
    salvages partial segments. A reader rebuilds a missing or damaged index but leaves
    ``.part`` files alone. A damaged index is moved aside like every state file
    (``roadside.statefile``); nothing is lost, the files put it back.
    """
    root.mkdir(parents=True, exist_ok=True)
    path = root / INDEX_FILE
    fresh = not path.exists()
    # One thread at a time (the recorder's is opened at start-up, then handed to its thread).
    state = open_state_file(
        path, SCHEMA, synchronous="NORMAL", isolation_level="DEFERRED", busy_timeout_s=10.0
    )
    state.db.row_factory = sqlite3.Row
    index = SegmentIndex(root, state.db, state.moved_aside)
    if fresh or state.moved_aside is not None:
        rebuild(index, recover_parts=writer)
    elif writer:
        index.reconcile()
    return index
