"""The MQTT link to the station: one paho-mqtt 2.x client, kept connected by one thread.

What it adds to paho:
- reconnects with exponential backoff and jitter (paho's own backoff has no jitter), and the
  reason of every failed attempt;
- MQTT 5 with a persistent session (clean start off, session expiry), falling back to 3.1.1
  (clean session off) when the broker refuses version 5;
- the retained status: ``online`` on every connect, the ``offline`` last will, and an
  ``offline`` goodbye on a clean stop;
- subscriptions that are made again on every connect, with a callback per topic filter;
- publishes numbered by connection (``epoch``): on every new connection paho's RAM queue of
  unacknowledged messages is dropped and the sender re-sends them from the durable outbox, so
  exactly one party (the outbox) owns retransmission.

Threads: one thread, "uplink-link", owns the socket. It connects, runs paho's network loop
(``Client.loop``), runs every paho callback and every tick (the sender's step), and is the only
thread that publishes, so the in-flight state needs no lock and no publish ever waits for a
thread switch. Other threads talk to it through thread-safe doors: ``subscribe`` (applied by
the link thread on its next turn), ``state``, ``stop``, and the outbox.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from roadside.agent.uplink.status import StatusReporter
from roadside.backoff import Backoff
from roadside.config.agent import MqttConfig
from roadside.errors import ConfigError
from roadside.wire.messages import OfflineReason
from roadside.wire.topics import STATUS, topic

log = logging.getLogger(__name__)
paho_log = logging.getLogger("roadside.agent.uplink.paho")

IDLE_TURN_S = 1.0  # with nothing to do, the link thread still looks (keepalive) this often
CLOSE_TURN_S = 0.05
STATUS_ACK_TIMEOUT_S = 3.0  # a clean stop waits this long for the goodbye's PUBACK


@dataclass(frozen=True, slots=True)
class Inbound:
    """A message from the broker, handed to a subscription callback."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: Properties | None = None


@dataclass(frozen=True, slots=True)
class Sent:
    """A publish handed to paho: its packet id and the connection it went out on."""

    mid: int
    epoch: int


@dataclass(frozen=True)
class LinkState:
    """A snapshot of the link for health reports and logs."""

    connected: bool = False
    connects: int = 0  # successful CONNACKs since start
    failures: int = 0  # attempts that did not end in a successful CONNACK
    last_error: str = ""
    protocol: str = ""  # "5" or "3.1.1" once connected
    window: int = 0
    since: float = 0.0  # monotonic time the link last changed state
    session_present: bool = False

    @property
    def reconnects(self) -> int:
        return max(0, self.connects - 1)


MessageCallback = Callable[[Inbound], None]
ConnectedListener = Callable[[int, bool], None]  # epoch, session present
AckListener = Callable[[int, int, bool, bool], None]  # mid, epoch, accepted, heard
# MQTT 5 PUBACK reason "No matching subscribers": the broker took the message and dropped it,
# as nobody was subscribed (e.g. mosquitto just restarted and the station's shared
# subscription is not back yet). Accepted, but not heard.
NO_MATCHING_SUBSCRIBERS = 0x10


@dataclass
class _Listeners:
    """Hooks run on the link thread; they must return quickly."""

    connected: list[ConnectedListener] = field(default_factory=list)
    disconnected: list[Callable[[], None]] = field(default_factory=list)
    acked: list[AckListener] = field(default_factory=list)
    tick: list[Callable[[], None]] = field(default_factory=list)  # after every loop turn


