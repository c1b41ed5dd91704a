"""The transfer receiver on the station's broker: one MQTT client, one worker thread.

Subscribes to every box's ``xfer/+/init``, ``xfer/+/d`` and ``xfer/+/abort`` with a persistent
session (the broker keeps manifests and aborts for it while it restarts; chunks the box sends
meanwhile are asked for again), hands each message to a ``TransferReceiver`` and publishes the
acknowledgements it returns.

Threads: paho's network thread only queues incoming messages (``_inbox``); the worker thread
writes chunks to disk, updates the state file and publishes acks. ``sweep`` runs on the
worker thread too, every ``SWEEP_S``.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from roadside.central.config import BrokerConfig
from roadside.central.mqtt import ReconnectWaits, connect_properties, make_client
from roadside.transfer.receiver import TransferReceiver
from roadside.wire.topics import ROOT, XFER, XFER_ABORT, XFER_DATA, XFER_INIT

log = logging.getLogger(__name__)

SWEEP_S = 600.0
SUBSCRIPTIONS = [
    (f"{ROOT}/+/{XFER}/+/{XFER_INIT}", 1),
    (f"{ROOT}/+/{XFER}/+/{XFER_DATA}", 1),
    (f"{ROOT}/+/{XFER}/+/{XFER_ABORT}", 1),
]


class ReceiverService:
    """Runs ``receiver`` against the broker in ``cfg`` until ``stop``."""

    def __init__(
        self,
        cfg: BrokerConfig,
        receiver: TransferReceiver,
        client_id: str = "roadside-receiver",
        session_expiry_s: int = 86400,
    ) -> None:
        self.cfg = cfg
        self.receiver = receiver
        self.client_id = client_id
        self.session_expiry_s = session_expiry_s
        self.connected = threading.Event()
        self._inbox: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
        self._client = make_client(cfg, client_id)
        self._reconnects = ReconnectWaits(self._client)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._worker = threading.Thread(target=self._work, name="xfer-receiver", daemon=True)

    def start(self) -> ReceiverService:
        self._worker.start()
        self._client.connect_async(
            self.cfg.host,
            self.cfg.effective_port,
            keepalive=self.cfg.keepalive_s,
            clean_start=False,
            properties=connect_properties(self.session_expiry_s),
        )
        self._client.loop_start()
        return self

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
        self._inbox.put(None)
        self._worker.join(10)

    def __enter__(self) -> ReceiverService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- network thread ------------------------------------------------------------------
    def _on_connect(
        self, client: mqtt.Client, _u: object, _flags: object, reason: ReasonCode, _props: object
    ) -> None:
        if reason.is_failure:
            log.warning("receiver: broker refused the connection: %s", reason)
            return
        self._reconnects.connected()
        client.subscribe(SUBSCRIPTIONS)
        self.connected.set()

    def _on_disconnect(self, *_args: object) -> None:
        self.connected.clear()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        self._inbox.put((msg.topic, bytes(msg.payload)))

    # -- worker thread -------------------------------------------------------------------
    def _work(self) -> None:
        next_sweep = time.monotonic() + SWEEP_S
        while True:
            try:
                item = self._inbox.get(timeout=1.0)
            except queue.Empty:
                item = ("", b"")  # nothing came: only the sweep below may be due
            if item is None:
                return
            topic, payload = item
            if topic:
                try:
                    for out in self.receiver.handle(topic, payload):
                        self._client.publish(out.topic, out.payload, qos=out.qos)
                except Exception:  # one bad message must not stop the receiver
                    log.exception("receiver: message on %s failed", topic)
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + SWEEP_S
                self.receiver.sweep()
