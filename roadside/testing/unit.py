"""A systemd service unit run by a small supervisor: the unit's own commands as subprocesses.

What systemd does with ``roadside-agent.service`` that a rollback depends on, taken from the
unit file itself: ``ExecStartPre`` before each start (a leading ``-``: its failure is
ignored), ``ExecStart``, ``ExecStopPost`` after each run with ``$SERVICE_RESULT``,
``$EXIT_CODE`` and ``$EXIT_STATUS`` set, ``Restart=`` with ``RestartForceExitStatus=`` and
``SuccessExitStatus=``, ``RestartSec=`` (tests shorten it) and the start limit
(``StartLimitBurst=`` starts in ``StartLimitIntervalSec=``: past it the unit gives up).
``Environment=`` is passed on. Paths are mapped onto a test's folders (``/opt/roadside`` to a
temporary root). Not done: sd_notify (Type=notify, the watchdog), users and sandboxing.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import BinaryIO

Sections = dict[str, dict[str, list[str]]]


def unit_keys(path: Path) -> Sections:
    """Sections -> key -> values (systemd allows a key more than once)."""
    sections: Sections = {}
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
    """A systemd time span (``5``, ``5s``, ``10min``, ``250ms``) in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "ms": 0.001}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    if match is None or match.group(2) not in units:
        raise ValueError(f"not a time span: {value!r}")
    return float(match.group(1)) * units[match.group(2)]


class UnitState(StrEnum):
    RUNNING = "running"  # started, or between a run and the next start
    STOPPED = "stopped"  # stopped by ``stop`` or by its Restart= policy
    START_LIMIT_HIT = "start-limit-hit"  # too many starts in the interval: systemd gave up


@dataclass(frozen=True)
class Run:
    """One run of ExecStart, as ExecStopPost is told of it."""

    result: str  # $SERVICE_RESULT: success, exit-code, signal
    code: str  # $EXIT_CODE: exited, killed
    status: str  # $EXIT_STATUS: the exit status, or the signal's name (TERM, KILL)
    took_s: float = 0.0  # from the first ExecStartPre to the end of ExecStopPost

    def env(self) -> dict[str, str]:
        return {"SERVICE_RESULT": self.result, "EXIT_CODE": self.code, "EXIT_STATUS": self.status}


@dataclass
class Command:
    argv: list[str]
    ignore_failure: bool


def _command(line: str, paths: dict[str, str]) -> Command:
    ignore = line.startswith("-")
    line = line.removeprefix("-")
    if line[:1] in ("@", "+", "!", ":"):
        raise ValueError(f"exec prefix not supported here: {line}")
    argv = shlex.split(line)
    for i, arg in enumerate(argv):
        for prefix, there in paths.items():
            if arg == prefix or arg.startswith(prefix.rstrip("/") + "/"):
                argv[i] = there + arg[len(prefix) :]
    return Command(argv, ignore)


@dataclass
class ServiceUnit:
    """A service unit's start, stop and restart rules, from its file."""

    start_pre: list[Command]
    start: Command
    stop_post: list[Command]
    restart: str
    restart_s: float
    force_restart: set[str]
    success: set[str]
    burst: int
    interval_s: float
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, paths: dict[str, str]) -> ServiceUnit:
        keys = unit_keys(path)
        unit, service = keys.get("Unit", {}), keys["Service"]

        def one(key: str, default: str) -> str:
            return service.get(key, [default])[-1]

        def words(key: str) -> set[str]:
            return {w for v in service.get(key, []) for w in v.split()}

        (start,) = service["ExecStart"]
        env = dict(e.split("=", 1) for v in service.get("Environment", []) for e in shlex.split(v))
        return cls(
            start_pre=[_command(c, paths) for c in service.get("ExecStartPre", [])],
            start=_command(start, paths),
            stop_post=[_command(c, paths) for c in service.get("ExecStopPost", [])],
            restart=one("Restart", "no"),
            restart_s=seconds(one("RestartSec", "100ms")),
            force_restart=words("RestartForceExitStatus"),
            success=words("SuccessExitStatus"),
            burst=int(unit.get("StartLimitBurst", ["5"])[-1]),
            interval_s=seconds(unit.get("StartLimitIntervalSec", ["10s"])[-1]),
            env=env,
        )

    def ended(self, returncode: int) -> Run:
        if returncode >= 0:
            status = str(returncode)
            ok = returncode == 0 or status in self.success
            return Run("success" if ok else "exit-code", "exited", status)
        name = signal.Signals(-returncode).name.removeprefix("SIG")
        clean = name in ("HUP", "INT", "TERM", "PIPE") or f"SIG{name}" in self.success
        return Run("success" if clean else "signal", "killed", name)

    def restarts_after(self, run: Run) -> bool:
        if run.status in self.force_restart:
            return True
        ok = run.result == "success"
        return {"always": True, "on-success": ok, "on-failure": not ok}.get(self.restart, False)


class UnitSupervisor:
    """Starts ``unit`` as systemd would and keeps it going under its rules, on a thread."""

    def __init__(
        self, unit: ServiceUnit, log: Path, cwd: Path, restart_s: float | None = None
    ) -> None:
        self.unit = unit
        self.log = log
        self.cwd = cwd
        self.restart_s = unit.restart_s if restart_s is None else restart_s
        self.state = UnitState.RUNNING
        self.runs: list[Run] = []  # every ExecStart run that ended, in order
        self.started: list[float] = []  # monotonic start times, for the start limit
        self.proc: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="unit", daemon=True)

    def start(self) -> UnitSupervisor:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """``systemctl stop``: SIGTERM to the running process, no restart after it."""
        self._stopping.set()
        with self._lock:
            proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._thread.join(timeout)

    def tail(self, chars: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def _loop(self) -> None:
        env = {**os.environ, **self.unit.env}
        with self.log.open("ab") as log:
            while not self._stopping.is_set():
                now = time.monotonic()
                recent = [t for t in self.started if now - t < self.unit.interval_s]
                if len(recent) >= self.unit.burst:
                    self.state = UnitState.START_LIMIT_HIT
                    return
                self.started.append(now)
                run = self._one_run(env, log)
                for cmd in self.unit.stop_post:
                    self._run(cmd, {**env, **run.env()}, log)
                self.runs.append(replace(run, took_s=time.monotonic() - now))
                if self._stopping.is_set() or not self.unit.restarts_after(run):
                    break
                self._stopping.wait(self.restart_s)
        self.state = UnitState.STOPPED

    def _one_run(self, env: dict[str, str], log: BinaryIO) -> Run:
        for cmd in self.unit.start_pre:
            rc = self._run(cmd, env, log)
            if rc != 0 and not cmd.ignore_failure:
                return self.unit.ended(rc)
        with self._lock:
            if self._stopping.is_set():
                return Run("success", "exited", "0")
            self.proc = subprocess.Popen(
                self.unit.start.argv, cwd=self.cwd, env=env, stdout=log, stderr=log
            )
        return self.unit.ended(self.proc.wait())

    def _run(self, cmd: Command, env: dict[str, str], log: BinaryIO) -> int:
        try:
            done = subprocess.run(
                cmd.argv, cwd=self.cwd, env=env, stdout=log, stderr=log, timeout=120
            )
        except (OSError, subprocess.TimeoutExpired):
            return 1
        return done.returncode
