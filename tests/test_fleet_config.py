"""Remote config against a real mosquitto and a real agent process, restarted as systemd would.

The agent runs as ``roadside agent run`` in a subprocess; a supervisor starts it again
whenever it exits (``Restart=always``), so exit 75 ("start me again") and kills are seen as on
a box. The station side is the real command line (``roadside fleet ...``) and ingest worker.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import tomli_w
from click.testing import CliRunner
from paho.mqtt.enums import CallbackAPIVersion

from roadside.agent.fleet.local import LocalConfig, TrialState
from roadside.central.accounts import ENV_OFFICER, Accounts, Role
from roadside.central.config import load_central_config
from roadside.central.ingest import IngestWorker
from roadside.central.store import Store, queries
from roadside.cli import main
from roadside.config.agent import load_config
from roadside.config.document import config_hash
from roadside.errors import ExitCode
from roadside.ids import new_id
from roadside.testing.ports import free_port
from roadside.testing.shared import models_dir
from roadside.testing.waiting import wait_until
from roadside.wire.commands import CommandMsg, ReplyMsg
from roadside.wire.messages import StatusMsg
from roadside.wire.topics import topic

ROADSIDE = str(Path(sys.executable).parent / "roadside")
DEVICE = "fleet-box"
ADMIN = "an"
HEALTH_S = 8.0

pytestmark = pytest.mark.slow


class Supervisor:
    """Runs the agent and starts it again each time it exits, like ``Restart=always``."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.log = log
        self.exits: list[int] = []
        self.starts = 0
        self.proc: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Supervisor:
        self._thread.start()
        return self

    def _run(self) -> None:
        with self.log.open("ab") as log:
            while not self._stopping.is_set():
                with self._lock:
                    self.proc = subprocess.Popen(
                        [ROADSIDE, "agent", "run", "--config", str(self.config)],
                        stdout=subprocess.DEVNULL,
                        stderr=log,
                    )
                    self.starts += 1
                rc = self.proc.wait()
                self.exits.append(rc)
                if not self._stopping.is_set():
                    time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL the running agent (a crash, a power cut of the process)."""
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.send_signal(signal.SIGKILL)

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._thread.join(60)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@dataclass
class Wire:
    """Watches the box's retained status and every reply; sends raw commands."""

    port: int
    statuses: list[StatusMsg] = field(default_factory=list)
    replies: dict[str, list[ReplyMsg]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"watch-{new_id()}")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", self.port)
        self.client.subscribe(topic(DEVICE, "status"), qos=1)
        self.client.subscribe(topic(DEVICE, "reply/+"), qos=1)
        self.client.loop_start()

    def _on_message(self, _c: object, _u: object, m: mqtt.MQTTMessage) -> None:
        if m.topic.endswith("/status"):
            self.statuses.append(StatusMsg.decode(m.payload))
        else:
            reply = ReplyMsg.decode(m.payload)
            self.replies.setdefault(reply.request_id, []).append(reply)

    @property
    def status(self) -> StatusMsg | None:
        return self.statuses[-1] if self.statuses else None

    def online_with(self, config: str) -> bool:
        s = self.status
        return s is not None and s.state == "online" and s.config_hash == config

    def command(self, name: str, params: dict) -> str:
        rq = new_id()
        cmd = CommandMsg(id=rq, requester=f"{ADMIN}@test", params=params)
        info = self.client.publish(topic(DEVICE, f"cmd/{name}"), cmd.encode(), qos=1)
        info.wait_for_publish(5)
        return rq

    def finals(self, rq: str) -> list[ReplyMsg]:
        return [r for r in self.replies.get(rq, []) if r.final]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Rig:
    tmp: Path
    port: int
    agent_toml: Path
    central_toml: Path
    box: Supervisor
    wire: Wire
    store: Store

    def fleet(self, *args: str) -> tuple[int, str, str]:
        env = {ENV_OFFICER: ADMIN, "ROADSIDE_LANG": "en"}
        result = CliRunner().invoke(
            main, ["fleet", *args, "--config", str(self.central_toml)], env=env
        )
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, result.stderr

    def running_hash(self) -> str:
        return config_hash(load_config(self.agent_toml))

    def audit(self, action: str) -> list[dict]:
        with self.store.connect() as conn:
            return [r for r in queries.audit(conn, 0, 1000) if r["action"] == action]


def _agent_doc(tmp: Path, port: int, footage: Path) -> dict:
    return {
        "device": DEVICE,
        "data_dir": str(tmp / "box"),
        "source": {
            "kind": "file",
            "path": str(footage / "motorway_overpass.mp4"),
            "pace": "native",
            "loop": True,
        },
        "detector": {"models_dir": str(models_dir()), "max_fps": 2.0},
        "events": {"sinks": ["mqtt"]},
        "mqtt": {"host": "127.0.0.1", "port": port, "reconnect_max_s": 2.0},
        "uplink": {"health_period_s": 5.0},
        "fleet": {"health_s": HEALTH_S},
    }