class UplinkClient:
    """Keeps one MQTT connection to the broker up until ``stop``; see the module doc.

    ``device`` names the topics; the client id is ``cfg.client_id`` or the device id (stable,
    so the broker finds the box's session again).
    """

    def __init__(self, cfg: MqttConfig, device: str, status: StatusReporter | None = None) -> None:
        self.cfg = cfg
        self.device = device
        self.client_id = cfg.client_id or device
        self.status = status
        self.status_topic = topic(device, STATUS)
        self.listeners = _Listeners()
        self._protocol = (
            MQTTProtocolVersion.MQTTv311 if cfg.protocol == "3.1.1" else MQTTProtocolVersion.MQTTv5
        )
        self._password = cfg.read_password()
        self._backoff = Backoff(cfg.reconnect_min_s, cfg.reconnect_max_s)
        # Written by the link thread only; other threads read a whole snapshot (one reference).
        self._state = LinkState(window=cfg.max_inflight, since=time.monotonic())
        self._epoch = 0
        # Subscriptions: any thread registers; the link thread sends them. Guarded by the lock.
        self._subs_lock = threading.Lock()
        self._subs: dict[str, tuple[MessageCallback, int]] = {}
        self._subs_todo: list[tuple[str, int | None]] = []  # (filter, qos) or (filter, None)
        self._stop = threading.Event()
        self._connected_evt = threading.Event()
        self._status_due = threading.Event()  # publish the status again on the next turn
        # Wakes the link thread out of select(); any thread writes, the link thread reads.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._paho: mqtt.Client | None = None
        self._thread: threading.Thread | None = None
        # The longest the link thread waits with nothing happening (ticks run at least this
        # often); the sender shortens it while bulk sources are registered.
        self.idle_turn_s = IDLE_TURN_S
        # Per connection attempt, link thread only: how it is going, and paho's last error.
        self._attempt_failed = False
        self._was_connected = False
        self._paho_error = ""

    # -- public API (any thread) --------------------------------------------------------
    def start(self) -> None:
        """Connect in the background; returns at once."""
        self._check_files()
        self._thread = threading.Thread(target=self._run, name="uplink-link", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Close the link: publish ``offline`` (why="stop") if connected, then disconnect."""
        self._stop.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._thread is None or not self._thread.is_alive():
            self._wake_r.close()
            self._wake_w.close()

    @property
    def connected(self) -> bool:
        return self._connected_evt.is_set()

    @property
    def epoch(self) -> int:
        """Number of the current connection (1 for the first)."""
        return self._epoch

    @property
    def window(self) -> int:
        """Publishes allowed on the wire unacknowledged: max_inflight, or the broker's receive
        maximum if less."""
        return self._state.window

    @property
    def capacity(self) -> int:
        """Publishes to hand over before their acks: a window on the wire (paho holds the rest
        back) plus one queued in paho, which sends the next on each PUBACK by itself. When the
        broker's receive maximum is below max_inflight, paho's own limit is too high to rely
        on, so only the window is handed over."""
        window = self._state.window
        return 2 * window if window == self.cfg.max_inflight else window

    def state(self) -> LinkState:
        return self._state

    def wait_connected(self, timeout: float) -> bool:
        return self._connected_evt.wait(timeout)

    def refresh_status(self) -> None:
        """Publish the ``online`` status again (any thread), e.g. after the config changed; a
        link that is down sends it at its next connect anyway."""
        self._status_due.set()
        self.wake()

    def subscribe(self, topic_filter: str, callback: MessageCallback, qos: int = 1) -> None:
        """Call ``callback`` for every message matching ``topic_filter``, across reconnects.

        The callback runs on the link thread: hand work to your own thread and return.
        """
        with self._subs_lock:
            self._subs[topic_filter] = (callback, qos)
            self._subs_todo.append((topic_filter, qos))
        self.wake()

    def unsubscribe(self, topic_filter: str) -> None:
        with self._subs_lock:
            self._subs.pop(topic_filter, None)
            self._subs_todo.append((topic_filter, None))
        self.wake()

    # -- for code on the link thread (ticks and callbacks) ------------------------------
    def publish(
        self, topic_name: str, payload: bytes, qos: int = 1, retain: bool = False
    ) -> Sent | None:
        """Hand one message to paho; None when the link is down (nothing was queued).

        Link thread only (ticks and callbacks): other threads put messages in the outbox.
        The broker's acknowledgement arrives later through ``listeners.acked``.
        """
        if threading.current_thread() is not self._thread:
            raise RuntimeError(
                "UplinkClient.publish runs on the link thread; other threads "
                "store messages in the outbox (Uplink.publish)"
            )
        if not self._connected_evt.is_set() or self._paho is None:
            return None
        info = self._paho.publish(topic_name, payload, qos=qos, retain=retain)
        if info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            return Sent(info.mid, self._epoch)  # NO_CONN: queued, dropped at the next connect
        log.warning("publish to %s refused by paho: %s", topic_name, mqtt.error_string(info.rc))
        return None

    # -- the link thread ----------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                client = self._connect_once()
            except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
                self._failed(f"{type(exc).__name__}: {exc}")
                self._stop.wait(self._backoff.next())
                continue
            self._serve(client)
            if self._stop.is_set():
                self._close(client)
                break
            if not self._downgraded():
                self._stop.wait(self._backoff.next())

    def _connect_once(self) -> mqtt.Client:
        """Open the socket (TLS handshake included) and send CONNECT; CONNACK comes later."""
        self._attempt_failed = self._was_connected = False
        self._paho_error = ""
        if self._paho is None:
            self._paho = self._build()
        client = self._paho
        if self.status is not None:
            client.will_set(
                self.status_topic, self.status.offline(OfflineReason.LOST), qos=1, retain=True
            )
        if self._protocol == MQTTProtocolVersion.MQTTv5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.cfg.session_expiry_s
            client.connect(
                self.cfg.host,
                self.cfg.effective_port,
                self.cfg.keepalive_s,
                clean_start=False,
                properties=props,
            )
        else:
            client.connect(self.cfg.host, self.cfg.effective_port, self.cfg.keepalive_s)
        return client

    def _serve(self, client: mqtt.Client) -> None:
        """Run the network loop and the ticks until the connection ends or stop is asked."""
        deadline = time.monotonic() + client.connect_timeout  # for the CONNACK
        while not self._stop.is_set():
            rc = self._turn(client)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._lost(client, mqtt.error_string(rc))
                return
            if not self._connected_evt.is_set() and time.monotonic() > deadline:
                self._failed("no CONNACK from the broker in time")
                client.disconnect()
                return
            self._apply_subscriptions(client)
            self._republish_status(client)
            for tick in self.listeners.tick:
                tick()

    def _turn(self, client: mqtt.Client) -> MQTTErrorCode:
        """One turn of paho's external-loop API: wait for the socket or a wake-up, read, write,
        keep alive. Mirrors ``Client.loop`` with our own wake-up pipe added."""
        sock = client.socket()
        if sock is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        pending = sock.pending() if isinstance(sock, ssl.SSLSocket) else 0  # decrypted, unread
        wlist = [sock] if client.want_write() else []
        try:
            readable, writable, _ = select.select(
                [sock, self._wake_r], wlist, [], 0.0 if pending else self.idle_turn_s
            )
        except (OSError, ValueError, TypeError):  # the socket closed under us
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        if self._wake_r in readable:
            with contextlib.suppress(BlockingIOError):
                self._wake_r.recv(4096)
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        if sock in readable or pending:
            rc = client.loop_read()
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and (sock in writable or client.want_write()):
            rc = client.loop_write()
        if rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            rc = client.loop_misc()
        return rc

    def wake(self) -> None:
        """Make the link thread look now (any thread): a new outbox row, a new subscription."""
        with contextlib.suppress(BlockingIOError, OSError):
            self._wake_w.send(b"\0")

    def _close(self, client: mqtt.Client) -> None:
        """The end of a stop: the goodbye status if the link is up, then DISCONNECT."""
        if self._connected_evt.is_set() and self.status is not None:
            info = client.publish(
                self.status_topic, self.status.offline(OfflineReason.STOP), qos=1, retain=True
            )
            deadline = time.monotonic() + STATUS_ACK_TIMEOUT_S
            while not info.is_published() and time.monotonic() < deadline:
                if client.loop(timeout=CLOSE_TURN_S) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    break
        self._connected_evt.clear()
        client.disconnect()  # a clean DISCONNECT: the broker discards the will
        deadline = time.monotonic() + 1.0
        while client.socket() is not None and time.monotonic() < deadline:
            client.loop(timeout=CLOSE_TURN_S)
        self._state = replace(self._state, connected=False, since=time.monotonic())

    def _downgraded(self) -> bool:
        """After a refusal of MQTT 5 (protocol "auto"), rebuild the client for 3.1.1."""
        if (
            self.cfg.protocol != "auto"
            or self._protocol != MQTTProtocolVersion.MQTTv5
            or "unsupported protocol" not in self._state.last_error.lower()
        ):
            return False
        log.warning("broker %s refuses MQTT 5: using MQTT 3.1.1", self.cfg.host)
        self._protocol = MQTTProtocolVersion.MQTTv311
        self._paho = None
        return True

    def _build(self) -> mqtt.Client:
        v5 = self._protocol == MQTTProtocolVersion.MQTTv5
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=self._protocol,
            clean_session=None if v5 else False,
            reconnect_on_failure=False,  # the link thread reconnects, with jitter
        )
        client.on_log = self._on_log
        client.suppress_exceptions = True  # a callback's bug is logged, the link stays up
        client.connect_timeout = float(min(30, self.cfg.keepalive_s))
        client.max_inflight_messages_set(self.cfg.max_inflight)
        if self.cfg.uses_tls:
            client.tls_set(
                ca_certs=self.cfg.tls_ca,
                certfile=self.cfg.tls_cert,
                keyfile=self.cfg.tls_key,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        if self.cfg.username:
            client.username_pw_set(self.cfg.username, self._password)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    def _republish_status(self, client: mqtt.Client) -> None:
        if not self._status_due.is_set() or not self._connected_evt.is_set():
            return
        self._status_due.clear()
        if self.status is not None:
            client.publish(self.status_topic, self.status.online(), qos=1, retain=True)

    def _apply_subscriptions(self, client: mqtt.Client) -> None:
        if not self._subs_todo or not self._connected_evt.is_set():
            return
        with self._subs_lock:
            todo, self._subs_todo = self._subs_todo, []
        for topic_filter, qos in todo:
            if qos is None:
                client.unsubscribe(topic_filter)
            else:
                client.subscribe(topic_filter, qos)

    def _failed(self, why: str) -> None:
        self._attempt_failed = True
        changed = why != self._state.last_error
        self._state = replace(self._state, failures=self._state.failures + 1, last_error=why)
        level = logging.WARNING if changed else logging.DEBUG
        log.log(level, "cannot connect to %s:%s: %s", self.cfg.host, self.cfg.effective_port, why)

    def _lost(self, client: mqtt.Client, why: str) -> None:
        """The connection ended (paho has already called ``_on_disconnect`` if it was up)."""
        if self._connected_evt.is_set():  # paho ended it without telling: tidy up the same way
            self._on_disconnect(
                client,
                None,
                mqtt.DisconnectFlags(False),
                ReasonCode(PacketTypes.DISCONNECT, "Unspecified error"),
                None,
            )
        elif not self._attempt_failed and not self._was_connected:
            # Refused before CONNACK, e.g. a TLS alert after the handshake: paho logged why.
            self._failed(self._paho_error or why)

    # -- paho callbacks (link thread) ---------------------------------------------------
    def _on_connect(
        self,
        client: mqtt.Client,
        _userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self._failed(f"broker refused the connection: {reason}")
            return
        receive_max = getattr(properties, "ReceiveMaximum", None) if properties else None
        window = min(self.cfg.max_inflight, receive_max or self.cfg.max_inflight)
        client.drop_out_messages()  # the outbox re-sends what was in flight
        self._epoch += 1
        self._was_connected = True
        self._state = LinkState(
            connected=True,
            connects=self._state.connects + 1,
            failures=self._state.failures,
            protocol="5" if self._protocol == MQTTProtocolVersion.MQTTv5 else "3.1.1",
            window=window,
            since=time.monotonic(),
            session_present=flags.session_present,
        )
        self._backoff.reset()
        self._status_due.clear()  # the status below is the fresh one
        if self.status is not None:
            client.publish(self.status_topic, self.status.online(), qos=1, retain=True)
        with self._subs_lock:
            subs = [(f, qos) for f, (_cb, qos) in self._subs.items()]
            self._subs_todo.clear()
        for topic_filter, qos in subs:
            client.subscribe(topic_filter, qos)
        for listener in self.listeners.connected:
            listener(self._epoch, flags.session_present)
        self._connected_evt.set()  # after the listeners: waiters see a link ready to send
        log.info(
            "connected to %s:%s (MQTT %s, session %s, window %d)",
            self.cfg.host,
            self.cfg.effective_port,
            self._state.protocol,
            "resumed" if flags.session_present else "new",
            window,
        )

    def _on_log(self, _client: mqtt.Client, _userdata: object, level: int, text: str) -> None:
        """paho's own log: errors become the reason of a failed attempt, the rest is debug."""
        if level == mqtt.MQTT_LOG_ERR:
            self._paho_error = text
        paho_log.debug("%s", text)

    def _on_disconnect(
        self,
        _client: mqtt.Client,
        _userdata: object,
        _flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        was_up = self._connected_evt.is_set()
        self._connected_evt.clear()
        if not was_up:
            return
        stopping = self._stop.is_set()
        self._state = replace(
            self._state,
            connected=False,
            since=time.monotonic(),
            last_error="" if stopping else f"link lost: {reason}",
        )
        if not stopping:
            log.warning("link to %s lost: %s", self.cfg.host, reason)
        for listener in self.listeners.disconnected:
            listener()

    def _on_publish(
        self,
        _client: mqtt.Client,
        _userdata: object,
        mid: int,
        reason: ReasonCode,
        _properties: Properties | None,
    ) -> None:
        accepted = not reason.is_failure
        heard = reason.value != NO_MATCHING_SUBSCRIBERS
        if not accepted:
            log.warning("broker refused publish %d: %s", mid, reason)
        for listener in self.listeners.acked:
            listener(mid, self._epoch, accepted, heard)

    def _on_message(
        self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage
    ) -> None:
        inbound = Inbound(
            message.topic,
            bytes(message.payload),
            message.qos,
            message.retain,
            getattr(message, "properties", None),
        )
        with self._subs_lock:
            subs = list(self._subs.items())
        for topic_filter, (callback, _qos) in subs:
            if mqtt.topic_matches_sub(topic_filter, message.topic):
                try:
                    callback(inbound)
                except Exception:  # a handler's bug must not take the link down
                    log.exception("subscription callback for %s failed", topic_filter)

    # -- config checks ------------------------------------------------------------------
    def _check_files(self) -> None:
        for name in ("tls_ca", "tls_cert", "tls_key"):
            path = getattr(self.cfg, name)
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"mqtt.{name} = {path!r}: no such file")
