"""A private mosquitto: own config, own free port, own folder; started, stopped, restarted.

The demo, the benchmarks and the tests run one each, so they control its config and its
restarts. Not for production (a station runs its broker as a system service, with TLS and an
ACL, see docs/provisioning.md): by default it listens on 127.0.0.1 only and allows anonymous
clients. ``extra`` lines are appended to the config (TLS, ACL, limits); ``listener`` replaces
the default listener line. Persistence is on, in the broker's own folder, so a restart keeps
sessions and queued messages.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from roadside.errors import RoadsideError
from roadside.provisioning.broker import BrokerFiles, write_broker_dir
from roadside.provisioning.ca import ProjectCA
from roadside.testing.ports import free_port, wait_port


class BrokerNotAvailable(RoadsideError):
    """mosquitto is not installed or would not start."""


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if not found:
        raise BrokerNotAvailable("mosquitto is not installed (apt-get install mosquitto)")
    return found


class LocalBroker:
    """One mosquitto process; ``with LocalBroker(folder) as broker: broker.port``."""

    def __init__(
        self,
        workdir: Path,
        extra: str = "",
        port: int | None = None,
        anonymous: bool = True,
        listener: str | None = None,
        max_queued: int | None = 1_000_000,
        max_inflight: int = 1000,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.extra = extra
        self.anonymous = anonymous
        self.listener = listener
        self.max_queued = max_queued
        self.max_inflight = max_inflight
        self.proc: subprocess.Popen | None = None
        self.conf = self.workdir / "mosquitto.conf"
        self.log = self.workdir / "mosquitto.log"

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
            # None: the given config's own limits stand (a later line would override them).
            f"max_queued_messages {self.max_queued}" if self.max_queued is not None else "",
            f"max_inflight_messages {self.max_inflight}",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            self.extra,
        ]
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self) -> LocalBroker:
        self.write_config()
        self.proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=open(self.log, "ab"),  # noqa: SIM115 - owned by the child
        )
        try:
            wait_port(self.port)
        except TimeoutError:
            self.stop()
            raise BrokerNotAvailable(
                f"mosquitto did not start: {self.log.read_text()[-2000:]}"
            ) from None
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

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ProvisionedBroker(LocalBroker):
    """mosquitto on the ``roadside.conf`` that ``roadside provision broker`` writes, as is: its
    TLS listeners (the first port is the boxes'), dynamic security and queue limits. Started
    once every listener takes connections."""

    def __init__(self, workdir: Path, conf: str, ports: tuple[int, ...]) -> None:
        super().__init__(workdir, listener=conf, anonymous=False, port=ports[0], max_queued=None)
        self.ports = ports

    def start(self) -> ProvisionedBroker:
        super().start()
        for port in self.ports[1:]:
            wait_port(port)
        return self


Ports = tuple[int, int, int]  # the boxes', the station's and the officers' listeners


def loopback_broker_dir(ca: ProjectCA, folder: Path) -> tuple[BrokerFiles, Ports]:
    """What ``roadside provision broker`` writes into ``folder``, for this machine: its three
    listeners on distinct free loopback ports (start it with ``ProvisionedBroker``)."""
    while True:
        ports = (free_port(), free_port(), free_port())
        if len(set(ports)) == 3:
            break
    files = write_broker_dir(
        ca,
        folder,
        ["127.0.0.1", "localhost"],
        port=ports[0],
        bind="127.0.0.1",
        conf_dir=str(folder),
        station_port=ports[1],
        station_bind="127.0.0.1",
        officer_port=ports[2],
        officer_bind="127.0.0.1",
    )
    return files, ports
