"""A release slot's agent for update tests: the box's real update client, without a pipeline.

``python -m roadside.testing.slotagent VERSION agent run --config agent.toml`` runs the real
uplink and ``UpdateService`` of the config's box, reporting VERSION as the software it runs
(the status and every update report); healthy as soon as its link is up. It exits 75 when
the update service asks for a restart (a switch or a rollback), 0 on SIGTERM. Every other
command (``agent update-guard``, ``agent update-exited``) is the real ``roadside`` command
line. A slot's ``roadside`` script (``releases.slot_agent``) hands over to it, so the code
that takes, installs, guards and rolls back a release is the project's own.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path


def run(version: str, config: Path) -> int:
    # Imported here: the guard and the stop hook start as quickly as the real command line.
    from roadside import logs
    from roadside.agent.update.service import UpdateService
    from roadside.agent.uplink import Uplink
    from roadside.agent.uplink.status import StatusReporter
    from roadside.config.agent import load_config
    from roadside.errors import ExitCode

    cfg = load_config(config)
    logs.apply(cfg.logging)
    if cfg.mqtt is None:
        raise SystemExit("the slot agent needs an [mqtt] section")
    done = threading.Event()
    restart: list[str] = []

    def ask_restart(why: str) -> None:
        restart.append(why)
        done.set()

    uplink = Uplink(
        cfg.device, cfg.mqtt, cfg.uplink, cfg.data_dir, StatusReporter(version), heartbeat=False
    )

    def health() -> tuple[bool, str]:
        return (True, "the link is up") if uplink.client.connected else (False, "no link")

    update = UpdateService(cfg.update, uplink, cfg.data_dir, health, ask_restart, version)
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    update.start()
    uplink.start()
    done.wait()
    update.stop()
    uplink.stop()
    return ExitCode.RESTART if restart else ExitCode.OK


def main(argv: list[str]) -> int:
    version, *args = argv
    if args[:2] == ["agent", "run"]:
        return run(version, Path(args[args.index("--config") + 1]))
    from roadside.cli import main as roadside

    return roadside(args=args, prog_name="roadside", standalone_mode=True) or 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
