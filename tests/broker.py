"""A real mosquitto broker for tests: own config, own free port, start/stop/restart at will.

Tests use the same private broker as the demo and the benchmarks, with smaller queues.
"""

from __future__ import annotations

from pathlib import Path

from roadside.central.local_broker import LocalBroker, free_port, wait_port

__all__ = ["Mosquitto", "free_port", "wait_port"]


class Mosquitto(LocalBroker):
    def __init__(
        self,
        workdir: Path,
        extra: str = "",
        port: int | None = None,
        anonymous: bool = True,
        listener: str | None = None,
    ) -> None:
        super().__init__(
            workdir, extra, port, anonymous, listener, max_queued=100_000, max_inflight=100
        )
