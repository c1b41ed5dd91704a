"""``roadside central run`` on a config that cannot work: each mistake is one line in the log
and an exit code of its own (the systemd unit restarts on none of the config faults), and an
unreachable broker is warned about at every attempt."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import tomli_w

from roadside.errors import ExitCode
from roadside.testing.broker import LocalBroker
from roadside.testing.ports import free_port

ROADSIDE = str(Path(sys.executable).parent / "roadside")


def _run(tmp_path: Path, duration: float, **config: object) -> tuple[int, list[str], float]:
    path = tmp_path / "central.toml"
    config.setdefault("data_dir", str(tmp_path / "central"))
    path.write_text(tomli_w.dumps(config))
    started = time.monotonic()
    run = subprocess.run(
        [ROADSIDE, "central", "run", "--config", str(path), "--duration", str(duration)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Traceback" not in run.stderr, run.stderr
    return run.returncode, run.stderr.strip().splitlines(), time.monotonic() - started


def test_an_unreachable_broker_is_warned_about_at_every_attempt(tmp_path: Path) -> None:
    port = free_port()
    code, lines, _ = _run(tmp_path, 4.0, broker={"host": "127.0.0.1", "port": port})
    attempts = [line for line in lines if f"cannot reach the broker at 127.0.0.1:{port}" in line]
    assert len(attempts) >= 2 and all("WARNING" in line for line in attempts), lines
    assert code == ExitCode.UNAVAILABLE
    assert lines[-1].startswith("error: no broker answered at 127.0.0.1:"), lines


def test_a_broker_that_refuses_the_credentials_ends_the_run_at_once(tmp_path: Path) -> None:
    with LocalBroker(tmp_path / "broker", anonymous=False) as broker:
        link = {"host": "127.0.0.1", "port": broker.port, "username": "central.main"}
        code, lines, took = _run(tmp_path, 60.0, broker={**link, "password": "wrong"})
    assert code == ExitCode.NO_PERMISSION, lines
    assert took < 30, "a refusal is final: the run does not wait out its duration"
    assert lines[-1].startswith(f"error: the broker at 127.0.0.1:{broker.port} refused"), lines
    assert "username, password_file" in lines[-1]


def test_a_data_dir_the_station_cannot_write_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    code, lines, _ = _run(tmp_path, 1.0, data_dir=str(blocker / "central"), broker={"port": 1})
    assert code == ExitCode.CANT_CREATE
    assert lines == [
        f"error: data_dir = '{blocker / 'central'}': the station cannot write there "
        "(Not a directory); make it writable for this user or set another data_dir"
    ]
