"""The station's transfer receiver on its own: reassembly, acks, restarts, damage, aborts."""

from __future__ import annotations

import hashlib
import json
import random
import time
from pathlib import Path

import pytest

from roadside.central.receiver import clip_receiver
from roadside.ids import new_id
from roadside.transfer.receiver import TransferReceiver
from roadside.wire.commands import ErrorCode
from roadside.wire.topics import xfer_topic
from roadside.wire.transfer import XferAbort, XferAck, XferInit, pack_chunk

DEVICE = "junction-07"
CS = 16 * 1024


@pytest.fixture(scope="module")
def footage_bytes(footage: Path) -> bytes:
    return (footage / "pedestrians_arcade.mp4").read_bytes()


def manifest(data: bytes, xid: str | None = None, asking: int = 1, **extra: object) -> XferInit:
    fields: dict = dict(
        id=xid or new_id(),
        kind="clip",
        request_id=new_id(),
        requester="officer@station",
        name="clip.mp4",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        chunk_size=CS,
        at=time.time(),
        asking=asking,
        meta={"from": 100.0, "to": 130.0, "actual_from": 99.5, "actual_to": 130.2},
    )
    fields.update(extra)
    return XferInit(**fields)


def t(xid: str, part: str) -> str:
    return xfer_topic(DEVICE, xid, part)


def chunk(data: bytes, idx: int) -> bytes:
    return pack_chunk(idx * CS, data[idx * CS : (idx + 1) * CS])


def ack_of(out: list) -> XferAck:
    assert len(out) == 1
    assert out[0].topic.endswith("/ack")
    return XferAck.decode(out[0].payload)


def new_receiver(tmp_path: Path, clips: object = None) -> TransferReceiver:
    return clip_receiver(tmp_path / "incoming", tmp_path / "files", clips=clips)


def test_reassembles_out_of_order_with_repeats(tmp_path: Path, footage_bytes: bytes) -> None:
    rx = new_receiver(tmp_path)
    init = manifest(footage_bytes)
    first = ack_of(rx.handle(t(init.id, "init"), init.encode()))
    assert (first.state, first.held, first.ranges, first.asking) == ("recv", 0, [], 1)
    order = list(range(init.chunks))
    random.Random(5).shuffle(order)
    order += order[:7]  # some sent twice
    last = None
    for idx in order:
        last = ack_of(rx.handle(t(init.id, "d"), chunk(footage_bytes, idx)))
    assert last is not None and last.state == "done"
    state = rx.state(init.id)
    assert state is not None and state["state"] == "done"
    stored = Path(state["path"])
    assert stored.read_bytes() == footage_bytes
    assert stored.parent.parent.name == DEVICE
    assert rx.stats.dup_chunks == 7
    assert rx.stats.dup_bytes == sum(len(footage_bytes[i * CS : (i + 1) * CS]) for i in order[:7])


def test_ack_lists_holes_and_ranges(tmp_path: Path, footage_bytes: bytes) -> None:
    rx = new_receiver(tmp_path)
    init = manifest(footage_bytes)
    rx.handle(t(init.id, "init"), init.encode())
    for idx in (0, 1, 2, 5, 6, 9):
        ack = ack_of(rx.handle(t(init.id, "d"), chunk(footage_bytes, idx)))
    assert ack.held == 3
    assert ack.ranges == [(5, 7), (9, 10)]


def test_partial_transfer_survives_a_restart(tmp_path: Path, footage_bytes: bytes) -> None:
    rx = new_receiver(tmp_path)
    init = manifest(footage_bytes)
    rx.handle(t(init.id, "init"), init.encode())
    for idx in range(0, 40):
        rx.handle(t(init.id, "d"), chunk(footage_bytes, idx))
    rx.handle(t(init.id, "d"), chunk(footage_bytes, 50))
    rx.close()

    rx = new_receiver(tmp_path)
    again = manifest(footage_bytes, xid=init.id, asking=7, request_id=init.request_id, at=init.at)
    answer = ack_of(rx.handle(t(init.id, "init"), again.encode()))
    assert (answer.state, answer.held, answer.ranges, answer.asking) == ("recv", 40, [(50, 51)], 7)
    for idx in range(40, init.chunks):
        if idx != 50:
            last = ack_of(rx.handle(t(init.id, "d"), chunk(footage_bytes, idx)))
    assert last.state == "done"
    assert Path(rx.state(init.id)["path"]).read_bytes() == footage_bytes
    assert rx.stats.dup_chunks == 0


def test_damaged_and_impossible_chunks_are_dropped(tmp_path: Path, footage_bytes: bytes) -> None:
    rx = new_receiver(tmp_path)
    init = manifest(footage_bytes)
    rx.handle(t(init.id, "init"), init.encode())
    good = chunk(footage_bytes, 0)
    flipped = good[:-1] + bytes([good[-1] ^ 1])
    assert ack_of(rx.handle(t(init.id, "d"), flipped)).held == 0  # CRC mismatch
    odd = pack_chunk(100, footage_bytes[100:200])  # not on a chunk boundary
    assert ack_of(rx.handle(t(init.id, "d"), odd)).held == 0
    short = pack_chunk(CS, footage_bytes[CS : CS + 10])  # wrong length
    assert ack_of(rx.handle(t(init.id, "d"), short)).held == 0
    beyond = pack_chunk(init.chunks * CS, b"x" * 10)
    assert ack_of(rx.handle(t(init.id, "d"), beyond)).held == 0
    assert rx.stats.bad == 4
    assert ack_of(rx.handle(t(init.id, "d"), good)).held == 1


