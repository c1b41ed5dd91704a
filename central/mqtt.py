"""Making paho-mqtt 2.x clients for the station: MQTT 5, TLS and credentials from the config.

The ingest workers keep a persistent session (clean start off, a session expiry) so the
broker queues their share of messages while they restart; the officer commands use short
clean sessions of their own. Every client reconnects through paho's network thread with the
waits of ``ReconnectWaits`` (``roadside.backoff``: doubling, capped, jittered).
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

from roadside.backoff import Backoff
from roadside.central.config import BrokerConfig
from roadside.errors import ConfigError, ExitCode, RoadsideError

RECONNECT_MIN_S = 1.0  # first wait after the broker is lost
RECONNECT_MAX_S = 30.0  # longest wait between attempts while it stays away


# CONNACK reasons that say who we are is wrong, not that the broker is busy: trying again
# with the same config gets the same answer.
REFUSALS = frozenset((0x84, 0x85, 0x86, 0x87, 0x8A, 0x8C))  # protocol, client id, password,
# not authorised, banned, auth method


class BrokerError(RoadsideError):
    """The station's broker cannot be reached or refused us."""


class BrokerUnreachableError(BrokerError):
    """No broker answered at the configured host and port."""

    exit_code = ExitCode.UNAVAILABLE


class BrokerRefusedError(BrokerError):
    """The broker answered and refused our credentials."""

    exit_code = ExitCode.NO_PERMISSION


def is_refusal(reason: ReasonCode) -> bool:
    """A CONNACK that no retry with the same config can change."""
    return reason.is_failure and reason.value in REFUSALS


class ReconnectWaits:
    """The waits paho's network thread makes between reconnect attempts, from a ``Backoff``.

    paho reconnects by itself (``loop_start``) but doubles its wait without jitter, so every
    client of a station would come back to a restarted broker in the same second. Before each
    attempt (paho's ``on_pre_connect``, which this takes) the wait that follows a failure of
    it is set from the backoff; the client's ``on_connect`` calls ``connected`` on success, so
    the next loss starts again from the shortest wait. Runs on paho's network thread only.
    """

    def __init__(self, client: mqtt.Client, backoff: Backoff | None = None) -> None:
        self.backoff = backoff or Backoff(RECONNECT_MIN_S, RECONNECT_MAX_S)
        self._client = client
        self._first = True  # the first attempt follows no wait: the wait set now is its own
        client.on_pre_connect = self._before_attempt
        self._set_next_wait()

    def connected(self) -> None:
        """The broker said yes: a loss from now on waits the shortest time first."""
        self.backoff.reset()
        self._set_next_wait()

    def _before_attempt(self, _client: mqtt.Client, _userdata: object) -> None:
        if self._first:
            self._first = False
            return
        self._set_next_wait()

    def _set_next_wait(self) -> None:
        wait = self.backoff.next()
        self._client.reconnect_delay_set(min_delay=wait, max_delay=wait)  # type: ignore[arg-type]


def make_client(cfg: BrokerConfig, client_id: str, manual_ack: bool = False) -> mqtt.Client:
    """A configured, not yet connected, MQTT 5 client (give it ``ReconnectWaits``)."""
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
    waits = ReconnectWaits(client)

    def on_connect(
        _c: mqtt.Client, _u: object, _flags: object, reason: ReasonCode, _props: object
    ) -> None:
        if reason.is_failure:
            outcome.append(str(reason))
        else:
            waits.connected()
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
        raise BrokerUnreachableError(f"cannot reach the broker at {where}: {exc}") from None
    client.loop_start()
    if not answered.wait(timeout):
        client.loop_stop()
        raise BrokerUnreachableError(f"the broker at {where} did not answer within {timeout:.0f} s")
    if outcome:
        client.loop_stop()
        raise BrokerRefusedError(f"the broker at {where} refused the connection: {outcome[0]}")
