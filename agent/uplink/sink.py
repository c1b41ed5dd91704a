"""The MQTT sink: the pipeline's messages go into the durable outbox, never straight out."""

from __future__ import annotations

from roadside.agent.uplink.outbox import Outbox, priority_of
from roadside.wire.messages import Message
from roadside.wire.topics import topic


class MqttSink:
    """Implements the pipeline's ``Sink``: stores each message for the sender, in order.

    ``publish`` returns once the message is in the outbox (on disk with sync="full"); it never
    waits for the network. Called on the pipeline thread.
    """

    def __init__(self, device: str, outbox: Outbox) -> None:
        self.device = device
        self.outbox = outbox
        self.stored = 0

    def publish(self, kind: str, msg: Message) -> None:
        self.outbox.put(topic(self.device, kind), msg.encode(), priority_of(kind), kind)
        self.stored += 1

    def close(self) -> None:
        """Nothing to flush: the outbox is durable, and the uplink closes it after the sender."""
