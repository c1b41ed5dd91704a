"""The link to the station: durable outbox, MQTT client, sender, health heartbeat.

``Uplink`` assembles the parts from the agent config; each part is usable on its own.
"""

from roadside.agent.uplink.client import Inbound, LinkState, Sent, UplinkClient
from roadside.agent.uplink.heartbeat import HealthReporter, Heartbeat, PipelineCounters
from roadside.agent.uplink.link import Uplink
from roadside.agent.uplink.outbox import Outbox, OutboxRow, OutboxStats, Priority, priority_of
from roadside.agent.uplink.sender import BulkMessage, BulkSource, Sender
from roadside.agent.uplink.sink import MqttSink
from roadside.agent.uplink.status import StatusReporter

__all__ = [
    "BulkMessage",
    "BulkSource",
    "HealthReporter",
    "Heartbeat",
    "Inbound",
    "LinkState",
    "MqttSink",
    "Outbox",
    "OutboxRow",
    "OutboxStats",
    "PipelineCounters",
    "Priority",
    "Sender",
    "Sent",
    "StatusReporter",
    "Uplink",
    "UplinkClient",
    "priority_of",
]
