"""Topic names under ``roadside/v1/<device>/`` and the id patterns that become topic levels.

docs/protocol.md lists QoS and retain for each kind; provisioning builds the broker ACL from
these same names.
"""

from __future__ import annotations

VERSION = 1
ROOT = f"roadside/v{VERSION}"

# Topic kinds under roadside/v1/<device>/.
STATUS = "status"  # retained: online / offline (also the last will)
EVENT = "event"
COUNT = "count"
HEALTH = "health"
CMD = "cmd"  # cmd/<name>: station -> box
REPLY = "reply"  # reply/<request id>: box -> station
XFER = "xfer"  # xfer/<transfer id>/<part>: box -> station, chunked uploads
DL = "dl"  # dl/<transfer id>/<part>: station -> box, chunked downloads (releases)
UPDATE = "update"  # retained: box -> station, where the box's software update stands

# The parts of a transfer, under xfer/<transfer id>/ (and dl/<transfer id>/, where the
# directions swap: init, d and abort go station -> box, ack goes box -> station).
XFER_INIT = "init"  # box -> station, QoS 1, JSON XferInit; sent again to ask what is held
XFER_DATA = "d"  # box -> station, QoS 0, binary: a chunk header + data
XFER_ABORT = "abort"  # box -> station, QoS 1, JSON XferAbort
XFER_ACK = "ack"  # station -> box, QoS 1, JSON XferAck

# A request id names the reply topic, so it is restricted to characters safe in a topic level.
DEVICE_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"  # a box's name, as provisioning makes them
REQUEST_ID_PATTERN = r"^[0-9A-Za-z_-]{1,64}$"
ULID_PATTERN = r"^[0-9A-HJKMNP-TV-Z]{26}$"


def topic(device: str, kind: str) -> str:
    """``roadside/v1/<device>/<kind>``; ``kind`` may have several levels (``cmd/clip``)."""
    return f"{ROOT}/{device}/{kind}"


def xfer_topic(device: str, xid: str, part: str) -> str:
    """``roadside/v1/<device>/xfer/<xid>/<part>``."""
    return topic(device, f"{XFER}/{xid}/{part}")


def device_of(topic_name: str) -> str | None:
    """The device id in a topic under ROOT, or None for anything else."""
    parts = topic_name.split("/")
    if len(parts) < 4 or "/".join(parts[:2]) != ROOT:
        return None
    return parts[2]


def kind_of(topic_name: str) -> str | None:
    """The kind part of a topic under ROOT (``event``, ``cmd/clip`` …), or None."""
    if device_of(topic_name) is None:
        return None
    return "/".join(topic_name.split("/")[3:])
