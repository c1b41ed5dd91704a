"""Where messages go: an interface and the local sinks (console, JSON-lines file).

The MQTT sink (through the durable outbox) lives in the uplink package and implements the
same two methods.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Protocol, TextIO

from roadside.config.agent import EventsConfig
from roadside.wire.messages import Message, dumps_line


class Sink(Protocol):
    """Takes every message the pipeline produces, in order, from the pipeline thread."""

    def publish(self, kind: str, msg: Message) -> None: ...

    def close(self) -> None: ...


class ConsoleSink:
    """JSON lines on stdout (``roadside agent run``)."""

    def __init__(self, device: str, stream: TextIO | None = None) -> None:
        self.device = device
        self.stream = stream or sys.stdout

    def publish(self, kind: str, msg: Message) -> None:
        self.stream.write(dumps_line(self.device, msg) + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class JsonlSink:
    """Appends JSON lines to a file; each line is flushed so a crash loses nothing written."""

    def __init__(self, device: str, path: str | os.PathLike) -> None:
        self.device = device
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def publish(self, kind: str, msg: Message) -> None:
        self._fh.write(dumps_line(self.device, msg) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def local_sinks(cfg: EventsConfig, device: str) -> list[Sink]:
    """The box's own logs of its messages that ``events.sinks`` names (console, jsonl)."""
    sinks: list[Sink] = []
    for name in cfg.sinks:
        if name == "console":
            sinks.append(ConsoleSink(device))
        elif name == "jsonl":
            sinks.append(JsonlSink(device, cfg.jsonl_path or ""))
    return sinks
