"""The unit files: systemd's own verifier, and their agreement with the agent's defaults.

``systemd-analyze verify`` refuses a unit whose ExecStart binary does not exist, and only
warns (exit 0) on unknown keys; so each unit is verified as a copy whose ExecStart points at
this virtual environment's ``roadside``, and any warning that names the unit fails the test.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from roadside.agent.config import AgentConfig, WatchdogConfig

ROOT = Path(__file__).resolve().parents[1]
UNITS = ROOT / "systemd"
ROADSIDE = Path(sys.executable).with_name("roadside")
INSTALLED = "/opt/roadside/bin/roadside"


def unit_keys(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> values (systemd allows a key more than once)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(value: str) -> float:
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "ms": 0.001}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    assert match, value
    return float(match.group(1)) * units[match.group(2)]


def verify(unit: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """``systemd-analyze verify`` on a copy whose ExecStart is this venv's roadside."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt install systemd; .ci/run does)")
    copy = tmp_path / unit.name
    text = unit.read_text()
    assert f"ExecStart={INSTALLED} " in text
    copy.write_text(text.replace(f"ExecStart={INSTALLED} ", f"ExecStart={ROADSIDE} "))
    return subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60
    )


def complaints(proc: subprocess.CompletedProcess, name: str) -> list[str]:
    return [ln for ln in (proc.stdout + proc.stderr).splitlines() if name in ln]


@pytest.mark.parametrize("name", ["roadside-agent.service", "roadside-central.service"])
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
    # Hardening, with the data directory the only writable place, where the agent keeps it.
    assert service["ProtectSystem"] == ["strict"]
    data_dir = AgentConfig.model_fields["data_dir"].default
    assert data_dir in service["ReadWritePaths"][0].split()
    assert service["StateDirectory"] == [Path(data_dir).name]
    for key in ("NoNewPrivileges", "PrivateTmp", "ProtectHome"):
        assert service[key] == ["yes"], key
    assert {"video", "gpio"} <= set(service["SupplementaryGroups"][0].split())
    # Device access stays open: camera and GPIO are character devices.
    assert "PrivateDevices" not in service and "DevicePolicy" not in service
    assert "ProtectClock" not in service  # it implies a closed device policy
    exec_start = service["ExecStart"][0].split()
    assert exec_start == [INSTALLED, "agent", "run", "--config", "/etc/roadside/agent.toml"]


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
def test_central_unit_runs_the_central_service() -> None:
    service = unit_keys(UNITS / "roadside-central.service")["Service"]
    argv = service["ExecStart"][0].split()
    assert argv == [INSTALLED, "central", "run", "--config", "/etc/roadside/central.toml"]
    assert service["Restart"] == ["always"] and service["ProtectSystem"] == ["strict"]
    assert service["StateDirectory"][0] in service["ReadWritePaths"][0]
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
