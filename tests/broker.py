"""A real mosquitto broker for tests: own config, own free port, start/stop/restart at will."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0, host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout} s")


class Mosquitto:
    """One mosquitto process with a config written by the test.

    ``extra`` is appended to the generated config (listener options, TLS, ACL, ...);
    persistence is on, in the broker's own folder, so a restart keeps sessions and queues.
    """

    def __init__(self, workdir: Path, extra: str = "", port: int | None = None,
                 anonymous: bool = True, listener: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.extra = extra
        self.anonymous = anonymous
        self.listener = listener
        self.proc: subprocess.Popen | None = None
        self.conf = self.workdir / "mosquitto.conf"
        self.log = self.workdir / "mosquitto.log"

    @staticmethod
    def binary() -> str:
        found = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
        )
        if not found:
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        return found

    def write_config(self) -> None:
        lines = [
            "per_listener_settings false",
            self.listener or f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if self.anonymous else 'false'}",
            # As root mosquitto would drop to its own user and lose write access here.
            "user root" if os.geteuid() == 0 else "",
            "persistence true",
            f"persistence_location {self.workdir}/",
            "autosave_interval 1",
            "max_queued_messages 100000",
            "max_inflight_messages 100",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            self.extra,
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> Mosquitto:
        self.write_config()
        self.proc = subprocess.Popen(
            [self.binary(), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.log, "ab"),  # noqa: SIM115 - owned by the child
        )
        try:
            wait_port(self.port)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"mosquitto did not start: {self.log.read_text()[-2000:]}") from None
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
