"""A private mosquitto for the demo and the benchmarks: own config, own free port, own folder.

Not for production (a station runs its broker as a system service, with TLS and an ACL, see
docs/provisioning.md); this one listens on 127.0.0.1 only and allows anonymous clients.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from roadside.errors import RoadsideError


class BrokerNotAvailable(RoadsideError):
    """mosquitto is not installed or would not start."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalBroker:
    """One mosquitto process; ``with LocalBroker(folder) as broker: broker.port``."""

    def __init__(self, workdir: Path, max_queued: int = 1_000_000) -> None:
        self.workdir = Path(workdir)
        self.port = free_port()
        self.max_queued = max_queued
        self.proc: subprocess.Popen | None = None
        self.log = self.workdir / "mosquitto.log"

    def _config(self) -> Path:
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join([
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            # As root mosquitto would drop to its own user and lose write access here.
            "user root" if os.geteuid() == 0 else "",
            "persistence true",
            f"persistence_location {self.workdir}/",
            f"max_queued_messages {self.max_queued}",
            "max_inflight_messages 1000",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
        ]) + "\n")
        return conf

    def start(self) -> LocalBroker:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            raise BrokerNotAvailable("mosquitto is not installed (apt-get install mosquitto)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([binary, "-c", str(self._config())],
                                     stdout=subprocess.DEVNULL,
                                     stderr=open(self.log, "ab"))  # noqa: SIM115
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise BrokerNotAvailable(f"mosquitto did not start: {self.log.read_text()[-500:]}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
