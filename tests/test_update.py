"""Software updates: signed releases, slots, the trial, and the station -> box download.

Installs go into temporary roots (``update.root``); releases are small synthetic ones (a
made-up roadside wheel) except where a real agent must run (test_update_agent.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from roadside.agent.update.service import UpdateService
from roadside.agent.update.slots import SLOT_MARK, Slots
from roadside.agent.update.trial import Trial, TrialBook, guard, note_exit
from roadside.agent.uplink import Uplink
from roadside.central.config import BrokerConfig
from roadside.central.fleet.sender import Delivery, ReleaseSender, SendSettings
from roadside.config.agent import MqttConfig, UpdateConfig, UplinkConfig
from roadside.provisioning.release import build_release, create_release_key
from roadside.release import ReleaseError, load_public_key, open_release
from roadside.testing.badlink import BadLink, LinkShape
from roadside.testing.releases import PASSPHRASE, fake_wheel, release_key, synthetic_release
from roadside.testing.waiting import wait_until
from roadside.transfer.machine import Ending
from roadside.wire.transfer import pack_chunk, unpack_chunk
from roadside.wire.update import UpdateState

DEVICE = "junction-07"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return release_key(tmp_path_factory.mktemp("release-key"))


def installed_root(root: Path, work: Path, version: str = "0.9.0") -> Slots:
    """A box root whose current and stable slot is a synthetic ``version``."""
    wheels = work / f"base-{version}"
    fake_wheel(wheels, version, "def main():\n    print('base')\n")
    slots = Slots(root)
    slots.install(version, wheels)
    slots.switch(version)
    slots.mark_stable(version)
    return slots


# -- the release file -------------------------------------------------------------------------
def test_a_signed_release_unpacks_with_every_sha256_checked(keys, tmp_path: Path) -> None:
    key, public = keys
    path = synthetic_release(tmp_path, key, "1.2.3")
    release = open_release(path, load_public_key(public), tmp_path / "out")
    assert release.manifest.version == "1.2.3"
    assert [p.name for p in release.wheels.iterdir()] == ["roadside-1.2.3-py3-none-any.whl"]


def _rewrite(path: Path, out: Path, change) -> Path:  # type: ignore[no-untyped-def]
    with tarfile.open(path) as src, tarfile.open(out, "w:") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read()  # type: ignore[union-attr]
            changed = change(member.name, data)
            if changed is None:
                continue
            member.size = len(changed)
            import io

            dst.addfile(member, io.BytesIO(changed))
    return out


def _flip(name: str, data: bytes, target: str) -> bytes:
    if name != target:
        return data
    spoilt = bytearray(data)
    spoilt[len(spoilt) // 2] ^= 0x01
    return bytes(spoilt)


@pytest.mark.parametrize(
    ("how", "code", "words"),
    [
        ("wheel", "sha256", "sha256 does not match"),
        ("manifest", "signature", "signature does not match"),
        ("unsigned", "signature", "has no signature"),
        ("other key", "signature", "signature does not match"),
        ("other machine", "platform", "this box runs"),
    ],
)
def test_a_tampered_or_foreign_release_is_refused(
    keys, tmp_path: Path, how: str, code: str, words: str
) -> None:
    key, public = keys
    good = synthetic_release(tmp_path, key, "1.2.3")
    wheel = "wheels/roadside-1.2.3-py3-none-any.whl"
    bad = tmp_path / "bad.release"
    if how == "wheel":
        _rewrite(good, bad, lambda n, d: _flip(n, d, wheel))
    elif how == "manifest":
        _rewrite(good, bad, lambda n, d: d.replace(b'"1.2.3"', b'"1.2.4"'))
    elif how == "unsigned":
        _rewrite(good, bad, lambda n, d: None if n == "release.sig" else d)
    elif how == "other key":
        other, _pub = release_key(tmp_path / "other-key")
        bad = synthetic_release(tmp_path / "other", other, "1.2.3")
    else:
        bad, _m = build_release(tmp_path / "wheels-1.2.3", key, tmp_path / "x", machine="riscv64")
    with pytest.raises(ReleaseError) as err:
        open_release(bad, load_public_key(public), tmp_path / "out")
    assert err.value.code == code and words in str(err.value)


def test_the_release_key_stays_out_of_the_ca_folder(tmp_path: Path) -> None:
    from roadside.errors import ProvisionError
    from roadside.provisioning.ca import ProjectCA

    ca = ProjectCA.create(tmp_path / "ca", b"correct horse battery staple")
    with pytest.raises(ProvisionError, match="keep the release key in a folder of its own"):
        create_release_key(ca.directory, PASSPHRASE)


# -- slots ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_slots_switch_and_prune_keeping_two(keys, tmp_path: Path) -> None:
    root = tmp_path / "root"
    slots = installed_root(root, tmp_path)
    for version in ("1.0.0", "1.1.0"):
        fake_wheel(tmp_path / f"w-{version}", version, "def main():\n    print('x')\n")
        slots.install(version, tmp_path / f"w-{version}")
        slots.switch(version)
        slots.mark_stable(version)
        slots.prune(2)
    assert slots.versions() == ["1.0.0", "1.1.0"] and slots.current() == "1.1.0"
    out = subprocess.run(
        [str(root / "opt/roadside/current/bin/roadside")], capture_output=True, text=True
    )
    assert out.stdout.strip() == "x"
    assert os.readlink(root / "opt/roadside/current") == "releases/1.1.0"


def test_the_guard_rolls_back_after_its_starts_or_its_deadline(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for d in ("releases/1.0/", "releases/2.0/"):
        (root / "opt/roadside" / d).mkdir(parents=True)
        (root / "opt/roadside" / d / SLOT_MARK).write_text("{}")
    slots, book = Slots(root), TrialBook(tmp_path / "update")
    slots.mark_stable("1.0")
    slots.switch("2.0")
    now = time.time()
    book.save_trial(Trial("2.0", "1.0", now, now + 300))
    assert "start 1 of 2" in guard(slots, book, max_starts=2, now=now)
    note_exit(book, {"SERVICE_RESULT": "exit-code", "EXIT_CODE": "exited", "EXIT_STATUS": "1"})
    assert "start 2 of 2" in guard(slots, book, max_starts=2, now=now)
    said = guard(slots, book, max_starts=2, now=now)
    assert said.startswith("rolled back to 1.0") and "exited with status 1" in said
    assert slots.current() == "1.0" and book.trial() is None
    outcome = book.outcome()
    assert outcome is not None and (outcome.state, outcome.code) == ("rolled_back", "crashed")
    # The deadline: a release that keeps running unhealthy is rolled back at its next start.
    slots.switch("2.0")
    book.save_trial(Trial("2.0", "1.0", now, now + 300))
    assert guard(slots, book, max_starts=5, now=now + 301).startswith("rolled back to 1.0")
    assert book.outcome().code == "unhealthy"  # type: ignore[union-attr]


INSTALLER = """
import sys
from pathlib import Path
from roadside.agent.update.slots import Slots
Slots(Path(sys.argv[1])).install(sys.argv[2], Path(sys.argv[3]))
Slots(Path(sys.argv[1])).switch(sys.argv[2])
"""


@pytest.mark.slow
def test_a_sigkill_in_the_middle_of_an_install_leaves_one_consistent_slot(
    keys, tmp_path: Path
) -> None:
    """Killed while pip writes the new slot: after recovery the old slot is current and
    complete, the half-made one is gone, and the install then goes through."""
    root = tmp_path / "root"
    slots = installed_root(root, tmp_path)
    wheels = tmp_path / "w-2.0.0"
    fake_wheel(wheels, "2.0.0", "def main():\n    print('two')\n", filler=40 << 20)
    proc = subprocess.Popen([sys.executable, "-c", INSTALLER, str(root), "2.0.0", str(wheels)])
    slot = slots.slot("2.0.0")
    wait_until(lambda: (slot / "lib").is_dir(), 60, "pip to start writing the slot")
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert not slots.complete("2.0.0")
    assert slots.recover() == ["2.0.0"]
    assert slots.versions() == ["0.9.0"] and slots.current() == slots.stable() == "0.9.0"
    assert not slot.exists()
    subprocess.run([sys.executable, "-c", INSTALLER, str(root), "2.0.0", str(wheels)], check=True)
    assert slots.current() == "2.0.0" and slots.complete("2.0.0")


# -- the station -> box download ------------------------------------------------------------
class Box:
    """A box's uplink and update client (no pipeline), against ``port``."""

    def __init__(self, work: Path, port: int, public: Path, root: Path) -> None:
        self.restarts: list[str] = []
        self.uplink = Uplink(
            DEVICE,
            MqttConfig(host="127.0.0.1", port=port, reconnect_min_s=0.5, reconnect_max_s=2),
            UplinkConfig(),
            work / "data",
            heartbeat=False,
        )
        cfg = UpdateConfig(release_key=str(public), root=str(root), health_s=60, confirm_s=0)
        self.update = UpdateService(
            cfg,
            self.uplink,
            work / "data",
            lambda: (True, "fine"),
            self.restarts.append,
            running="0.9.0",
        )

    def __enter__(self) -> Box:
        self.update.start()
        self.uplink.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.update.stop()
        self.uplink.stop()

    def states(self) -> list[UpdateState]:
        return [r.state for r in self.update.outcomes]


