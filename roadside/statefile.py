"""One opener for every SQLite file a box or the station keeps its state in.

The outbox, the command inbox, the request log, the transfer store, the recording index and
the station's receiver state are all opened by ``open_state_file``, so they behave alike:

- **WAL journal, a busy timeout, ``PRAGMA quick_check`` at open**, and the caller's own
  durability choices (``synchronous`` FULL or NORMAL, isolation level, threads).
- **One corruption policy.** A file SQLite cannot read, one ``quick_check`` finds damaged
  (an SD card going bad, a power cut at the wrong moment on a card that lies about writes),
  or one that does not hold what its version says (an upgrade step or the schema's probe
  fails on it) is moved aside with its ``-wal`` and ``-shm`` under a name that says when
  (``outbox.db.damaged-20260312T041500Z``), an ERROR line is logged, the caller gets a
  ``MovedAside`` report to surface (the outbox counts it among its losses, so every heartbeat
  shows it), and an empty file is started. Why: a box on a mountain must restart by itself;
  a file it cannot open would otherwise keep the agent down until someone drives up to it.
  Losing a file's contents is never silent, and the damaged copy is kept for a post-mortem
  (the newest ``KEEP_DAMAGED`` per file, so a failing card cannot fill the disk with them).
- **What is not damage is never moved:** a locked file, a full disk, a read-only folder, an
  I/O error. Those raise as they are (``sqlite3.OperationalError``): moving a good file aside
  for a passing condition would throw its contents away for nothing.
- **A schema version** in ``PRAGMA user_version``, raised at open by ordered upgrade steps,
  each in one transaction with its new version number. Version 1 is each file's first schema,
  written (``CREATE ... IF NOT EXISTS``) so that a file made before versions existed
  (user_version 0, the same tables) upgrades in place. A file from a newer release is refused
  with a ``StateFileError`` naming the file and both versions, and left untouched: a box
  rolled back to an older release must not throw away what the newer one wrote.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from roadside.errors import StateFileError

log = logging.getLogger(__name__)

# sqlite3's transaction modes; None leaves the connection in autocommit.
IsolationLevel = Literal["DEFERRED", "EXCLUSIVE", "IMMEDIATE"] | None

KEEP_DAMAGED = 3  # damaged copies kept beside each state file, newest first
DAMAGED = ".damaged-"  # moved aside as <name>.damaged-<UTC time>[-n]
SIDE_FILES = ("-wal", "-shm")

# SQLite result codes that say the moment is bad, not the file: never a reason to move it.
_PASSING = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_NOMEM,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_INTERRUPT,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_PROTOCOL,
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_AUTH,
    }
)

Step = str | Callable[[sqlite3.Connection], None]


@dataclass(frozen=True)
class StateSchema:
    """What one kind of state file holds.

    ``kind`` names it in messages ("outbox"). ``steps[i]`` takes a file from version ``i`` to
    ``i + 1``: an SQL script, or a function given the connection (inside the step's
    transaction). ``probe`` is a query a usable file answers (e.g. the columns the code
    reads); a file at the current version that cannot answer it is treated as damaged.
    ``derived``: the file only caches what can be rebuilt from elsewhere (the recording index,
    from the segment files' names), so one written by a newer release is moved aside and
    started anew instead of refused: a box rolled back to an older release keeps recording.
    """

    kind: str
    steps: tuple[Step, ...]
    probe: str | None = None
    derived: bool = False

    @property
    def version(self) -> int:
        """The version this release writes."""
        return len(self.steps)


@dataclass(frozen=True)
class MovedAside:
    """A damaged state file was moved aside and an empty one started in its place."""

    path: Path  # where the state file is (now a new one)
    aside: Path  # where the damaged one went (its -wal and -shm beside it, if it had them)
    reason: str
    at: float  # epoch s

    def __str__(self) -> str:
        return f"{self.path} was damaged ({self.reason}); moved to {self.aside.name}"


@dataclass(frozen=True)
class StateFile:
    """An open state file: its connection, and what opening it took."""

    db: sqlite3.Connection
    path: Path
    version: int  # the schema version it has now
    upgraded_from: int | None = None  # the version it had, when upgrade steps ran
    moved_aside: MovedAside | None = None  # set when the file was damaged and started anew


class _Damaged(Exception):
    """The file is not a usable state file; the reason is the message.

    ``db`` is the connection that found it, still open: the files are moved aside before it
    closes, as closing lets SQLite fold the -wal into the damaged file and delete it.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.db: sqlite3.Connection | None = None

    def close(self) -> None:
        if self.db is not None:
            self.db.close()


def open_state_file(
    path: str | Path,
    schema: StateSchema,
    *,
    synchronous: Literal["FULL", "NORMAL"] = "NORMAL",
    isolation_level: IsolationLevel = None,
    check_same_thread: bool = False,
    busy_timeout_s: float = 30.0,
) -> StateFile:
    """Open (creating, upgrading, or replacing a damaged one) the state file at ``path``.

    ``synchronous``: FULL when a commit must survive a power cut (the outbox with
    ``sync="full"``, the request log), NORMAL when the last commits may be lost to one (WAL
    never corrupts either way). ``isolation_level`` and ``check_same_thread`` are passed to
    ``sqlite3.connect`` (None: autocommit, the caller writes BEGIN itself). ``busy_timeout_s``:
    how long a statement waits for another connection's lock.

    Raises ``StateFileError`` for a file from a newer release (left as it is) and
    ``sqlite3.OperationalError`` for a passing condition (locked, disk full, unreadable
    folder); see the module doc.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def attempt() -> StateFile:
        return _open(path, schema, synchronous, isolation_level, check_same_thread, busy_timeout_s)

    try:
        return attempt()
    except _Damaged as damage:
        try:
            report = _move_aside(path, str(damage))
        finally:
            damage.close()
    log.error(
        "%s %s is damaged (%s): moved to %s, starting an empty one",
        schema.kind,
        path,
        report.reason,
        report.aside,
    )
    _prune_damaged(path)
    try:
        fresh = attempt()
    except _Damaged as damage:  # a new, empty file: only a bug in the schema gets here
        damage.close()
        raise StateFileError(f"{path}: cannot start a new {schema.kind}: {damage}") from None
    return replace(fresh, moved_aside=report)


def _open(
    path: Path,
    schema: StateSchema,
    synchronous: str,
    isolation_level: IsolationLevel,
    check_same_thread: bool,
    busy_timeout_s: float,
) -> StateFile:
    db = sqlite3.connect(
        path, timeout=busy_timeout_s, check_same_thread=check_same_thread, isolation_level=None
    )
    try:
        found, version = _prepare(db, path, schema, synchronous)
    except _Damaged as damage:
        damage.db = db
        raise
    except BaseException:
        db.close()
        raise
    db.isolation_level = isolation_level
    return StateFile(db, path, version, found if version != found else None)


def _prepare(
    db: sqlite3.Connection, path: Path, schema: StateSchema, synchronous: str
) -> tuple[int, int]:
    """Check the file and bring it to the schema's version: (version found, version now)."""
    try:
        found = _user_version(db)
        if found > schema.version and schema.derived:
            raise _Damaged(f"schema version {found} is from a newer release; rebuilt")
        if found > schema.version:
            raise StateFileError(
                f"{path}: this {schema.kind} has schema version {found}, newer than the "
                f"{schema.version} this release knows: it was written by a newer release and "
                "is left as it is (run that release, or move the file away to start empty)"
            )
        db.execute("PRAGMA journal_mode=WAL")
        problems = [row[0] for row in db.execute("PRAGMA quick_check")]
        if problems != ["ok"]:
            raise _Damaged(f"quick_check: {'; '.join(problems[:3])}")
        db.execute(f"PRAGMA synchronous={synchronous}")
        version = _upgrade(db, schema)
        if schema.probe:
            try:
                db.execute(schema.probe).fetchall()
            except sqlite3.DatabaseError as exc:
                if _passing(exc):
                    raise
                raise _Damaged(f"not a {schema.kind} of version {version}: {exc}") from None
    except sqlite3.DatabaseError as exc:
        if _passing(exc):
            raise
        raise _Damaged(str(exc)) from None
    return found, version


def _user_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def _upgrade(db: sqlite3.Connection, schema: StateSchema) -> int:
    """Run the steps the file lacks, each in one transaction with its version number.

    A file already at the version is only read (no write lock: a reader may open it while
    the writer works). Otherwise ``BEGIN IMMEDIATE`` and a fresh look at the version inside
    it: two processes opening the same old file (the recorder and a clip cut) run each step
    once.
    """
    version = _user_version(db)
    if version >= schema.version:
        return version
    while True:
        db.execute("BEGIN IMMEDIATE")
        try:
            version = _user_version(db)
            if version >= schema.version:
                db.execute("COMMIT")
                return version
            try:
                _run_step(db, schema.steps[version])
            except sqlite3.DatabaseError as exc:
                if _passing(exc):
                    raise
                raise _Damaged(f"upgrade from version {version} failed: {exc}") from None
            db.execute(f"PRAGMA user_version={version + 1}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        if version > 0:
            log.info("%s: schema upgraded from version %d to %d", schema.kind, version, version + 1)


def _run_step(db: sqlite3.Connection, step: Step) -> None:
    if callable(step):
        step(db)
        return
    for statement in _statements(step):
        db.execute(statement)


def _statements(script: str) -> Iterator[str]:
    """The statements of an SQL script, one at a time (``executescript`` would commit)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending.strip()
            pending = ""
    if pending.strip():
        yield pending.strip()


def _passing(exc: sqlite3.Error) -> bool:
    """A locked file, a full disk, an I/O error: the file may be fine. Errors Python's module
    raises itself (a closed connection, a misuse) carry no SQLite code and are never damage."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is None or code & 0xFF in _PASSING


def _move_aside(path: Path, reason: str) -> MovedAside:
    """Rename the file and its -wal and -shm to ``<name>.damaged-<UTC time>``.

    The side files go first: a -wal left behind would be replayed into the new file.
    """
    now = time.time()
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    taken = [n for s, n in (_stamp_order(path, p) for p in damaged_copies(path)) if s == stamp]
    n = max(taken, default=0) + 1  # after any copy of the same second, kept or pruned
    aside = path.with_name(f"{path.name}{DAMAGED}{stamp}" + (f"-{n}" if n > 1 else ""))
    for suffix in (*SIDE_FILES, ""):
        src = Path(f"{path}{suffix}")
        if src.exists():
            src.replace(f"{aside}{suffix}")
    return MovedAside(path, aside, reason, now)


def damaged_copies(path: str | Path) -> list[Path]:
    """The damaged copies kept beside the state file at ``path``, oldest first."""
    path = Path(path)
    copies = [
        p for p in path.parent.glob(f"{path.name}{DAMAGED}*") if not p.name.endswith(SIDE_FILES)
    ]
    return sorted(copies, key=lambda p: _stamp_order(path, p))


def _stamp_order(path: Path, copy: Path) -> tuple[str, int]:
    stamp, _, n = copy.name.removeprefix(f"{path.name}{DAMAGED}").partition("-")
    return stamp, int(n) if n.isdigit() else 1


def _prune_damaged(path: Path) -> None:
    """Keep the newest ``KEEP_DAMAGED`` damaged copies, delete older ones."""
    for old in damaged_copies(path)[:-KEEP_DAMAGED]:
        for suffix in ("", *SIDE_FILES):
            with contextlib.suppress(FileNotFoundError):
                Path(f"{old}{suffix}").unlink()
        log.warning("removed the old damaged copy %s (keeping the newest %d)", old, KEEP_DAMAGED)
