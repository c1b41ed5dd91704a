"""Signed evidence and a bounded receiver, end to end: a real mosquitto, the box's real
uplink and transfer sender signing with a device key the project CA issued, the station's
real receiver service with its upload policy and a SQLite store, and `roadside clip verify`.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from roadside.agent.transfer.sender import TransferSender
from roadside.agent.transfer.store import TransferRecord
from roadside.agent.uplink import Uplink
from roadside.central.config import BrokerConfig, CentralConfig, ReceiverConfig
from roadside.central.receiver import ClipLanding, station_receiver
from roadside.central.receiver_service import ReceiverService
from roadside.central.revocation import WatchedTrust
from roadside.central.store import Store
from roadside.cli import main
from roadside.config.agent import MqttConfig, TransferConfig, UplinkConfig
from roadside.evidence import ClipManifest, Signer, sidecar_path
from roadside.ids import new_id
from roadside.provisioning.ca import CRL_FILE, DEVICE_CA, ProjectCA, cert_pem, key_pem, new_key
from roadside.testing.waiting import wait_until
from roadside.transfer.receiver import DEADLINE_GRACE_S, Bounds, TransferReceiver
from roadside.wire.commands import ErrorCode
from roadside.wire.topics import XFER_INIT, xfer_topic
from roadside.wire.transfer import XferAck, XferInit

PASS = b"correct horse battery"
BOX, OTHER = "junction-07", "junction-08"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project CA with two boxes; their key and certificate files beside it."""
    base = tmp_path_factory.mktemp("pki")
    ca = ProjectCA.create(base / "ca", PASS)
    for name in (BOX, OTHER):
        key = new_key()
        (base / f"{name}.key").write_bytes(key_pem(key))
        (base / f"{name}.crt").write_bytes(cert_pem(ca.issue_device(name, key.public_key())))
    return base


def signer(pki: Path, name: str) -> Signer:
    return Signer.load(pki / f"{name}.crt", pki / f"{name}.key")


def device_ca(pki: Path) -> Path:
    return pki / "ca" / f"{DEVICE_CA}.crt"


class Station:
    """The station's receiver service as `roadside central run` assembles it from its config
    (``station_receiver``: the upload policy, the device CA and the watched CRL), on SQLite."""

    def __init__(self, root: Path, port: int, pki: Path, **receiver: object) -> None:
        crl = pki / "ca" / CRL_FILE
        cfg = CentralConfig(
            data_dir=str(root),
            broker=BrokerConfig(host="127.0.0.1", port=port),
            receiver=ReceiverConfig(device_ca=str(device_ca(pki)), crl=str(crl), **receiver),
        )
        self.store = Store(cfg.database_url)
        self.rx = station_receiver(cfg, self.store)
        assert isinstance(self.rx.landing, ClipLanding) and self.rx.landing.policy
        self.policy = self.rx.landing.policy
        self.svc = ReceiverService(cfg.broker, self.rx, client_id=f"rx-{new_id()}").start()
        assert self.svc.connected.wait(10)

    def ask(self, device: str, command: str = "clip") -> str:
        """What an officer's request does first: the station records what it asks for, and
        opens the request's audit row."""
        rq = new_id()
        self.store.asked.record(rq, device, command)
        self.store.audit.open(rq, "officer.tran", command, device, {})
        return rq

    def stop(self) -> None:
        self.svc.stop()
        self.rx.close()
        self.store.close()