@pytest.fixture
def rig(broker, tmp_path: Path, footage: Path) -> Iterator[Rig]:
    central_toml = tmp_path / "central.toml"
    central_toml.write_text(
        tomli_w.dumps(
            {
                "data_dir": str(tmp_path / "central"),
                "broker": {"port": broker.port},
                "officer": {"reply_timeout_s": 20.0},
            }
        )
    )
    cfg = load_central_config(central_toml)
    store = Store(cfg.database_url)
    Accounts(store.engine).add(ADMIN, Role.ADMIN, "admin-password-1")
    Accounts(store.engine).add("minh", Role.VIEWER, "viewer-password-1")
    worker = IngestWorker(cfg, store).start()
    assert worker.wait_connected(10)
    agent_toml = tmp_path / "etc" / "agent.toml"
    agent_toml.parent.mkdir()
    agent_toml.write_text(
        "# provisioned by hand\n" + tomli_w.dumps(_agent_doc(tmp_path, broker.port, footage))
    )
    wire = Wire(broker.port)
    box = Supervisor(agent_toml, tmp_path / "agent.log").start()
    rig = Rig(tmp_path, broker.port, agent_toml, central_toml, box, wire, store)
    try:
        wait_until(lambda: wire.online_with(rig.running_hash()), 60, "the box online")
        yield rig
    finally:
        box.stop()
        wire.close()
        worker.stop()
        store.close()