def finished(deliveries: list[Delivery]):  # type: ignore[no-untyped-def]
    done = threading.Event()

    def on_finished(d: Delivery) -> None:
        deliveries.append(d)
        done.set()

    return on_finished, done


@pytest.mark.slow
def test_a_release_arrives_over_a_link_cut_every_20_s_and_is_installed(
    keys, broker, tmp_path: Path
) -> None:
    key, public = keys
    root = tmp_path / "root"
    slots = installed_root(root, tmp_path)
    release = synthetic_release(tmp_path, key, "1.0.0", filler=1_400_000)
    shape = LinkShape(latency_s=0.3, up_kbps=256, down_kbps=256, cut_every_s=20, down_for_s=2)
    with (
        BadLink(broker.port, shape=shape) as link,
        Box(tmp_path / "box", link.port, public, root) as box,
    ):
        box.uplink.client.wait_connected(30)
        sender = ReleaseSender(BrokerConfig(host="127.0.0.1", port=broker.port)).start()
        ended: list[Delivery] = []
        on_finished, done = finished(ended)
        sender.on_finished.append(on_finished)
        d = sender.send(DEVICE, release, "1.0.0")
        assert done.wait(240), "the release did not arrive"
        sender.stop()
        wait_until(lambda: box.restarts, 60, "the box to install and restart")
        cuts = link.stats.cuts
    assert ended[0].ending is not None and ended[0].ending.ending is Ending.DONE
    assert cuts >= 2, f"only {cuts} cuts happened during the download"
    assert box.restarts == ["switch to release 1.0.0"]
    assert UpdateState.DOWNLOADING in box.states() and box.states()[-1] is UpdateState.TRIAL
    assert slots.current() == "1.0.0" and slots.stable() == "0.9.0"
    trial = TrialBook(tmp_path / "box/data/update").trial()
    assert trial is not None and (trial.release, trial.previous, trial.xid) == (
        "1.0.0",
        "0.9.0",
        d.xid,
    )
    out = subprocess.run([str(root / "opt/roadside/current/bin/roadside")], capture_output=True)
    assert out.stdout.strip() == b"roadside from the release"


