"""MQTT clients for tests of one side alone: the station's ``Subscriber`` that records what
a box sends, and a ``BoxPublisher`` that speaks the wire contract as a box does."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from roadside.ids import new_id
from roadside.wire.commands import CommandMsg, ReplyMsg, ReplyState
from roadside.wire.messages import MESSAGES, Message
from roadside.wire.topics import kind_of, topic


class Subscriber:
    """The station's side: a persistent QoS 1 session that records every message it gets.

    Threading: paho's network thread appends to ``messages`` under the condition; the test's
    thread reads them through ``wait`` and ``of_kind``.
    """

    def __init__(
        self,
        port: int,
        filters: tuple[str, ...] = ("roadside/v1/#",),
        client_id: str = "station",
        tls: dict | None = None,
        clean: bool = False,
        login: tuple[str, str] | None = None,
    ) -> None:
        self.messages: list[mqtt.MQTTMessage] = []
        self.subscribed = threading.Event()
        self._cond = threading.Condition()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        # paho takes fractions of a second although its hints say int: reconnect quickly
        self.client.reconnect_delay_set(0.05, 0.5)  # type: ignore[arg-type]
        if tls:
            self.client.tls_set(**tls)
        if login:
            self.client.username_pw_set(*login)
        self.client.on_connect = lambda c, *_: c.subscribe([(f, 1) for f in filters])
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect("127.0.0.1", port, 30, clean_start=clean, properties=props)
        self.client.loop_start()
        assert self.subscribed.wait(10), "the station could not subscribe"

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append(msg)
            self._cond.notify_all()

    def wait(
        self, predicate: Callable[[list[mqtt.MQTTMessage]], bool], timeout: float = 20.0
    ) -> bool:
        """True once ``predicate(messages)`` holds; False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def of_kind(self, kind: str) -> list[Message]:
        """The messages of one kind received so far, decoded."""
        with self._cond:
            msgs = [m for m in self.messages if kind_of(m.topic) == kind]
        return [MESSAGES[kind].decode(m.payload) for m in msgs]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def kinds(msgs: list[mqtt.MQTTMessage], kind: str) -> list[mqtt.MQTTMessage]:
    """The raw messages of one kind (``event``, ``status`` …) among ``msgs``."""
    return [m for m in msgs if kind_of(m.topic) == kind]


class BoxPublisher:
    """Publishes protocol messages for a device at QoS 1 and waits for every PUBACK."""

    def __init__(self, port: int, client_id: str = "test-publisher") -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self._pending: list[mqtt.MQTTMessageInfo] = []

    def send(self, device: str, kind: str, msg: Message | bytes, retain: bool = False) -> None:
        payload = msg if isinstance(msg, bytes) else msg.encode()
        self._pending.append(
            self.client.publish(topic(device, kind), payload, qos=1, retain=retain)
        )

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until the broker acknowledged everything sent."""
        for info in self._pending:
            info.wait_for_publish(timeout)
            assert info.is_published()
        self._pending.clear()

    def close(self) -> None:
        self.flush()
        self.client.disconnect()
        self.client.loop_stop()


class BoxThatAnswers:
    """A box's command channel as the wire contract has it: answers every request with
    progress, then an error (this box holds no recordings)."""

    def __init__(self, port: int, device: str) -> None:
        self.device = device
        self.requests: list[CommandMsg] = []
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=device, protocol=mqtt.MQTTv5
        )
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(topic(device, "cmd/+"), qos=1)
        assert subscribed.wait(10)

    def _on_message(self, client: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        cmd = CommandMsg.decode(m.payload)
        self.requests.append(cmd)
        reply = topic(self.device, f"reply/{cmd.id}")
        client.publish(
            reply,
            ReplyMsg(
                id=new_id(),
                request_id=cmd.id,
                state=ReplyState.PROGRESS,
                detail="looking for footage",
            ).encode(),
            qos=1,
        )
        client.publish(
            reply,
            ReplyMsg(
                id=new_id(),
                request_id=cmd.id,
                state=ReplyState.ERROR,
                code="out_of_range",
                detail="no footage from that time on this box",
            ).encode(),
            qos=1,
        )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