def _one_line(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, text
    return lines[0]


def test_an_invalid_key_gets_one_error_and_changes_nothing(rig: Rig) -> None:
    before = rig.agent_toml.read_bytes()
    pid = rig.box.pid
    # the station refuses it first, with the config's own line, and sends nothing
    code, out, err = rig.fleet("config", "set", DEVICE, "--set", "detector.scroe=0.3")
    assert code == ExitCode.USAGE, (out, err)
    line = _one_line(err)
    assert "desired config: unknown key 'detector.scroe'" in line
    assert not rig.audit("set_config")
    # sent past the station, the box refuses it alike: one final reply, the same sentence
    running = tomllib.loads(before.decode())
    running["detector"]["scroe"] = 0.3
    rq = rig.wire.command("set_config", {"cfg": running})
    wait_until(lambda: rig.wire.finals(rq), 20, "the box's answer")
    time.sleep(1.0)  # a second answer would come now
    (final,) = rig.wire.finals(rq)
    assert final.state == "error" and final.code == "bad_config"
    assert final.detail == line.removeprefix("error: ")
    assert rig.agent_toml.read_bytes() == before
    assert not (rig.agent_toml.parent / "agent.toml.trial").exists()
    assert rig.box.pid == pid and rig.box.exits == []  # never restarted


def test_a_change_is_applied_after_its_health_check_and_audited(rig: Rig) -> None:
    old = rig.running_hash()
    code, out, _ = rig.fleet("config", "get", DEVICE)
    assert code == 0 and f"{DEVICE} runs config {old}" in out
    assert tomllib.loads(out)["detector"]["max_fps"] == 2.0
    started = time.monotonic()
    code, out, err = rig.fleet("config", "set", DEVICE, "--set", "detector.score=0.25", "--json")
    took = time.monotonic() - started
    assert code == 0, (out, err, rig.box.tail())
    done = json.loads(out)
    new = rig.running_hash()
    assert done["h"] == new != old and done["prev"] == old and done["changed"] == 1
    assert load_config(rig.agent_toml).detector.score == 0.25
    assert rig.box.exits == [ExitCode.RESTART]  # one restart, asked by the agent itself
    assert HEALTH_S <= took < HEALTH_S + 60
    wait_until(lambda: rig.wire.online_with(new), 10, "the status with the new hash")
    assert rig.wire.status is not None and rig.wire.status.config_trial is None
    # on trial, the status said so before the new hash became current
    assert any(s.config_trial == new and s.config_hash == old for s in rig.wire.statuses)
    (row,) = rig.audit("set_config")
    assert row["state"] == "done" and row["requester"] == ADMIN and row["device"] == DEVICE
    assert row["params"]["diff"] == [{"key": "detector.score", "to": 0.25}]
    assert row["params"]["cfg"] == new and row["params"]["prev"] == old
    wait_until(lambda: _fleet_row(rig)["config"] == new, 10, "the station to hear the new hash")
    row = _fleet_row(rig)
    assert row["desired"] == new and row["change"] == "applied" and row["in_step"]
    assert row["version"] and row["error"] is None
    print(f"\nfleet config: applied in {took:.1f} s (health check {HEALTH_S:.0f} s)")


def _fleet_row(rig: Rig) -> dict:
    code, out, err = rig.fleet("status", "--json")
    assert code == 0, err
    (row,) = [r for r in json.loads(out) if r["device"] == DEVICE]
    return row


def test_a_config_that_breaks_the_source_is_rolled_back(rig: Rig) -> None:
    before = rig.agent_toml.read_bytes()
    old = rig.running_hash()
    started = time.monotonic()
    code, out, err = rig.fleet("config", "set", DEVICE, "--set", "source.path=/nowhere/cam.mp4")
    took = time.monotonic() - started
    assert code == ExitCode.FAILED, (out, err, rig.box.tail())
    assert "rolled back" in out and "video file not found: /nowhere/cam.mp4" in out
    assert rig.agent_toml.read_bytes() == before  # the previous file, byte for byte
    assert rig.box.exits == [ExitCode.RESTART, ExitCode.RESTART]  # to apply, to undo
    wait_until(lambda: rig.wire.online_with(old), 20, "the box back with its old config")
    pid = rig.box.pid
    time.sleep(HEALTH_S)  # healthy again: it stays up, and no trial is left
    assert rig.box.pid == pid and rig.wire.online_with(old)
    assert not (rig.agent_toml.parent / "agent.toml.trial").exists()
    wait_until(lambda: _fleet_row(rig)["change"] == "rolled back", 10, "the station's record")
    row = _fleet_row(rig)
    assert row["config"] == old and row["desired"] != old and not row["in_step"]
    assert "video file not found" in row["error"]
    print(f"\nfleet config: broken source rolled back in {took:.1f} s")


def test_a_broker_change_that_cannot_connect_rolls_back_by_itself(rig: Rig) -> None:
    before = rig.agent_toml.read_bytes()
    old = rig.running_hash()
    dead = free_port()
    code, _, err = rig.fleet("config", "set", DEVICE, "--set", f"mqtt.port={dead}")
    assert code == ExitCode.USAGE and "--allow-disconnect" in _one_line(err)
    started = time.monotonic()
    code, out, err = rig.fleet(
        "config", "set", DEVICE, "--set", f"mqtt.port={dead}", "--allow-disconnect"
    )
    took = time.monotonic() - started
    assert code == ExitCode.FAILED, (out, err, rig.box.tail())
    assert "rolled back" in out and f"did not reach the broker in {HEALTH_S:.0f} s" in out
    assert f"127.0.0.1:{dead}" in out
    assert rig.agent_toml.read_bytes() == before
    assert rig.box.exits == [ExitCode.RESTART, ExitCode.RESTART]
    wait_until(lambda: rig.wire.online_with(old), 20, "the box back on the old broker port")
    assert HEALTH_S < took < HEALTH_S + 60
    print(f"\nfleet config: unreachable broker rolled back in {took:.1f} s")


def test_a_kill_while_applying_leaves_one_consistent_config(rig: Rig) -> None:
    """Killed on trial, the agent counts the start and judges again; killed at every start,
    it rolls back once ``max_starts`` is used up. Either way one whole config runs."""
    local = LocalConfig(rig.agent_toml)
    old = rig.running_hash()
    # 1. killed once during the trial: the next start goes on with the new config
    rq = rig.wire.command("set_config", {"cfg": _doc_with(rig, ("detector", "score"), 0.2)})
    wait_until(lambda: _on_trial(rig), 30, "the new config on trial")
    rig.box.kill()
    wait_until(lambda: rig.wire.finals(rq), 60, "the final answer after the kill")
    (final,) = rig.wire.finals(rq)
    assert final.state == "done" and final.result and final.result["starts"] == 2
    new = rig.running_hash()
    assert new == final.result["h"] != old
    assert not local.trial_path.exists()
    # 2. killed at every start on trial: rolled back at the start after the last allowed one
    before = rig.agent_toml.read_bytes()
    rq = rig.wire.command("set_config", {"cfg": _doc_with(rig, ("detector", "score"), 0.35)})
    for n in range(1, 4):
        wait_until(lambda n=n: _on_trial(rig, n), 60, f"start {n} on trial")
        rig.box.kill()
    wait_until(lambda: rig.wire.finals(rq), 60, "the rollback's answer")
    (final,) = rig.wire.finals(rq)
    assert final.state == "error" and final.code == "rolled_back"
    assert "crash loop" in (final.detail or "")
    assert rig.agent_toml.read_bytes() == before and rig.running_hash() == new
    wait_until(lambda: rig.wire.online_with(new), 20, "the box back on the config before")


def _doc_with(rig: Rig, key: tuple[str, str], value: object) -> dict:
    doc = tomllib.loads(rig.agent_toml.read_text())
    doc[key[0]][key[1]] = value
    return doc


def _on_trial(rig: Rig, starts: int = 1) -> bool:
    trial = LocalConfig(rig.agent_toml)._load_trial()
    s = rig.wire.status
    return (
        trial is not None
        and trial.state == TrialState.TRYING
        and trial.starts == starts
        and s is not None
        and s.state == "online"
        and s.config_trial == trial.config_hash
    )