class Box:
    """The box's real uplink and transfer sender, connected as ``device``."""

    def __init__(self, data_dir: Path, port: int, device: str, sign: Signer | None) -> None:
        cfg = MqttConfig(host="127.0.0.1", port=port, reconnect_min_s=0.1, reconnect_max_s=0.5)
        self.uplink = Uplink(device, cfg, UplinkConfig(), data_dir, heartbeat=False)
        self.sender = TransferSender(self.uplink, data_dir, TransferConfig(), sign)
        self.finished: list[TransferRecord] = []
        self.sender.on_finished.append(self.finished.append)
        self.sender.start()
        self.uplink.start()

    def send(self, path: Path, kind: str = "clip", **kw: object) -> TransferRecord:
        copy = self.sender.outgoing / f"{new_id()}{path.suffix}"
        shutil.copyfile(path, copy)
        rec = self.sender.send_file(copy, kind, path.name, **kw)  # type: ignore[arg-type]
        wait_until(lambda: rec in self.finished, 30, f"the end of transfer {rec.xid}")
        return rec

    def stop(self) -> None:
        self.sender.stop()
        self.uplink.stop()


@pytest.fixture
def station(tmp_path: Path, broker, pki: Path) -> Iterator[Station]:
    st = Station(tmp_path / "station", broker.port, pki, unasked_per_day=1)
    yield st
    st.stop()


@pytest.fixture
def clip(footage: Path) -> Path:
    return footage / "motorway_overpass.mp4"


def verify(*args: object) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["clip", "verify", *map(str, args)])
    return result.exit_code, result.output


def test_signed_clip_arrives_and_verifies_offline(
    tmp_path: Path, broker, station: Station, pki: Path, clip: Path
) -> None:
    box = Box(tmp_path / "box", broker.port, BOX, signer(pki, BOX))
    try:
        rq = station.ask(BOX)
        meta = {"actual_from": 1718000040.0, "actual_to": 1718000100.5}
        rec = box.send(clip, rq=rq, requester="officer.tran", meta=meta)
    finally:
        box.stop()
    assert rec.state == "done", rec.msg
    row = station.store.clips.for_request(rq)
    assert row is not None and row["state"] == "done"
    stored = Path(row["path"])
    evidence = json.loads(sidecar_path(stored).read_text())
    manifest = json.loads(evidence["manifest"])
    assert manifest["sha256"] == rec.sha256 and manifest["request_id"] == rq
    assert manifest["device"] == BOX and manifest["actual_to"] == 1718000100.5
    assert row["evidence"]["manifest"] == evidence["manifest"]  # in the store too
    assert len(evidence["manifest"]) + len(evidence["signature"]) < 600

    # handed to a prosecutor: the file, its evidence, the CA certificate and the CRL
    crl = pki / "ca" / CRL_FILE
    code, out = verify(stored, "--ca", device_ca(pki), "--crl", crl)
    assert code == 0, out
    assert "VERIFIED" in out and BOX in out and "not revoked" in out

    # one byte flipped: refused, saying which check failed
    copy = tmp_path / "tampered" / stored.name
    copy.parent.mkdir()
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    copy.write_bytes(data)
    shutil.copyfile(sidecar_path(stored), sidecar_path(copy))
    code, out = verify(copy, "--ca", device_ca(pki), "--crl", crl)
    assert code == 1
    assert "NOT VERIFIED" in out and "is not the file the box signed for" in out

    # a manifest edited after signing (a later end of footage): the signature breaks
    forged = dict(evidence, manifest=evidence["manifest"].replace("1718000100.5", "1718000200.5"))
    sidecar_path(copy).write_text(json.dumps(forged))
    shutil.copyfile(stored, copy)
    code, out = verify(copy, "--ca", device_ca(pki), "--crl", crl)
    assert code == 1 and "the signature does not match" in out


def test_revoked_certificate_fails_verification(tmp_path: Path, pki: Path, clip: Path) -> None:
    """A box whose certificate was revoked (stolen, replaced): its clips no longer verify."""
    base = tmp_path / "pki"
    shutil.copytree(pki, base)
    ca = ProjectCA.open(base / "ca", PASS)
    key = new_key()
    box_signer = Signer(key, _der(ca, "junction-09", key))
    file = tmp_path / clip.name
    shutil.copyfile(clip, file)
    sidecar_path(file).write_bytes(_sidecar(box_signer, "junction-09", file))
    code, out = verify(file, "--ca", device_ca(base), "--crl", base / "ca" / CRL_FILE)
    assert code == 0, out
    ca.revoke("junction-09")
    code, out = verify(file, "--ca", device_ca(base), "--crl", base / "ca" / CRL_FILE)
    assert code == 1
    assert "junction-09's certificate" in out and "was revoked" in out


