"""The unit files: systemd's own verifier, and their agreement with the agent's defaults.

``systemd-analyze verify`` refuses a unit whose ExecStart binary does not exist, and only
warns (exit 0) on unknown keys; so each unit is verified as a copy whose ExecStart points at
this virtual environment's ``roadside``, and any warning that names the unit fails the test.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w

from roadside.config.agent import AgentConfig, WatchdogConfig
from roadside.errors import ExitCode
from roadside.testing.configs import agent_config
from roadside.testing.unit import seconds, unit_keys
from roadside.testing.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]
UNITS = ROOT / "systemd"
ROADSIDE = Path(sys.executable).with_name("roadside")
INSTALLED = "/opt/roadside/current/bin/roadside"  # a box runs its current release slot
STABLE = "/opt/roadside/stable/bin/roadside"  # the start guard and stop hook run from here
STATION = "/opt/roadside/bin/roadside"  # the station's own install


def verify(unit: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """``systemd-analyze verify`` on a copy whose ExecStart is this venv's roadside."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt install systemd; .ci/run does)")
    copy = tmp_path / unit.name
    text = unit.read_text()
    assert f"ExecStart={INSTALLED} " in text or f"ExecStart={STATION} " in text
    for installed in (f"={INSTALLED} ", f"={STATION} ", f"=-{STABLE} "):
        text = text.replace(installed, f"={ROADSIDE} ")
    copy.write_text(text)
    return subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60
    )


def complaints(proc: subprocess.CompletedProcess, name: str) -> list[str]:
    return [ln for ln in (proc.stdout + proc.stderr).splitlines() if name in ln]


