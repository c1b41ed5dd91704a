"""Software updates: signed releases, slots, the trial, and the station -> box download.

Installs go into temporary roots (``update.root``); releases are small synthetic ones (a
made-up roadside wheel). End to end, a box runs under its systemd unit's own commands
(roadside.testing.unit) with the real update client as its slot's agent
(roadside.testing.slotagent), and the station's side is the real ``roadside fleet``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import tomli_w
from click.testing import CliRunner

from roadside.agent.update.service import UpdateService
from roadside.agent.update.slots import SLOT_MARK, Slots
from roadside.agent.update.trial import Trial, TrialBook, guard, note_exit
from roadside.agent.uplink import Uplink
from roadside.agent.uplink.status import StatusReporter
from roadside.central.accounts import ENV_OFFICER, Accounts, Role
from roadside.central.config import BrokerConfig, load_central_config
from roadside.central.fleet.sender import Delivery, ReleaseSender, SendSettings
from roadside.central.store import Store
from roadside.cli import main as cli_main
from roadside.config.agent import MqttConfig, UpdateConfig, UplinkConfig
from roadside.errors import ExitCode
from roadside.provisioning.release import build_release, create_release_key
from roadside.release import ReleaseError, load_public_key, open_release
from roadside.testing.badlink import BadLink, LinkShape
from roadside.testing.clients import Subscriber
from roadside.testing.configs import agent_config
from roadside.testing.releases import (
    EXITS_AT_START,
    PASSPHRASE,
    fake_wheel,
    release_key,
    slot_agent,
    synthetic_release,
)
from roadside.testing.unit import ServiceUnit, UnitState, UnitSupervisor
from roadside.testing.waiting import wait_until
from roadside.transfer.machine import Ending
from roadside.wire.topics import DL, ROOT, STATUS, UPDATE, device_of, topic
from roadside.wire.transfer import pack_chunk, unpack_chunk
from roadside.wire.update import UpdateReport, UpdateState

DEVICE = "junction-07"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return release_key(tmp_path_factory.mktemp("release-key"))


def installed_root(
    root: Path, work: Path, version: str = "0.9.0", main: str = "def main():\n    print('base')\n"
) -> Slots:
    """A box root whose current and stable slot is a synthetic ``version`` running ``main``."""
    wheels = work / f"base-{version}"
    fake_wheel(wheels, version, main)
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


def marked_root(root: Path, *versions: str) -> Slots:
    """Slots marked complete without a venv, their ``roadside`` a script that starts fine (for
    code that only reads and moves the links); current and stable on the first."""
    slots = Slots(root)
    for version in versions:
        command = slots.slot(version) / "bin" / "roadside"
        command.parent.mkdir(parents=True)
        command.write_text("#!/bin/sh\nexit 0\n")
        command.chmod(0o755)
        (slots.slot(version) / SLOT_MARK).write_text("{}")
    slots.switch(versions[0])
    slots.mark_stable(versions[0])
    return slots


def test_the_guard_rolls_back_after_its_starts_or_its_deadline(tmp_path: Path) -> None:
    slots, book = marked_root(tmp_path / "root", "1.0", "2.0"), TrialBook(tmp_path / "update")
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

    def __init__(
        self,
        work: Path,
        port: int,
        public: Path,
        root: Path,
        device: str = DEVICE,
        running: str = "0.9.0",
        restart: Callable[[str], None] | None = None,
    ) -> None:
        self.restarts: list[str] = []
        self.uplink = Uplink(
            device,
            MqttConfig(host="127.0.0.1", port=port, reconnect_min_s=0.5, reconnect_max_s=2),
            UplinkConfig(),
            work / "data",
            StatusReporter(running),
            heartbeat=False,
        )
        cfg = UpdateConfig(release_key=str(public), root=str(root), health_s=60, confirm_s=0)
        self.update = UpdateService(
            cfg,
            self.uplink,
            work / "data",
            lambda: (True, "fine"),
            restart or self.restarts.append,
            running=running,
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


# -- end to end: the box under its systemd unit, the station's sender and command line -------
UNIT = Path(__file__).resolve().parents[1] / "systemd" / "roadside-agent.service"
HEALTH_S = 30.0  # the shortest update.health_s a box takes


@dataclass
class Station:
    """The station's side of a rollout test: its config, store, accounts and command line."""

    toml: Path
    port: int

    @classmethod
    def make(cls, tmp_path: Path, port: int) -> Station:
        toml = tmp_path / "central.toml"
        toml.write_text(
            tomli_w.dumps({"data_dir": str(tmp_path / "central"), "broker": {"port": port}})
        )
        store = Store(load_central_config(toml).database_url)
        Accounts(store.engine).add("admin.le", Role.ADMIN, "admin-password-1")
        store.close()
        return cls(toml, port)

    def fleet(self, *args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(
            cli_main, ["fleet", *args, "--config", str(self.toml)], env={ENV_OFFICER: "admin.le"}
        )
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr


def box_under_unit(tmp_path: Path, footage: Path, device: str, port: int, public: Path):  # type: ignore[no-untyped-def]
    """A box root with release 0.9.0 (the real update client) in its slot, its agent.toml,
    and the unit's commands mapped onto them, not yet started."""
    root = tmp_path / device / "root"
    installed_root(root, tmp_path / device, "0.9.0", slot_agent("0.9.0"))
    toml = tmp_path / device / "agent.toml"
    doc = agent_config(
        tmp_path / device,
        footage / "motorway_overpass.mp4",
        mqtt={"host": "127.0.0.1", "port": port, "reconnect_min_s": 0.2, "reconnect_max_s": 1.0},
        update={
            "release_key": str(public),
            "root": str(root),
            "health_s": HEALTH_S,
            "confirm_s": 0,
        },
    )
    doc["device"] = device
    toml.write_text(tomli_w.dumps(doc))
    paths = {"/opt/roadside": str(root / "opt/roadside"), "/etc/roadside/agent.toml": str(toml)}
    unit = ServiceUnit.load(UNIT, paths)
    supervisor = UnitSupervisor(unit, tmp_path / device / "journal.log", tmp_path / device, 0.0)
    return Slots(root), supervisor


@pytest.mark.slow
def test_a_release_whose_agent_exits_at_start_is_rolled_back_by_the_guard(
    keys, broker, tmp_path: Path, footage: Path
) -> None:
    """Release 1.0.0 exits 1 at every start: the guard (ExecStartPre, from the stable slot)
    counts three failed starts and switches back; 0.9.0 starts again and reports why."""
    key, public = keys
    slots, unit = box_under_unit(tmp_path, footage, DEVICE, broker.port, public)
    station = Station.make(tmp_path, broker.port)
    release = synthetic_release(tmp_path, key, "1.0.0", EXITS_AT_START)
    watch = Subscriber(broker.port, (topic(DEVICE, UPDATE), topic(DEVICE, STATUS)), "watch")
    reports: list[UpdateReport] = []

    def report(state: UpdateState) -> UpdateReport | None:
        reports[:] = [
            UpdateReport.decode(m.payload) for m in watch.messages if m.topic.endswith(UPDATE)
        ]
        return next((r for r in reports if r.state is state), None)

    unit.start()
    sender = ReleaseSender(BrokerConfig(host="127.0.0.1", port=broker.port)).start()
    try:
        wait_until(lambda: any(m.topic.endswith(STATUS) for m in watch.messages), 30, "0.9.0 up")
        sender.send(DEVICE, release, "1.0.0")
        wait_until(lambda: report(UpdateState.TRIAL), 60, "the switch to 1.0.0")
        wait_until(lambda: report(UpdateState.ROLLED_BACK), HEALTH_S, "the rollback")
        code, out, err = station.fleet("status", "--json")
    finally:
        sender.stop()
        unit.stop()
        watch.close()
    trial, back = report(UpdateState.TRIAL), report(UpdateState.ROLLED_BACK)
    assert trial is not None and back is not None, unit.tail()
    assert back.at - trial.at < HEALTH_S  # the guard, not the deadline
    assert (back.release, back.running, back.code) == ("1.0.0", "0.9.0", "crashed")
    why = "release 1.0.0 did not stay up: 3 starts failed (last run: exited with status 1)"
    assert back.detail == why
    assert slots.current() == slots.stable() == "0.9.0"
    assert os.readlink(slots.current_link) == "releases/0.9.0"
    # systemd's view: the switch (75), three failed starts, then 0.9.0 again until stopped
    assert [r.status for r in unit.runs] == ["75", "1", "1", "1", "0"], unit.tail()
    assert unit.state is UnitState.STOPPED
    # and the station's: `roadside fleet status`
    assert code == 0, err
    (row,) = [r for r in json.loads(out) if r["device"] == DEVICE]
    assert (row["version"], row["update"], row["release"]) == ("0.9.0", "rolled_back", "1.0.0")
    assert row["update_error"] == f"crashed: {why}"


class RestartingBox:
    """A box's update client in-process, started again after each restart as its unit does:
    the real start guard first, then the current slot's command; a release whose command fails
    has crashed at start (the stop hook notes it, and the guard runs again), one whose command
    works runs here as the update client of that release."""

    def __init__(self, work: Path, port: int, public: Path, device: str) -> None:
        self.work, self.port, self.public, self.device = work, port, public, device
        self.slots = marked_root(work / "root", "0.9.0")
        self.book = TrialBook(work / "data" / "update")
        self.reports: list[UpdateReport] = []  # every report of every run, in order
        self.box: Box | None = None
        self._restarting: threading.Thread | None = None
        self._start("0.9.0")

    def _start(self, version: str) -> None:
        self.box = Box(
            self.work, self.port, self.public, self.work / "root", self.device, version, self._ask
        )
        self.box.__enter__()

    def _ask(self, why: str) -> None:  # on the box's update thread: restart from another
        self._restarting = threading.Thread(target=self._restart, daemon=True)
        self._restarting.start()

    def _restart(self) -> None:
        self.stop()
        while True:
            guard(self.slots, self.book, max_starts=3)
            current = self.slots.current()
            assert current is not None
            ran = subprocess.run([str(self.slots.slot(current) / "bin/roadside")], check=False)
            if ran.returncode == 0:
                self._start(current)
                return
            exit_env = {"SERVICE_RESULT": "exit-code", "EXIT_CODE": "exited"}
            note_exit(self.book, {**exit_env, "EXIT_STATUS": str(ran.returncode)})

    def stop(self) -> None:
        if self.box is not None:
            self.box.__exit__()
            self.reports += self.box.update.outcomes
            self.box = None

    def all_reports(self) -> list[UpdateReport]:
        return self.reports + (self.box.update.outcomes if self.box is not None else [])


def rollout_args(version: str, release: Path) -> list[str]:
    devices = ["--devices", "a,b,c", "--canary", "1", "--timeout", "60"]
    return ["update", version, *devices, "--release", str(release)]


@pytest.fixture
def fleet_of_three(keys, broker, tmp_path: Path):  # type: ignore[no-untyped-def]
    _key, public = keys
    boxes = [RestartingBox(tmp_path / d, broker.port, public, d) for d in ("a", "b", "c")]
    try:
        for b in boxes:
            assert b.box is not None and b.box.uplink.client.wait_connected(30)
        yield boxes
    finally:
        for b in boxes:
            b.stop()


@pytest.mark.slow
def test_a_canary_that_rolls_back_stops_the_rollout(
    keys, broker, tmp_path: Path, fleet_of_three: list[RestartingBox]
) -> None:
    key, _public = keys
    a, b, c = fleet_of_three
    station = Station.make(tmp_path, broker.port)
    release = synthetic_release(tmp_path, key, "1.0.0", EXITS_AT_START)
    offers = Subscriber(broker.port, (f"{ROOT}/+/{DL}/#",), "watch-offers")
    try:
        code, out, err = station.fleet(*rollout_args("1.0.0", release))
    finally:
        offers.close()
    why = "release 1.0.0 did not stay up: 3 starts failed (last run: exited with status 1)"
    assert code == ExitCode.FAILED, (out, err)
    assert f"a: rolled_back ({why})" in out.splitlines()
    assert "stopped: canary a rolled_back" in err
    assert out.splitlines()[1:] == [f"{d}: not_offered (a canary was not healthy)" for d in "bc"]
    assert [r.state for r in a.all_reports()][-1] is UpdateState.ROLLED_BACK
    assert a.slots.current() == "0.9.0"
    # b and c never got the release: not a message on their dl/ topics, nothing reported
    assert {device_of(m.topic) for m in offers.messages} == {"a"}
    for box in (b, c):
        assert [r for r in box.all_reports() if r.release == "1.0.0"] == []
        assert box.slots.versions() == ["0.9.0"]


@pytest.mark.slow
def test_the_rest_are_offered_a_release_only_once_the_canary_is_healthy(
    keys, broker, tmp_path: Path, fleet_of_three: list[RestartingBox]
) -> None:
    key, _public = keys
    a, b, c = fleet_of_three
    station = Station.make(tmp_path, broker.port)
    release = synthetic_release(tmp_path, key, "1.1.0")
    code, out, err = station.fleet(*rollout_args("1.1.0", release))
    assert code == ExitCode.OK, (out, err)
    assert sorted(ln.split(" ")[:2] for ln in out.splitlines()) == [
        ["a:", "healthy"],
        ["b:", "healthy"],
        ["c:", "healthy"],
    ]
    # the canary's healthy report comes before the others hear of the release at all
    (healthy,) = [r for r in a.all_reports() if r.state is UpdateState.HEALTHY]
    for box in (b, c):
        first = next(r for r in box.all_reports() if r.release == "1.1.0")
        assert first.state is UpdateState.DOWNLOADING and first.at >= healthy.at
        assert box.slots.current() == box.slots.stable() == "1.1.0"
