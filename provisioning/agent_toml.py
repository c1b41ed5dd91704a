"""The agent.toml a freshly provisioned box starts with, in one place.

Everything the bundle decides about the agent's configuration is in :func:`render_agent_toml`;
:func:`check_agent_toml` then validates the result against the agent's own config model, for
every table that model knows. A table it does not know yet (``[mqtt]`` while its model is
being written) is checked here for its shape only, and automatically joins the full
validation the day ``AgentConfig`` declares it: no code here needs to change then.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from dataclasses import dataclass

from roadside.config.agent import AgentConfig, parse_config
from roadside.errors import ConfigError, ProvisionError

DATA_DIR = "/var/lib/roadside"
TLS_DIR = "/etc/roadside/tls"
TLS_CA = f"{TLS_DIR}/ca.crt"
TLS_CERT = f"{TLS_DIR}/device.crt"
TLS_KEY = f"{TLS_DIR}/device.key"
DEFAULT_MQTT_PORT = 8883
_SITE_CHARS = re.compile(r"^[^\x00-\x1f\x7f]{1,80}$")
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


@dataclass(frozen=True)
class Broker:
    """Where the box connects: host name or IP address, and TLS port."""

    host: str
    port: int = DEFAULT_MQTT_PORT

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_broker(text: str) -> Broker:
    """``host``, ``host:port`` or ``[v6addr]:port``; the port defaults to 8883 (MQTT/TLS)."""
    t = text.strip()
    host, port_s = t, ""
    if t.startswith("["):
        host, _, rest = t[1:].partition("]")
        port_s = rest.removeprefix(":")
    elif t.count(":") == 1:
        host, port_s = t.split(":")
    ok_host = bool(_HOST.match(host)) or (":" in host and re.fullmatch(r"[0-9A-Fa-f:.]+", host))
    try:
        port = int(port_s) if port_s else DEFAULT_MQTT_PORT
    except ValueError:
        port = -1
    if not ok_host or not 1 <= port <= 65535:
        raise ProvisionError(
            f"bad --broker {text!r}: expected host[:port], e.g. broker.station.lan:8883"
        )
    return Broker(host, port)


def parse_location(text: str) -> tuple[float, float]:
    """``LAT,LON`` in decimal degrees (WGS84), e.g. ``46.4983,11.3548``."""
    parts = text.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        lat, lon = (float(p) for p in parts)
    except ValueError:
        lat = lon = math.nan
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        raise ProvisionError(
            f"bad --location {text!r}: expected LAT,LON in decimal degrees, "
            "latitude -90..90 and longitude -180..180, e.g. 46.4983,11.3548"
        )
    return lat, lon


def check_site(text: str) -> str:
    """A site label is free text for people, but one line of it."""
    if not _SITE_CHARS.match(text) or not text.strip():
        raise ProvisionError(f"bad --site {text!r}: one line of 1-80 printable characters")
    return text.strip()


def source_table(camera: str) -> dict[str, str]:
    """The ``[source]`` table for ``--camera``: picamera2, an rtsp:// URL or a V4L2 device."""
    if camera == "picamera2":
        return {"kind": "picamera2"}
    if re.match(r"^rtsps?://\S+$", camera):
        return {"kind": "rtsp", "url": camera}
    if re.match(r"^(/dev/video\d+|\d+)$", camera):
        return {"kind": "device", "path": camera}
    raise ProvisionError(
        f"bad --camera {camera!r}: use picamera2, an rtsp://... URL or /dev/videoN"
    )


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    # A JSON string with the non-ASCII left alone is a valid TOML basic string.
    return json.dumps(str(v), ensure_ascii=False)


def render_agent_toml(
    device: str,
    broker: Broker,
    camera: str = "picamera2",
    site: str | None = None,
    location: tuple[float, float] | None = None,
    status_led: int | None = None,
) -> str:
    """The box's ``/etc/roadside/agent.toml``: identity, camera and the TLS uplink.

    Events go to the broker (``sinks = ["mqtt"]``); the client id is left to the agent's
    default, the device id, which is also what the broker forces (the certificate's CN).

    The site and location are for the people reading the file (they also travel in the
    bundle's manifest); the agent itself is told only what it acts on. ``status_led`` is the
    BCM GPIO of the LED the technician reads at the pole, when the box has one.
    """
    lines = [f"# Roadside agent configuration for {device}, written by `roadside provision`."]
    if site:
        # A comment ends at a newline: keep whatever the site says on its one line.
        lines.append("# Site: " + re.sub(r"[\x00-\x1f\x7f]+", " ", site))
    if location:
        lines.append(f"# Location: {location[0]:.6f},{location[1]:.6f} (WGS84)")
    lines += [
        "",
        f"device = {_toml_value(device)}",
        f"data_dir = {_toml_value(DATA_DIR)}",
        "",
        "[source]",
    ]
    lines += [f"{k} = {_toml_value(v)}" for k, v in source_table(camera).items()]
    lines += [
        "",
        "[events]",
        'sinks = ["mqtt"]',
        "",
        "[mqtt]",
        f"host = {_toml_value(broker.host)}",
        f"port = {broker.port}",
        f"tls_ca = {_toml_value(TLS_CA)}",
        f"tls_cert = {_toml_value(TLS_CERT)}",
        f"tls_key = {_toml_value(TLS_KEY)}",
        "",
    ]
    if status_led is not None:
        lines += ["[hardware.status_led]", f"pin = {int(status_led)}", ""]
    return "\n".join(lines)


def _check_mqtt_shape(table: object) -> None:
    """What we can say of ``[mqtt]`` without its model: present, typed, paths absolute."""
    if not isinstance(table, dict):
        raise ProvisionError("agent.toml: [mqtt] must be a table")
    for k in ("host", "tls_ca", "tls_cert", "tls_key"):
        if not isinstance(table.get(k), str) or not table[k]:
            raise ProvisionError(f"agent.toml: mqtt.{k} must be a non-empty string")
    for k in ("tls_ca", "tls_cert", "tls_key"):
        if not table[k].startswith("/"):
            raise ProvisionError(f"agent.toml: mqtt.{k} must be an absolute path")
    port = table.get("port")
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise ProvisionError("agent.toml: mqtt.port must be a port number")


def check_agent_toml(text: str) -> dict:
    """Validate a rendered agent.toml; returns the parsed document.

    Tables the agent's config model declares are validated by it (``parse_config``), the
    others it does not know yet are left out of that call and shape-checked here.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProvisionError(f"generated agent.toml is not valid TOML: {exc}") from None
    known = set(AgentConfig.model_fields)
    unknown = {k: v for k, v in doc.items() if k not in known}
    if set(unknown) - {"mqtt"}:
        raise ProvisionError(f"agent.toml: unexpected tables {sorted(set(unknown) - {'mqtt'})}")
    if "mqtt" in unknown:
        _check_mqtt_shape(unknown["mqtt"])
    try:
        parse_config({k: v for k, v in doc.items() if k in known}, "generated agent.toml")
    except ConfigError as exc:
        raise ProvisionError(str(exc)) from None
    return doc