@pytest.mark.parametrize(
    "name", ["roadside-agent.service", "roadside-central.service", "roadside-console.service"]
)
def test_systemd_analyze_verify_passes(name: str, tmp_path: Path) -> None:
    proc = verify(UNITS / name, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert complaints(proc, name) == [], proc.stderr


def test_the_verifier_catches_a_misspelt_key(tmp_path: Path) -> None:
    """The check above is not vacuous: a typo in a unit is reported."""
    broken = tmp_path / "src" / "roadside-agent.service"
    broken.parent.mkdir()
    broken.write_text(
        (UNITS / "roadside-agent.service").read_text().replace("WatchdogSec=", "WatchdogSecs=")
    )
    proc = verify(broken, tmp_path)
    assert any("WatchdogSecs" in ln for ln in complaints(proc, broken.name)), proc.stderr


def test_agent_unit_matches_the_agent() -> None:
    keys = unit_keys(UNITS / "roadside-agent.service")
    unit, service = keys["Unit"], keys["Service"]
    assert service["Type"] == ["notify"] and service["Restart"] == ["always"]
    assert int(unit["StartLimitBurst"][0]) >= 3 and seconds(unit["StartLimitIntervalSec"][0]) > 0
    # The agent stops pinging after frame_timeout_s; systemd must wait longer than that.
    watchdog = seconds(service["WatchdogSec"][0])
    defaults = WatchdogConfig()
    assert defaults.frame_timeout_s * 2 <= watchdog
    assert seconds(service["TimeoutStartSec"][0]) >= 60  # model load and camera start on a Pi 4
    # Hardening, with the data directory, the release slots and the config folder (config
    # changes from the station are written beside the file ExecStart names) the only
    # writable places.
    assert service["ProtectSystem"] == ["strict"]
    data_dir = AgentConfig.model_fields["data_dir"].default
    config_dir = str(Path(service["ExecStart"][0].split()[-1]).parent)
    assert set(service["ReadWritePaths"][0].split()) == {data_dir, config_dir, "/opt/roadside"}
    # The agent's "start me again" (a config change or a release to apply or undo) is always
    # restarted, and not counted as a failure.
    assert service["RestartForceExitStatus"] == [str(int(ExitCode.RESTART))]
    assert service["SuccessExitStatus"] == [str(int(ExitCode.RESTART))]
    assert service["StateDirectory"] == [Path(data_dir).name]
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectHome"):
        assert service[key] == ["yes"], key
    assert {"video", "gpio"} <= set(service["SupplementaryGroups"][0].split())
    # Device access stays open: camera and GPIO are character devices.
    assert "PrivateDevices" not in service and "DevicePolicy" not in service
    assert "ProtectClock" not in service  # it implies a closed device policy
    exec_start = service["ExecStart"][0].split()
    assert exec_start == [INSTALLED, "agent", "run", "--config", "/etc/roadside/agent.toml"]
    # Releases: the guard and the stop hook run from the stable slot, and never fail a start.
    assert service["ExecStartPre"] == [f"-{STABLE} agent update-guard --config {exec_start[-1]}"]
    assert service["ExecStopPost"] == [f"-{STABLE} agent update-exited --config {exec_start[-1]}"]
    assert "/opt/roadside" in service["ReadWritePaths"][0].split()


@pytest.mark.slow
def test_agent_exec_start_is_a_valid_command_line(tmp_path: Path) -> None:
    """The unit's command line, run with this venv's roadside: it parses, and it looks for
    its config where the unit says (a missing file is the one-line error, not a usage one)."""
    argv = unit_keys(UNITS / "roadside-agent.service")["Service"]["ExecStart"][0].split()
    missing = tmp_path / "etc" / "agent.toml"
    argv = [str(ROADSIDE), *argv[1:-1], str(missing)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "no such config file" in proc.stderr, proc.stderr
    assert "Usage:" not in proc.stderr


@pytest.mark.slow
def test_the_agent_started_as_the_unit_logs_to_the_journal(tmp_path: Path, footage: Path) -> None:
    """The unit's ExecStart and Environment, stderr a file systemd would name in
    JOURNAL_STREAM: INFO lines arrive, each with its sd-daemon priority and no timestamp (the
    journal adds its own), and ``systemctl stop``'s SIGTERM is logged as a warning."""
    service = unit_keys(UNITS / "roadside-agent.service")["Service"]
    argv = service["ExecStart"][0].split()
    doc = agent_config(tmp_path, footage / "traffic_frames.mp4")
    doc["source"].update(pace="native", loop=True)
    config = tmp_path / "agent.toml"
    config.write_text(tomli_w.dumps(doc))
    assert argv[0] == INSTALLED and argv[-1] == "/etc/roadside/agent.toml"
    argv = [str(ROADSIDE), *argv[1:-1], str(config)]
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    env.update(kv.split("=", 1) for kv in service.get("Environment", []))
    journal = tmp_path / "journal"
    with open(journal, "wb") as stderr:
        st = os.fstat(stderr.fileno())
        env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    try:
        ready = "<6>roadside.agent.hardware.watchdog: pipeline running: ready"
        wait_until(lambda: ready in journal.read_text(), 90, "the ready line in the journal")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    lines = journal.read_text().splitlines()
    assert "<6>roadside.agent.cli: starting test-box: source file, model" in "\n".join(lines)
    assert "<4>roadside.agent.app: signal SIGTERM: stopping" in lines, lines
    assert any(ln.startswith("<6>stopped: ") for ln in lines), lines
    ours = [ln for ln in lines if "roadside." in ln or "stopped:" in ln]
    assert ours and all(re.match(r"<[0-7]>", ln) for ln in ours), lines
    assert not any(re.search(r"\d\d:\d\d:\d\d", ln) for ln in ours), lines


@pytest.mark.slow
def test_central_unit_runs_the_central_service() -> None:
    service = unit_keys(UNITS / "roadside-central.service")["Service"]
    argv = service["ExecStart"][0].split()
    assert argv == [STATION, "central", "run", "--config", "/etc/roadside/central.toml"]
    assert service["Restart"] == ["always"] and service["ProtectSystem"] == ["strict"]
    assert service["StateDirectory"][0] in service["ReadWritePaths"][0]
    config_faults = (ExitCode.USAGE, ExitCode.CANT_CREATE, ExitCode.NO_PERMISSION)
    assert service["RestartPreventExitStatus"][0].split() == [str(int(c)) for c in config_faults]
    probe = subprocess.run(
        [str(ROADSIDE), "central", "run", "--help"], capture_output=True, text=True, timeout=60
    )
    if "No such command 'central'" in probe.stderr:
        pytest.skip("the `roadside central` command is not part of this install")
    assert probe.returncode == 0 and "--config" in probe.stdout, probe.stderr
    from roadside.central.config import CentralConfig

    data_dir = CentralConfig.model_fields["data_dir"].default
    assert data_dir in service["ReadWritePaths"][0].split()
    assert service["StateDirectory"] == [Path(data_dir).name]


def test_console_unit_serves_the_console_beside_the_central_service() -> None:
    from roadside.central.config import CentralConfig

    keys = unit_keys(UNITS / "roadside-console.service")
    service, central = keys["Service"], unit_keys(UNITS / "roadside-central.service")["Service"]
    argv = service["ExecStart"][0].split()
    assert argv == [STATION, "central", "web", "--config", "/etc/roadside/central.toml"]
    assert "roadside-central.service" in keys["Unit"]["After"][0].split()
    # the same user and state directory as the ingest service: one database, one clips folder
    for key in ("User", "Group", "StateDirectory", "ReadWritePaths", "ProtectSystem"):
        assert service[key] == central[key], key
    data_dir = CentralConfig.model_fields["data_dir"].default
    assert service["StateDirectory"] == [Path(data_dir).name]
    probe = subprocess.run(
        [str(ROADSIDE), "central", "web", "--help"], capture_output=True, text=True, timeout=60
    )
    assert probe.returncode == 0 and "--config" in probe.stdout, probe.stderr