def test_a_box_revoked_while_the_station_runs_is_refused_from_its_next_upload(
    tmp_path: Path, broker, pki: Path, clip: Path
) -> None:
    """`roadside provision revoke` rewrites crl.pem; the running receiver reads it again (here
    at every upload, `receiver.crl_check_s = 0`) and refuses the box without a restart."""
    base = tmp_path / "pki"
    shutil.copytree(pki, base)
    station = Station(tmp_path / "station", broker.port, base, crl_check_s=0.0)
    box = Box(tmp_path / "box", broker.port, BOX, signer(base, BOX))
    try:
        before = box.send(clip, rq=station.ask(BOX))
        ProjectCA.open(base / "ca", PASS).revoke(BOX)
        after = box.send(clip, rq=station.ask(BOX))
    finally:
        box.stop()
        station.stop()
    assert before.state == "done", before.msg
    assert (after.state, after.code) == ("failed", ErrorCode.BAD_REQUEST)
    assert f"{BOX}'s certificate" in (after.msg or "") and "was revoked" in (after.msg or "")
    assert station.policy.refused == {"revoked": 1}


def test_a_damaged_revocation_list_keeps_the_one_read_before(
    tmp_path: Path, pki: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A list half copied or broken must not lift the revocations in force: the receiver keeps
    the last list that read, says so once, and takes the next good one."""
    base = tmp_path / "pki"
    shutil.copytree(pki, base)
    ca = ProjectCA.open(base / "ca", PASS)
    ca.revoke(OTHER)
    crl = base / "ca" / CRL_FILE
    watched = WatchedTrust(device_ca(base), crl, check_s=0.0)
    good = watched.current()
    crl.write_bytes(b"-----BEGIN X509 CRL-----\nnot a list\n-----END X509 CRL-----\n")
    with caplog.at_level(logging.ERROR, "roadside.central.revocation"):
        assert watched.current() is good
        assert watched.current() is good  # the same broken file: said once
    (line,) = [r.getMessage() for r in caplog.records]
    assert "damaged" in line and "stays in force" in line
    ca.revoke(BOX)  # a good list again, with one more revoked
    assert sum(len(list(c)) for c in watched.current().crls) == 2


def test_unsigned_and_foreign_signed_uploads_are_refused(
    tmp_path: Path, broker, station: Station, pki: Path, clip: Path
) -> None:
    unsigned = Box(tmp_path / "unsigned", broker.port, BOX, None)
    try:
        rec = unsigned.send(clip, rq=station.ask(BOX))
    finally:
        unsigned.stop()
    assert (rec.state, rec.code) == ("failed", ErrorCode.BAD_REQUEST)
    assert "not signed" in (rec.msg or "")

    impostor = Box(tmp_path / "impostor", broker.port, BOX, signer(pki, OTHER))
    try:
        rec = impostor.send(clip, rq=station.ask(BOX))
    finally:
        impostor.stop()
    assert (rec.state, rec.code) == ("failed", ErrorCode.BAD_REQUEST)
    assert f"signed with {OTHER}'s certificate" in (rec.msg or "")
    assert station.policy.refused == {"missing": 1, "certificate": 1}
    assert not list((tmp_path / "station" / "files").rglob("*.mp4"))


def test_only_asked_uploads_and_a_quota_of_unasked_pictures(
    tmp_path: Path, broker, station: Station, pki: Path, clip: Path, footage: Path
) -> None:
    box = Box(tmp_path / "box", broker.port, BOX, signer(pki, BOX))
    picture = tmp_path / "door.jpg"
    picture.write_bytes(b"\xff\xd8" + bytes(range(256)) * 40 + b"\xff\xd9")
    try:
        nobody_asked = box.send(clip)
        others_request = box.send(clip, rq=station.ask(OTHER))
        tamper = box.send(picture, kind="snapshot")  # unasked: within the quota of 1
        second = box.send(picture, kind="snapshot")
        asked = box.send(clip, rq=station.ask(BOX))
    finally:
        box.stop()
    for rec in (nobody_asked, others_request):
        assert (rec.state, rec.code) == ("failed", ErrorCode.NOT_FOUND)
        assert f"did not ask {BOX} for this clip" in (rec.msg or "")
    assert tamper.state == "done"
    assert (second.state, second.code) == ("failed", ErrorCode.BUSY)
    assert "quota" in (second.msg or "")
    assert asked.state == "done"


def _init(device: str, size: int, expires: float) -> tuple[str, bytes]:
    xid = new_id()
    init = XferInit(
        id=xid,
        kind="clip",
        name="c.mp4",
        size=size,
        sha256="0" * 64,
        chunk_size=16384,
        at=time.time(),
        expires=expires,
    )
    return xfer_topic(device, xid, XFER_INIT), init.encode()


def test_box_chosen_deadline_is_capped(tmp_path: Path) -> None:
    """A deadline of 1e300 must not keep a partial file for ever."""
    rx = TransferReceiver(tmp_path / "in", _Keep(), bounds=Bounds(max_deadline_s=3600))
    topic_name, payload = _init(BOX, 100_000, 1e300)
    (ack,) = rx.handle(topic_name, payload)
    xid = XferAck.decode(ack.payload).transfer_id
    assert (tmp_path / "in" / f"{xid}.part").exists()
    assert rx.sweep(time.time() + 3600 + DEADLINE_GRACE_S - 60) == 0
    assert rx.sweep(time.time() + 3600 + DEADLINE_GRACE_S + 60) == 1
    state = rx.state(xid)
    assert state is not None and (state["state"], state["code"]) == ("fail", "deadline")
    assert not (tmp_path / "in" / f"{xid}.part").exists()
    rx.close()


def test_partial_bytes_per_box_are_bounded(tmp_path: Path) -> None:
    rx = TransferReceiver(tmp_path / "in", _Keep(), bounds=Bounds(partial_bytes=1_000_000))
    exp = time.time() + 3600

    def announce(device: str, size: int) -> XferAck:
        topic_name, payload = _init(device, size, exp)
        (ack,) = rx.handle(topic_name, payload)
        return XferAck.decode(ack.payload)

    assert announce(BOX, 600_000).state == "recv"
    over = announce(BOX, 600_000)
    assert (over.state, over.code) == ("fail", ErrorCode.BUSY)
    assert "over the limit of 1000000" in (over.detail or "")
    assert announce(OTHER, 600_000).state == "recv"  # one box's backlog never blocks another
    assert rx.stats.refused == 1
    rx.close()


class _Keep:
    """A landing that takes every file (the bounds are the receiver's own)."""

    def admits(self, device: str, init: XferInit) -> None:
        return None

    def started(self, device: str, init: XferInit) -> None: ...

    def place(self, device: str, init: XferInit, part: Path) -> Path:
        return part

    def finished(self, device: str, init: XferInit, path: Path) -> None: ...

    def failed(self, device: str, xid: str, reason: str) -> None: ...


def _der(ca: ProjectCA, name: str, key) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return ca.issue_device(name, key.public_key()).public_bytes(Encoding.DER)


def _sidecar(box: Signer, device: str, file: Path) -> bytes:
    import hashlib

    from roadside.evidence import sidecar_bytes

    manifest = ClipManifest(
        device=device,
        xid=new_id(),
        kind="clip",
        name=file.name,
        size=file.stat().st_size,
        sha256=hashlib.sha256(file.read_bytes()).hexdigest(),
        software="test",
        signed_at=time.time(),
    )
    return sidecar_bytes(box.sign(manifest))
