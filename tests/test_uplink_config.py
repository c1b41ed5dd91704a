"""The [mqtt] and [uplink] sections: defaults, and one-line errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from roadside.agent.uplink import UplinkClient
from roadside.config.agent import load_config, parse_config
from roadside.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
BASE = {"device": "box-1", "source": {"kind": "file", "path": "x.mp4"}}


def parse(**sections: dict):
    return parse_config({**BASE, **sections})


def test_example_config_documents_the_sections():
    cfg = load_config(ROOT / "examples" / "agent.toml")
    assert cfg.mqtt is not None and cfg.mqtt.effective_port == 1883
    assert cfg.uplink.outbox_sync == "full"


def test_defaults_suit_a_cellular_box():
    cfg = parse(mqtt={"host": "station.example", "tls_ca": "/etc/ca.crt"})
    assert cfg.mqtt.uses_tls and cfg.mqtt.effective_port == 8883
    assert cfg.mqtt.keepalive_s >= 60 and cfg.mqtt.session_expiry_s >= 3600
    assert cfg.mqtt.reconnect_min_s < cfg.mqtt.reconnect_max_s


@pytest.mark.parametrize(
    ("sections", "names"),
    [
        ({"events": {"sinks": ["mqtt"]}}, "[mqtt]"),
        ({"mqtt": {"port": 0}}, "mqtt.port"),
        ({"mqtt": {"tls_cert": "/c.pem"}}, "mqtt.tls_key"),
        ({"mqtt": {"password": "x"}}, "mqtt.username"),
        ({"mqtt": {"username": "u", "password": "x", "password_file": "/p"}}, "mqtt.password_file"),
        ({"mqtt": {"reconnect_min_s": 10, "reconnect_max_s": 1}}, "mqtt.reconnect_max_s"),
        ({"mqtt": {"protocol": "4"}}, "mqtt.protocol"),
        ({"mqtt": {"keepalive": 60}}, "mqtt.keepalive"),
        ({"uplink": {"outbox_max_rows": 5}}, "uplink.outbox_max_rows"),
        ({"uplink": {"outbox_sync": "off"}}, "uplink.outbox_sync"),
    ],
)
def test_errors_are_one_line_naming_the_field(sections: dict, names: str):
    with pytest.raises(ConfigError) as err:
        parse(**sections)
    text = str(err.value)
    assert "\n" not in text and names in text


def test_unreadable_password_file_is_a_config_error(tmp_path: Path):
    cfg = parse(mqtt={"username": "u", "password_file": str(tmp_path / "missing")})
    with pytest.raises(ConfigError, match=r"mqtt\.password_file"):
        UplinkClient(cfg.mqtt, "box-1")


def test_missing_tls_file_is_named_at_start(tmp_path: Path):
    cfg = parse(mqtt={"tls_ca": str(tmp_path / "ca.crt")})
    with pytest.raises(ConfigError, match=r"mqtt\.tls_ca"):
        UplinkClient(cfg.mqtt, "box-1").start()


def test_unwritable_data_dir_is_one_line(tmp_path: Path):
    from roadside.agent.uplink import Uplink
    from roadside.config.agent import MqttConfig, UplinkConfig

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="data_dir") as err:
        Uplink("box-1", MqttConfig(), UplinkConfig(), blocker / "data")
    assert "\n" not in str(err.value)