def test_chunk_before_manifest_asks_for_it(tmp_path: Path, footage_bytes: bytes) -> None:
    rx = new_receiver(tmp_path)
    xid = new_id()
    assert ack_of(rx.handle(t(xid, "d"), chunk(footage_bytes, 0))).state == "unknown"
    assert rx.handle("roadside/v1/Bad Device/xfer/x/d", b"") == []
    assert rx.handle(t("not-a-ulid", "d"), b"") == []
    assert rx.handle(t(xid, "what"), b"{}") == []


def test_bad_manifests_fail_clearly(tmp_path: Path, footage_bytes: bytes) -> None:
    rx = clip_receiver(tmp_path / "in", tmp_path / "files", max_size=1000)
    xid = new_id()
    broken = ack_of(rx.handle(t(xid, "init"), b'{"v":1,"id":"' + xid.encode() + b'"}'))
    assert broken.state == "fail" and broken.code == ErrorCode.BAD_REQUEST
    assert "kind" in (broken.detail or "") or "field" in (broken.detail or "")
    big = manifest(footage_bytes)
    too_big = ack_of(rx.handle(t(big.id, "init"), big.encode()))
    assert too_big.state == "fail" and too_big.code == ErrorCode.TOO_LARGE
    other = manifest(b"abc")
    wrong_topic = ack_of(rx.handle(t(new_id(), "init"), other.encode()))
    assert wrong_topic.code == ErrorCode.BAD_REQUEST
    rx.handle(t(other.id, "init"), other.encode())
    changed = manifest(b"abcd", xid=other.id)
    assert ack_of(rx.handle(t(other.id, "init"), changed.encode())).state == "fail"


def test_damage_on_disk_is_found_and_asked_again(tmp_path: Path, footage_bytes: bytes) -> None:
    rx = new_receiver(tmp_path)
    init = manifest(footage_bytes)
    rx.handle(t(init.id, "init"), init.encode())
    for idx in range(init.chunks - 1):
        rx.handle(t(init.id, "d"), chunk(footage_bytes, idx))
    part = tmp_path / "incoming" / f"{init.id}.part"
    with open(part, "r+b") as fh:  # as if a power cut lost a written chunk
        fh.seek(3 * CS + 10)
        fh.write(b"\0" * 100)
    ack = ack_of(rx.handle(t(init.id, "d"), chunk(footage_bytes, init.chunks - 1)))
    assert ack.state == "recv" and ack.held == 3
    assert rx.stats.rechecked == 1
    final = ack_of(rx.handle(t(init.id, "d"), chunk(footage_bytes, 3)))
    assert final.state == "done"
    assert Path(rx.state(init.id)["path"]).read_bytes() == footage_bytes


def test_wrong_sha256_fails_when_every_chunk_is_intact(tmp_path: Path) -> None:
    rx = new_receiver(tmp_path)
    data = b"x" * (CS + 5)
    init = manifest(data, sha256="0" * 64)
    rx.handle(t(init.id, "init"), init.encode())
    rx.handle(t(init.id, "d"), chunk(data, 0))
    ack = ack_of(rx.handle(t(init.id, "d"), chunk(data, 1)))
    assert ack.state == "fail" and "sha256" in (ack.detail or "")
    assert not (tmp_path / "incoming" / f"{init.id}.part").exists()


def test_abort_drops_the_partial_file(tmp_path: Path, footage_bytes: bytes) -> None:
    rx = new_receiver(tmp_path)
    init = manifest(footage_bytes)
    rx.handle(t(init.id, "init"), init.encode())
    rx.handle(t(init.id, "d"), chunk(footage_bytes, 0))
    abort = XferAbort(id=new_id(), code=ErrorCode.CANCELLED, detail="cancelled on request")
    ack = ack_of(rx.handle(t(init.id, "abort"), abort.encode()))
    assert ack.state == "fail" and ack.code == ErrorCode.CANCELLED
    assert not (tmp_path / "incoming" / f"{init.id}.part").exists()
    assert ack_of(rx.handle(t(init.id, "d"), chunk(footage_bytes, 1))).state == "fail"


def test_sweep_drops_transfers_past_their_deadline(tmp_path: Path) -> None:
    rx = new_receiver(tmp_path)
    init = manifest(b"y" * 100, expires=time.time() - 7200)
    rx.handle(t(init.id, "init"), init.encode())
    fresh = manifest(b"z" * 100, expires=time.time() + 3600)
    rx.handle(t(fresh.id, "init"), fresh.encode())
    assert rx.sweep() == 1
    assert rx.state(init.id)["code"] == ErrorCode.DEADLINE
    assert rx.state(fresh.id)["state"] == "recv"


def test_records_go_to_the_station_clip_table(tmp_path: Path, footage_bytes: bytes) -> None:
    from roadside.central.store import Store

    store = Store(f"sqlite:///{tmp_path / 'central.db'}")
    rx = new_receiver(tmp_path, clips=store.clips)
    init = manifest(footage_bytes)
    rx.handle(t(init.id, "init"), init.encode())
    assert store.clips.get(init.id)["state"] == "receiving"
    for idx in range(init.chunks):
        rx.handle(t(init.id, "d"), chunk(footage_bytes, idx))
    row = store.clips.get(init.id)
    assert row["state"] == "done"
    assert row["device"] == DEVICE and row["request_id"] == init.request_id
    assert row["requester"] == "officer@station"
    assert (row["asked_from"], row["asked_to"]) == (100.0, 130.0)
    assert (row["actual_from"], row["actual_to"]) == (99.5, 130.2)
    assert row["bytes"] == len(footage_bytes)
    assert Path(row["path"]).read_bytes() == footage_bytes
    meta = row["meta"] if isinstance(row["meta"], dict) else json.loads(row["meta"])
    assert meta["from"] == 100.0
