"""Every SQLite state file on real files: damage is moved aside, old files upgrade, newer refuse.

The six state files (outbox, command inbox, request log, transfer store, recording index,
the station's receiver state) are each damaged for real (garbage bytes, a file cut short),
opened through their own component, and used afterwards. ``roadside.statefile`` itself is
tested below them: upgrade steps, side files, what is not damage, how many copies are kept.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from roadside.agent.commands.channel import INBOX_FILE, REQUESTS_FILE
from roadside.agent.commands.inbox import CommandInbox
from roadside.agent.commands.requests import RequestLog
from roadside.agent.recording.index import INDEX_FILE, open_index
from roadside.agent.recording.recorder import Recorder
from roadside.agent.recording.standins import camera_packets
from roadside.agent.transfer.sender import STORE_FILE
from roadside.agent.transfer.store import TransferRecord, TransferStore
from roadside.agent.uplink.link import OUTBOX_FILE
from roadside.agent.uplink.outbox import DAMAGED, Outbox
from roadside.central.receiver import clip_receiver
from roadside.config.agent import RecordingConfig
from roadside.errors import StateFileError
from roadside.ids import new_id
from roadside.statefile import (
    KEEP_DAMAGED,
    MovedAside,
    StateSchema,
    damaged_copies,
    open_state_file,
)
from roadside.transfer.receiver import STATE_FILE, TransferReceiver
from roadside.wire.commands import ReplyMsg
from roadside.wire.topics import XFER_DATA, XFER_INIT, xfer_topic
from roadside.wire.transfer import XferAck, XferInit, pack_chunk

DEVICE = "junction-07"
FILLED = 120  # rows each kind is filled with: several pages, so a cut file is really cut


# -- the six kinds of state file ---------------------------------------------------------------
@dataclass(frozen=True)
class Kind:
    """One state file: where it is, how its component opens, fills, and shows it works."""

    name: str
    file: Callable[[Path], Path]
    open: Callable[[Path], Any]
    fill: Callable[[Any], None]
    kept: Callable[[Any], None]  # asserts what ``fill`` wrote is still there
    works: Callable[[Any], None]  # asserts the component reads and writes

    def moved(self, component: Any) -> MovedAside | None:
        return component.moved_aside


def _outbox_fill(box: Outbox) -> None:
    for i in range(FILLED):
        box.put(f"roadside/v1/{DEVICE}/event", os.urandom(200) + bytes([i]), 1, "event")


def _outbox_kept(box: Outbox) -> None:
    assert box.stats().depth == FILLED


def _outbox_works(box: Outbox) -> None:
    rid = box.put(f"roadside/v1/{DEVICE}/reply/x", b"answer", 0, "reply/x")
    rows = box.take(1)
    assert [(r.id, r.payload) for r in rows] == [(rid, b"answer")]
    box.ack([rid])
    box.flush()


def _inbox_fill(inbox: CommandInbox) -> None:
    for i in range(FILLED):
        assert inbox.put(f"roadside/v1/{DEVICE}/cmd/clip", os.urandom(300), 300 + i) is not None


def _inbox_kept(inbox: CommandInbox) -> None:
    assert len(inbox.waiting()) == FILLED


def _inbox_works(inbox: CommandInbox) -> None:
    arrived = inbox.put(f"roadside/v1/{DEVICE}/cmd/status", b"{}", 2)
    assert arrived is not None
    assert arrived in inbox.waiting()
    inbox.done(arrived.row)
    assert arrived not in inbox.waiting()


def _requests_fill(log: RequestLog) -> None:
    for i in range(FILLED):
        assert log.claim(f"rq-{i}", "clip", "officer@station", {"pad": "x" * 200}) is None


def _requests_kept(log: RequestLog) -> None:
    assert {r.rq for r in log.unfinished()} == {f"rq-{i}" for i in range(FILLED)}


def _requests_works(log: RequestLog) -> None:
    assert log.claim("rq-new", "status", "officer@station", None) is None
    again = log.claim("rq-new", "status", "officer@station", None)
    assert again is not None and again.state == "accepted"
    assert log.finish(ReplyMsg(id=new_id(), request_id="rq-new", state="done", result={"ok": 1}))
    final = log.get("rq-new")
    assert final is not None and final.state == "final" and final.reply is not None


def _record(i: int) -> TransferRecord:
    now = time.time()
    return TransferRecord(
        xid=new_id(),
        kind="clip",
        path=f"/data/clips/{i}.mp4",
        name=f"{i}.mp4",
        size=1 << 20,
        sha256="0" * 64,
        cs=16384,
        created=now,
        exp=now + 3600,
        rq=f"rq-{i}",
        meta={"pad": "x" * 200},
        acked=bytearray(8),
    )


def _store_fill(store: TransferStore) -> None:
    for i in range(FILLED):
        store.add(_record(i))


def _store_kept(store: TransferStore) -> None:
    assert len(store.sending()) == FILLED


def _store_works(store: TransferStore) -> None:
    rec = _record(FILLED)
    store.add(rec)
    rec.state, rec.sent_bytes = "done", rec.size
    store.save(rec)
    got = store.get(rec.xid)
    assert got is not None and (got.state, got.sent_bytes) == ("done", rec.size)


def _manifest(data: bytes) -> XferInit:
    return XferInit(
        id=new_id(),
        kind="clip",
        request_id=new_id(),
        requester="officer@station",
        name="clip.mp4",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        chunk_size=16384,
        at=time.time(),
        asking=1,
        meta={"pad": "x" * 200},
    )


def _receiver_fill(rx: TransferReceiver) -> None:
    for _ in range(FILLED):
        init = _manifest(os.urandom(100))
        rx.handle(xfer_topic(DEVICE, init.id, XFER_INIT), init.encode())


def _receiver_kept(rx: TransferReceiver) -> None:
    assert len(rx.transfers(DEVICE)) == FILLED


def _receiver_works(rx: TransferReceiver) -> None:
    data = os.urandom(20000)
    init = _manifest(data)
    rx.handle(xfer_topic(DEVICE, init.id, XFER_INIT), init.encode())
    for offset in range(0, len(data), init.chunk_size):
        out = rx.handle(
            xfer_topic(DEVICE, init.id, XFER_DATA),
            pack_chunk(offset, data[offset : offset + init.chunk_size]),
        )
    assert XferAck.decode(out[-1].payload).state == "done"
    state = rx.state(init.id)
    assert state is not None and Path(state["path"]).read_bytes() == data


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory, footage: Path) -> Path:
    """A recordings folder with real segments of the motorway clip and their index."""
    root = tmp_path_factory.mktemp("recordings") / "rec"
    packets, _duration = camera_packets(footage / "motorway_overpass.mp4")
    cfg = RecordingConfig(mode="continuous", keyframe_s=1.0, segment_s=1.0)
    recorder = Recorder(cfg, root, blocking=True)
    recorder.start()
    for p in packets:
        recorder.write_packet(p.data, p.pts_s, p.keyframe, p.dts_s)
    recorder.stop()
    return root


def _segments(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.glob("*/*.ts")}


def _index_kept(index: Any) -> None:
    assert index.paths() == _segments(index.root) and index.count() >= 3


def _index_works(index: Any) -> None:
    _index_kept(index)  # rebuilt from the segment files after a move-aside
    first = index.all()[0]
    index.remove([first.path])
    assert first.path not in index.paths()
    index.add(first)
    assert first.path in index.paths()


KINDS = [
    Kind(
        "outbox",
        lambda d: d / OUTBOX_FILE,
        lambda d: Outbox(d / OUTBOX_FILE),
        _outbox_fill,
        _outbox_kept,
        _outbox_works,
    ),
    Kind(
        "command inbox",
        lambda d: d / INBOX_FILE,
        lambda d: CommandInbox(d / INBOX_FILE, limit=10 * FILLED),
        _inbox_fill,
        _inbox_kept,
        _inbox_works,
    ),
    Kind(
        "request log",
        lambda d: d / REQUESTS_FILE,
        lambda d: RequestLog(d / REQUESTS_FILE),
        _requests_fill,
        _requests_kept,
        _requests_works,
    ),
    Kind(
        "transfer store",
        lambda d: d / STORE_FILE,
        lambda d: TransferStore(d / STORE_FILE),
        _store_fill,
        _store_kept,
        _store_works,
    ),
    Kind(
        "receiver state",
        lambda d: d / "incoming" / STATE_FILE,
        lambda d: clip_receiver(d / "incoming", d / "files"),
        _receiver_fill,
        _receiver_kept,
        _receiver_works,
    ),
    Kind(
        "recording index",
        lambda d: d / "rec" / INDEX_FILE,
        lambda d: open_index(d / "rec", writer=True),
        lambda index: None,  # the recorder filled it
        _index_kept,
        _index_works,
    ),
]


#: The kinds that hold what nothing else holds: a file from a newer release is refused, not
#: rebuilt (the recording index is derived from the segment files, and is rebuilt).
KEPT_KINDS = [k for k in KINDS if k.name != "recording index"]


@pytest.fixture(params=KINDS, ids=[k.name for k in KINDS])
def kind(request: pytest.FixtureRequest, tmp_path: Path) -> Kind:
    """A state file of this kind under ``tmp_path``, filled and closed."""
    return filled(request, request.param, tmp_path)


@pytest.fixture(params=KEPT_KINDS, ids=[k.name for k in KEPT_KINDS])
def kept_kind(request: pytest.FixtureRequest, tmp_path: Path) -> Kind:
    """A state file of a kind that cannot be rebuilt, filled and closed."""
    return filled(request, request.param, tmp_path)


def filled(request: pytest.FixtureRequest, k: Kind, tmp_path: Path) -> Kind:
    if k.name == "recording index":
        shutil.copytree(request.getfixturevalue("recordings"), tmp_path / "rec")
    component = k.open(tmp_path)
    k.fill(component)
    component.close()
    assert k.file(tmp_path).stat().st_size >= 3 * 4096  # pages to cut through
    return k


def garbage(path: Path) -> None:
    path.write_bytes(os.urandom(path.stat().st_size))


def cut_short(path: Path) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size // 2)


def user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()


def set_user_version(path: Path, version: int) -> None:
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version={version}")
    db.commit()
    db.close()


@pytest.mark.parametrize("damage", [garbage, cut_short], ids=["garbage", "cut-short"])
def test_a_damaged_file_is_moved_aside_reported_and_replaced(
    kind: Kind, damage: Callable[[Path], None], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = kind.file(tmp_path)
    damage(path)
    damaged = path.read_bytes()
    with caplog.at_level(logging.ERROR, logger="roadside.statefile"):
        component = kind.open(tmp_path)
    try:
        report = kind.moved(component)
        assert report is not None and report.path == path
        assert report.aside.read_bytes() == damaged  # kept whole, for a post-mortem
        assert report.aside.name.startswith(f"{path.name}.damaged-20")
        assert damaged_copies(path) == [report.aside]
        errors = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert len(errors) == 1
        assert str(path) in errors[0].getMessage() and str(report.aside) in errors[0].getMessage()
        assert user_version(path) == 1
        kind.works(component)
        if isinstance(component, Outbox):  # the loss travels in every heartbeat (od)
            assert component.stats().losses == {DAMAGED: 1}
    finally:
        component.close()
    again = kind.open(tmp_path)  # the new file is a good one: opened as it is
    try:
        assert kind.moved(again) is None
        assert damaged_copies(path) == [report.aside]
    finally:
        again.close()


def test_an_unversioned_file_of_todays_tables_is_upgraded_in_place(
    kind: Kind, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = kind.file(tmp_path)
    set_user_version(path, 0)  # as every file was before versions were kept
    with caplog.at_level(logging.ERROR, logger="roadside.statefile"):
        component = kind.open(tmp_path)
    try:
        assert kind.moved(component) is None
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert user_version(path) == 1
        kind.kept(component)
        kind.works(component)
    finally:
        component.close()
    assert damaged_copies(path) == []


def test_a_file_from_a_newer_release_is_refused_and_left_intact(
    kept_kind: Kind, tmp_path: Path
) -> None:
    kind = kept_kind
    path = kind.file(tmp_path)
    set_user_version(path, 7)
    before = path.read_bytes()
    with pytest.raises(StateFileError) as err:
        kind.open(tmp_path)
    message = str(err.value)
    assert str(path) in message and "version 7" in message and "1 this release" in message
    assert "\n" not in message
    assert path.read_bytes() == before
    assert damaged_copies(path) == []
    assert user_version(path) == 7


def test_an_index_from_a_newer_release_is_rebuilt_from_the_segment_files(
    recordings: Path, tmp_path: Path
) -> None:
    """A box rolled back to an older release keeps recording: the index it cannot read is
    only a cache of the segment names, so it is moved aside, reported and rebuilt."""
    kind = next(k for k in KINDS if k.name == "recording index")
    shutil.copytree(recordings, tmp_path / "rec")
    kind.open(tmp_path).close()
    path = kind.file(tmp_path)
    set_user_version(path, 7)
    index = kind.open(tmp_path)
    try:
        moved = kind.moved(index)
        assert moved is not None and "newer release" in moved.reason
        assert user_version(path) == 1
        kind.kept(index)
        kind.works(index)
    finally:
        index.close()
    assert len(damaged_copies(path)) == 1


# -- roadside.statefile itself ----------------------------------------------------------------
THINGS = StateSchema(
    "things",
    (
        "CREATE TABLE IF NOT EXISTS things (id INTEGER PRIMARY KEY, name TEXT NOT NULL);",
        "ALTER TABLE things ADD COLUMN colour TEXT NOT NULL DEFAULT 'grey';\n"
        "CREATE INDEX things_colour ON things (colour); -- a comment; with a semicolon",
        lambda db: db.execute("UPDATE things SET colour = 'red' WHERE name LIKE 'r%'"),
    ),
    probe="SELECT id, name, colour FROM things LIMIT 1",
)


def test_upgrade_steps_run_in_order_from_the_files_version(tmp_path: Path) -> None:
    path = tmp_path / "things.db"
    first = open_state_file(path, StateSchema("things", THINGS.steps[:1]))
    first.db.executemany("INSERT INTO things (name) VALUES (?)", [("rose",), ("ash",)])
    first.db.close()
    assert (first.version, first.upgraded_from) == (1, 0)

    state = open_state_file(path, THINGS)
    rows = state.db.execute("SELECT name, colour FROM things ORDER BY id").fetchall()
    assert rows == [("rose", "red"), ("ash", "grey")]
    assert (state.version, state.upgraded_from, state.moved_aside) == (3, 1, None)
    state.db.close()
    again = open_state_file(path, THINGS)
    assert (again.version, again.upgraded_from) == (3, None)
    again.db.close()


def test_a_step_that_fails_leaves_the_version_it_had(tmp_path: Path) -> None:
    path = tmp_path / "things.db"
    open_state_file(path, StateSchema("things", THINGS.steps[:1])).db.close()

    def refuses(db: sqlite3.Connection) -> None:
        db.execute("INSERT INTO things (name) VALUES ('half done')")
        raise RuntimeError("cannot")

    with pytest.raises(RuntimeError, match="cannot"):
        open_state_file(path, StateSchema("things", (THINGS.steps[0], refuses)))
    assert user_version(path) == 1
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM things").fetchone()[0] == 0
    db.close()


def test_the_side_files_go_aside_with_the_damaged_file(tmp_path: Path) -> None:
    live = tmp_path / "live"
    live.mkdir()
    state = open_state_file(live / "things.db", THINGS)
    state.db.executemany("INSERT INTO things (name) VALUES (?)", [(f"n{i}",) for i in range(500)])
    box = tmp_path / "box"  # the files as a power cut leaves them: -wal and -shm still there
    box.mkdir()
    for suffix in ("", "-wal", "-shm"):
        shutil.copyfile(live / f"things.db{suffix}", box / f"things.db{suffix}")
    state.db.close()
    wal = (box / "things.db-wal").read_bytes()
    garbage(box / "things.db")

    fresh = open_state_file(box / "things.db", THINGS)
    aside = fresh.moved_aside.aside if fresh.moved_aside else None
    assert aside is not None
    assert Path(f"{aside}-wal").read_bytes() == wal
    assert Path(f"{aside}-shm").exists()
    assert fresh.db.execute("SELECT count(*) FROM things").fetchone()[0] == 0
    fresh.db.close()


def test_a_locked_file_is_not_damage_and_stays_where_it_is(tmp_path: Path) -> None:
    path = tmp_path / "things.db"
    open_state_file(path, StateSchema("things", THINGS.steps[:1])).db.close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process in the middle of an upgrade
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            open_state_file(path, THINGS, busy_timeout_s=0.1)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert damaged_copies(path) == []
    assert user_version(path) == 1


def test_a_file_without_the_tables_its_version_promises_is_damage(tmp_path: Path) -> None:
    path = tmp_path / "things.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE other (x)")
    db.execute(f"PRAGMA user_version={THINGS.version}")
    db.commit()
    db.close()
    state = open_state_file(path, THINGS)
    assert state.moved_aside is not None and "no such table" in state.moved_aside.reason
    state.db.execute("INSERT INTO things (name) VALUES ('new')")
    state.db.close()


def test_only_the_newest_damaged_copies_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "things.db"
    reports = []
    for _ in range(KEEP_DAMAGED + 2):  # a card failing over and over, all in one second or so
        path.write_bytes(b"not a database at all" * 300)
        state = open_state_file(path, THINGS)
        assert state.moved_aside is not None
        reports.append(state.moved_aside.aside)
        state.db.close()
    assert len(set(reports)) == len(reports)  # two in one second get their own names
    assert damaged_copies(path) == reports[-KEEP_DAMAGED:]
    assert not any(p.exists() for p in reports[:-KEEP_DAMAGED])
