"""Small config documents for tests: an agent playing a file, a station, an uplink's MQTT."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from roadside.central.config import CentralConfig, parse_central_config
from roadside.config.agent import MqttConfig
from roadside.testing.shared import models_dir


def agent_config(tmp_path: Path, source: Path, **sections: dict) -> dict:
    """A minimal agent config document: the file ``source`` played fast, once, through the
    real detector; data under ``tmp_path``. Each keyword updates that section."""
    doc: dict = {
        "device": "test-box",
        "data_dir": str(tmp_path / "data"),
        "source": {"kind": "file", "path": str(source), "pace": "fast", "loop": False},
        "detector": {"models_dir": str(models_dir())},
        "events": {"sinks": []},
    }
    for name, values in sections.items():
        doc.setdefault(name, {}).update(values)
    return doc


def central_config(
    tmp_path: Path, port: int, db_url: str | None = None, **sections: dict
) -> CentralConfig:
    """A station on the broker at ``port``, its data under ``tmp_path``; SQLite unless
    ``db_url`` is given. Each keyword updates that section."""
    doc: dict = {"data_dir": str(tmp_path / "central"), "broker": {"port": port}}
    if db_url:
        doc["database"] = {"url": db_url}
    for name, values in sections.items():
        doc.setdefault(name, {}).update(values)
    return parse_central_config(doc, "test")


def mqtt_config(port: int, **kw: Any) -> MqttConfig:
    """An uplink's MQTT settings for a local broker, reconnecting quickly."""
    return MqttConfig(host="127.0.0.1", port=port, reconnect_min_s=0.05, reconnect_max_s=0.5, **kw)
