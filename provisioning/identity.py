"""Who is who on the broker: device ids and station account names.

The broker takes the certificate's common name (CN) as the MQTT username, and the ACL gives
rights by that name alone. So the two kinds of names are built never to overlap: a device id
has no dot, a station account always has one (``central.<name>``, ``officer.<name>``). No
device certificate can therefore ever carry an account's rights, whatever name a technician
types.
"""

from __future__ import annotations

import re
from typing import Literal

from roadside.errors import ProvisionError

# Same rule as roadside.config.agent.DEVICE_ID (a test keeps them equal): the id is a topic
# level, a certificate CN, a hostname and a file name, so it stays this plain.
DEVICE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
ACCOUNT_NAME = re.compile(r"^(central|officer)\.([a-z0-9][a-z0-9_-]{0,40})$")

Role = Literal["central", "officer"]
ROLES: tuple[Role, ...] = ("central", "officer")


# The station's processes name their MQTT sessions roadside-central-..., roadside-receiver;
# a box's client id is its name, so no box may be named like one of them.
RESERVED_PREFIX = "roadside-"


def check_device_id(name: str) -> str:
    """Return ``name`` if it is a valid device id, else raise a one-line ProvisionError."""
    if not DEVICE_ID.match(name):
        raise ProvisionError(
            f"bad device name {name!r}: use 1-63 lowercase letters, digits, '-' or '_', "
            "starting with a letter or digit (e.g. 'junction-07')"
        )
    if name.startswith(RESERVED_PREFIX):
        raise ProvisionError(
            f"bad device name {name!r}: names starting with {RESERVED_PREFIX!r} are the "
            "station's MQTT client ids"
        )
    return name


def account_role(name: str) -> Role:
    """The role of a station account name (``central.ingest`` -> central), or an error."""
    m = ACCOUNT_NAME.match(name)
    if not m:
        raise ProvisionError(
            f"bad account name {name!r}: use central.<name> or officer.<name>, where <name> is "
            "1-41 lowercase letters, digits, '-' or '_' (e.g. 'officer.rossi')"
        )
    return m.group(1)  # type: ignore[return-value]
