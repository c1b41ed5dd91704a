"""Making paho-mqtt 2.x clients for the station: MQTT 5, TLS and credentials from the config.

The ingest workers keep a persistent session (clean start off, a session expiry) so the
broker queues their share of messages while they restart; the officer commands use short
clean sessions of their own.
"""

from __future__ import annotations

import ssl
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from roadside.central.config import BrokerConfig
from roadside.errors import ConfigError, RoadsideError


class BrokerError(RoadsideError):
    """The station's broker cannot be reached or refused us."""


def make_client(cfg: BrokerConfig, client_id: str, manual_ack: bool = False) -> mqtt.Client:
    """A configured, not yet connected, MQTT 5 client."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5,
        manual_ack=manual_ack,
    )
    if cfg.username:
        client.username_pw_set(cfg.username, cfg.read_password())
    if cfg.uses_tls:
        for name in ("tls_ca", "tls_cert", "tls_key"):
            path = getattr(cfg, name)
            if path and not Path(path).is_file():
                raise ConfigError(f"broker.{name} = {path!r}: no such file")
        client.tls_set(
            ca_certs=cfg.tls_ca,
            certfile=cfg.tls_cert,
            keyfile=cfg.tls_key,
            cert_reqs=ssl.CERT_REQUIRED,
            tls_version=ssl.PROTOCOL_TLS_CLIENT,
        )
    client.reconnect_delay_set(min_delay=1, max_delay=30)
    return client


def connect_properties(session_expiry_s: int, receive_max: int | None = None) -> Properties:
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = session_expiry_s
    if receive_max:
        props.ReceiveMaximum = receive_max
    return props


def connect_now(
    client: mqtt.Client,
    cfg: BrokerConfig,
    timeout: float = 10.0,
    clean_start: bool = True,
    session_expiry_s: int = 0,
) -> None:
    """Connect and start the network thread; raise BrokerError unless CONNACK says yes in time.

    For the short-lived officer commands: a service worker uses ``connect_async`` and lets paho
    reconnect forever instead.
    """
    answered = threading.Event()
    outcome: list[str] = []

    def on_connect(
        _c: mqtt.Client, _u: object, _flags: object, reason: ReasonCode, _props: object
    ) -> None:
        if reason.is_failure:
            outcome.append(str(reason))
        answered.set()

    client.on_connect = on_connect
    where = f"{cfg.host}:{cfg.effective_port}"
    try:
        client.connect(
            cfg.host,
            cfg.effective_port,
            keepalive=cfg.keepalive_s,
            clean_start=clean_start,
            properties=connect_properties(session_expiry_s),
        )
    except (OSError, ssl.SSLError) as exc:
        raise BrokerError(f"cannot reach the broker at {where}: {exc}") from None
    client.loop_start()
    if not answered.wait(timeout):
        client.loop_stop()
        raise BrokerError(f"the broker at {where} did not answer within {timeout:.0f} s")
    if outcome:
        client.loop_stop()
        raise BrokerError(f"the broker at {where} refused the connection: {outcome[0]}")
