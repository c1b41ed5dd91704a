"""The box's end of the station link, assembled: outbox, MQTT client, sender and heartbeat.

Other parts of the agent use it through a few calls: ``sink`` for the pipeline, ``publish``
for durable messages of their own (command replies), ``subscribe`` for commands and transfer
acks, ``add_bulk`` for transfers that must never hold back events, and ``add_link_listener``
to hear the link come and go.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

from roadside import __version__
from roadside.agent.uplink.client import MessageCallback, UplinkClient
from roadside.agent.uplink.heartbeat import HealthReporter, Heartbeat, PipelineProbe
from roadside.agent.uplink.outbox import Outbox, priority_of
from roadside.agent.uplink.sender import BulkSource, Sender
from roadside.agent.uplink.sink import MqttSink
from roadside.agent.uplink.status import StatusReporter
from roadside.config.agent import AgentConfig, MqttConfig, UplinkConfig
from roadside.config.document import config_hash
from roadside.errors import ConfigError
from roadside.wire.messages import Message
from roadside.wire.topics import HEALTH, topic

log = logging.getLogger(__name__)

OUTBOX_FILE = "outbox.db"

LinkListener = Callable[[bool], None]  # True: the link is up, False: it dropped


class Uplink:
    """Owns the link's parts and starts and stops them in the right order.

    ``start``: the link thread (which runs the sender) and the heartbeat, whose first message
    is stored at once; ``stop``: the heartbeat, then up to ``stop_flush_s`` to empty the
    outbox while the link is up, then the ``offline`` goodbye and DISCONNECT, the outbox last.
    """

    def __init__(
        self,
        device: str,
        mqtt_cfg: MqttConfig,
        uplink_cfg: UplinkConfig,
        data_dir: str | Path,
        status: StatusReporter | None = None,
        pipeline: PipelineProbe | None = None,
        heartbeat: bool = True,
    ) -> None:
        self.device = device
        self.cfg = uplink_cfg
        self.data_dir = Path(data_dir)
        try:
            self.outbox = Outbox(
                self.data_dir / OUTBOX_FILE,
                max_rows=uplink_cfg.outbox_max_rows,
                max_bytes=uplink_cfg.outbox_max_bytes,
                sync=uplink_cfg.outbox_sync,
            )
        except (OSError, sqlite3.OperationalError) as exc:
            raise ConfigError(
                f"data_dir = {str(self.data_dir)!r}: cannot keep the outbox there ({exc}); "
                "set data_dir to a folder the agent can write"
            ) from None
        self.client = UplinkClient(mqtt_cfg, device, status or StatusReporter(__version__))
        self.sender = Sender(self.outbox, self.client)
        self.sink = MqttSink(device, self.outbox)
        self.heartbeat: Heartbeat | None = None
        if heartbeat:
            reporter = HealthReporter(self.data_dir, self.outbox, self.client, pipeline)
            self.heartbeat = Heartbeat(
                reporter, lambda msg: self.publish(HEALTH, msg), uplink_cfg.health_period_s
            )

    @classmethod
    def from_config(
        cls,
        cfg: AgentConfig,
        pipeline: PipelineProbe | None = None,
        status: StatusReporter | None = None,
    ) -> Uplink:
        """The uplink a config describes; ``status`` defaults to this software, the config's
        model and the config's hash."""
        if cfg.mqtt is None:
            raise ValueError("the uplink needs an [mqtt] section")
        if status is None:
            status = StatusReporter(__version__, cfg.detector.model, config_hash(cfg))
        return cls(cfg.device, cfg.mqtt, cfg.uplink, cfg.data_dir, status, pipeline)

    # -- for the rest of the agent ------------------------------------------------------
    def publish(
        self, kind: str, msg: Message, priority: int | None = None, retain: bool = False
    ) -> int:
        """Store ``msg`` for ``roadside/v1/<device>/<kind>``; the sender delivers it.

        The priority follows the kind (``reply/<id>`` most urgent, then event, count,
        health) unless given; ``retain`` asks the broker to keep it as the topic's last word.
        """
        prio = priority_of(kind) if priority is None else priority
        return self.outbox.put(topic(self.device, kind), msg.encode(), prio, kind, retain)

    def subscribe(self, kind_filter: str, callback: MessageCallback, qos: int = 1) -> None:
        """Subscribe under this device's prefix, e.g. ``subscribe("cmd/#", on_command)``."""
        self.client.subscribe(topic(self.device, kind_filter), callback, qos)

    def add_bulk(self, source: BulkSource) -> None:
        self.sender.add_bulk(source)

    def add_link_listener(self, listener: LinkListener) -> None:
        """Call ``listener(True)`` each time the link to the broker comes up and
        ``listener(False)`` each time it drops (a clean ``stop`` is not a drop); register
        before ``start``.

        Called on the link thread, so it must return quickly. On a new connection it comes
        after the sender has handed back to bulk sources (``lost``) what was in flight on the
        old one, and before the sender puts anything on the new one.
        """
        self.client.listeners.connected.append(lambda _epoch, _session: listener(True))
        self.client.listeners.disconnected.append(lambda: listener(False))

    @property
    def connected(self) -> bool:
        return self.client.connected

    @property
    def queued(self) -> int:
        """Messages stored and not yet acknowledged by the broker."""
        return self.outbox.rows

    def waiting(self) -> int:
        """``queued``, as the config trial check asks it."""
        return self.outbox.rows

    def acked(self) -> int:
        """Messages the broker acknowledged since start."""
        return self.sender.stats.acked

    def describe_failure(self) -> str:
        """Why the link is not up, in a few words: the broker and the last error."""
        cfg = self.client.cfg
        why = self.client.state().last_error or "no answer yet"
        return f"{cfg.host}:{cfg.effective_port}: {why}"

    def refresh_status(self) -> None:
        """Publish the retained status again (what the box runs changed)."""
        self.client.refresh_status()

    # -- lifetime -----------------------------------------------------------------------
    def start(self) -> None:
        self.client.start()
        if self.heartbeat is not None:
            self.heartbeat.start()

    def stop(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
        flush = self.client.connected and self.cfg.stop_flush_s > 0
        if flush and not self.sender.drain(self.cfg.stop_flush_s):
            log.info(
                "stopping with %d messages still queued: they go after the next start",
                self.outbox.pending(),
            )
        self.client.stop()
        self.outbox.close()

    def __enter__(self) -> Uplink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