def test_a_release_arrives_while_the_sender_starts_many_others(
    keys, broker, tmp_path: Path
) -> None:
    """A rollout starts a delivery per box at once: the broker's PUBACKs stream back while
    the sender publishes the next inits and chunks, and the sender must keep going."""
    key, public = keys
    root = tmp_path / "root"
    slots = installed_root(root, tmp_path)
    release = synthetic_release(tmp_path, key, "1.0.0", filler=200_000)
    with Box(tmp_path / "box", broker.port, public, root) as box:
        box.uplink.client.wait_connected(30)
        sender = ReleaseSender(BrokerConfig(host="127.0.0.1", port=broker.port)).start()
        assert sender.connected.wait(30)
        ended: list[Delivery] = []
        on_finished, done = finished(ended)
        sender.on_finished.append(on_finished)
        for i in range(19):  # boxes that are away: their inits and first chunks go unanswered
            sender.send(f"away-{i:02d}", release, "1.0.0")
        d = sender.send(DEVICE, release, "1.0.0")
        assert done.wait(30), "the sender stopped sending"
        wait_until(lambda: box.restarts, 60, "the box to install and restart")
        sender.stop()
    assert [e.xid for e in ended] == [d.xid] and d.done
    assert slots.current() == "1.0.0"


class TamperingSender(ReleaseSender):
    """Changes one byte of chunk 3 on its way (with a CRC that fits): a man in the middle."""

    def _chunk(self, d, offer):  # type: ignore[no-untyped-def]
        out = super()._chunk(d, offer)
        if out is None or offer.index != 3:
            return out
        offset, data = unpack_chunk(out[1])
        return out[0], pack_chunk(offset, bytes([data[0] ^ 1]) + data[1:])


@pytest.mark.parametrize("spoil", ["chunk", "signature"])
def test_a_tampered_chunk_or_signature_is_refused(keys, broker, tmp_path: Path, spoil: str) -> None:
    key, public = keys
    root = tmp_path / "root"
    slots = installed_root(root, tmp_path)
    release = synthetic_release(tmp_path, key, "1.0.0", filler=200_000)
    if spoil == "signature":
        other, _pub = release_key(tmp_path / "thief")
        release = synthetic_release(tmp_path / "thief", other, "1.0.0", filler=200_000)
    cls = TamperingSender if spoil == "chunk" else ReleaseSender
    with Box(tmp_path / "box", broker.port, public, root) as box:
        box.uplink.client.wait_connected(30)
        sender = cls(BrokerConfig(host="127.0.0.1", port=broker.port), SendSettings()).start()
        ended: list[Delivery] = []
        on_finished, done = finished(ended)
        sender.on_finished.append(on_finished)
        sender.send(DEVICE, release, "1.0.0")
        assert done.wait(60)
        sender.stop()
        if spoil == "signature":
            wait_until(lambda: UpdateState.REFUSED in box.states(), 30, "the refusal")
    ending = ended[0].ending
    assert ending is not None
    if spoil == "chunk":
        # The box's receiver: sha256 wrong although every chunk came as sent (CRC): refused.
        assert ending.ending is Ending.REFUSED and "sha256 does not match" in (ending.msg or "")
    else:
        assert ending.ending is Ending.DONE  # the file arrived as sent, and then:
        report = box.update.outcomes[-1]
        assert report.code == "signature" and "signature does not match" in (report.detail or "")
    assert box.restarts == [] and slots.versions() == ["0.9.0"] and slots.current() == "0.9.0"
