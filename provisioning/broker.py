"""The broker's side: mosquitto 2.0 TLS listeners with client certificates, and the ACL.

Every client, box or person, presents a certificate; the broker takes its CN as the username
(``use_identity_as_username``) and mosquitto's dynamic-security plugin grants topics by that
name. Nothing a client *says* counts, only what a CA signed. Three listeners, one per kind of
client, each trusting one CA:

``boxes`` (8883, faces the 3G/4G side)
    the device CA; the client id is forced to the CN (``use_username_as_clientid``), so no
    box can take over another box's session.
``station`` (8884, bind it to the station network)
    the station CA, which signs ``central.*`` only; client ids stay the client's, because
    one central account runs several processes (ingest workers, the transfer receiver, the
    fleet tools, the console's requests), each with its own session.
``officers`` (8885, the station network too)
    the officer CA; the client id is forced to the CN, so an officer can never take over
    an ingest worker's session (the plugin does not check the client id of a certificate
    login, mosquitto issue #2999). An officer runs one connection at a time.

A certificate is refused at the TLS handshake on every listener but its own. The files land
in one folder meant for ``/etc/mosquitto/roadside/``::

    roadside.conf   the listeners and the queue and size limits; include it or link it
                    from /etc/mosquitto/conf.d/
    dynamic-security.json
                    one role per box, the central and officer roles, one client per name;
                    retired names have no role at all
    device-ca.pem   who may connect as a box
    station-ca.pem  who may connect as the station (central)
    officer-ca.pem  who may connect as an officer
    crl.pem         every CA's revocation list
    server.crt/key  the broker's certificate (station CA), key 0600

The plugin, not mosquitto's ``acl_file``, because an ``acl_file`` cannot refuse a
subscription: a box subscribing to ``$share/<group>/roadside/v1/+/event`` would be given its
share of every box's events, which the ACL then refuses to deliver and mosquitto drops. The
plugin answers such a SUBSCRIBE "not authorised" and the station keeps every message.

mosquitto re-reads the CRL on SIGHUP (``systemctl reload mosquitto``), so a revoked box
cannot connect again; the plugin reads its file only at start, so a restart
(``systemctl restart mosquitto``) is what takes the rights of a connection still open.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from roadside.errors import ProvisionError
from roadside.wire.topics import (
    CMD,
    COUNT,
    DL,
    EVENT,
    HEALTH,
    REPLY,
    ROOT,
    STATUS,
    UPDATE,
    XFER,
    XFER_ABORT,
    XFER_ACK,
    XFER_DATA,
    XFER_INIT,
)

from .ca import DEVICE_CA, OFFICER_CA, STATION_CA, ProjectCA, cert_pem, key_pem, new_key
from .files import read_bytes, write_atomic
from .identity import account_role

DEFAULT_CONF_DIR = "/etc/mosquitto/roadside"
DYNSEC_PLUGIN = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"
BOX_PORT = 8883
STATION_PORT = 8884
OFFICER_PORT = 8885

# Queues, sized for a whole district (41 boxes) whose station is away for a day. mosquitto
# keeps a session's queue in memory, and past max_queued_messages it PUBACKs a box's publish
# and drops it (its default of 1,000 lost 2,000 of 3,000 events). Per box, at a busy
# junction: 1,800 vehicles an hour, two event messages each (start, end) = 3,600; counts
# every 60 s = 60; health every 300 s = 12; status and replies a handful: 3,672 an hour.
# x 24 h x 41 boxes = 3,613,248 messages, about 300 bytes each = 1.08 GB. Transfer chunks are
# QoS 0 and are not queued for a session that is away.
DISTRICT_BOXES = 41
OUTAGE_HOURS = 24
MESSAGES_PER_BOX_HOUR = 1_800 * 2 + 60 + 12
MESSAGE_BYTES = 300
DAY_OF_DISTRICT = MESSAGES_PER_BOX_HOUR * OUTAGE_HOURS * DISTRICT_BOXES  # 3,613,248
MAX_QUEUED_MESSAGES = 4_000_000  # a day of the district, plus 10 %
MAX_QUEUED_BYTES = 1_500_000_000  # 4,000,000 x 300 B = 1.2 GB, plus room for longer events
# The largest legitimate message is a transfer chunk: at most 64 KiB of data (transfer
# chunk_kib <= 64) and an 18-byte header, 65,554 bytes, plus topic and headers. A packet of
# twice that closes the connection (mosquitto 2.0's message_size_limit drops an MQTT 5
# publish without any PUBACK, which a box would take for a lost link and send again), so no
# client can make the broker hold or queue messages of megabytes. MQTT 5 clients are told
# the limit in the CONNACK.
MAX_PACKET_SIZE = 128 * 1024

# What a box may do under its own subtree. It writes what it reports (its retained update
# report included) and reads what it is told; it can never write its own cmd/ (a stolen box
# would otherwise forge "station" commands to itself, or leave retained ones behind), nor
# the station's side of a transfer: the acks of its uploads (xfer/), the chunks of its
# release downloads (dl/), whose acks are the box's. Config changes travel as commands
# (cmd/get_config, cmd/set_config) and replies, their hashes in the retained status.
DEVICE_TOPICS: tuple[tuple[str, str], ...] = (
    ("write", STATUS),
    ("write", EVENT),
    ("write", COUNT),
    ("write", HEALTH),
    ("write", UPDATE),
    ("write", f"{REPLY}/#"),
    ("write", f"{XFER}/+/{XFER_INIT}"),
    ("write", f"{XFER}/+/{XFER_DATA}"),
    ("write", f"{XFER}/+/{XFER_ABORT}"),
    ("write", f"{DL}/+/{XFER_ACK}"),
    ("read", f"{CMD}/#"),
    ("read", f"{XFER}/+/{XFER_ACK}"),
    ("read", f"{DL}/+/{XFER_INIT}"),
    ("read", f"{DL}/+/{XFER_DATA}"),
    ("read", f"{DL}/+/{XFER_ABORT}"),
)
# Station roles, over every box. Central reads everything (cmd/ included: the audit log
# sees officers' requests; the boxes' update reports and release acks for the rollout) and
# writes commands, the acks of uploads and the release downloads (roadside fleet). Officers
# send commands and follow their own requests (reply, the box's status and update report for
# `roadside fleet status`, transfer progress);
# the event stream, counts, health and the footage chunks stay with central, so a leaked
# officer certificate cannot watch the road.
ROLE_TOPICS: dict[str, tuple[tuple[str, str], ...]] = {
    "central": (
        ("read", f"{ROOT}/#"),
        ("write", f"{ROOT}/+/{CMD}/#"),
        ("write", f"{ROOT}/+/{XFER}/+/{XFER_ACK}"),
        ("write", f"{ROOT}/+/{DL}/+/{XFER_INIT}"),
        ("write", f"{ROOT}/+/{DL}/+/{XFER_DATA}"),
        ("write", f"{ROOT}/+/{DL}/+/{XFER_ABORT}"),
    ),
    "officer": (
        ("write", f"{ROOT}/+/{CMD}/#"),
        ("read", f"{ROOT}/+/{REPLY}/#"),
        ("read", f"{ROOT}/+/{STATUS}"),
        ("read", f"{ROOT}/+/{UPDATE}"),
        ("read", f"{ROOT}/+/{XFER}/+/{XFER_INIT}"),
        ("read", f"{ROOT}/+/{XFER}/+/{XFER_ACK}"),
    ),
}


@dataclass(frozen=True)
class BrokerFiles:
    """Names of the files in a broker folder."""

    directory: Path

    @property
    def conf(self) -> Path:
        return self.directory / "roadside.conf"

    @property
    def dynsec(self) -> Path:
        return self.directory / "dynamic-security.json"

    @property
    def device_ca(self) -> Path:
        return self.directory / "device-ca.pem"

    @property
    def station_ca(self) -> Path:
        return self.directory / "station-ca.pem"

    @property
    def officer_ca(self) -> Path:
        return self.directory / "officer-ca.pem"

    @property
    def crl(self) -> Path:
        return self.directory / "crl.pem"

    @property
    def cert(self) -> Path:
        return self.directory / "server.crt"

    @property
    def key(self) -> Path:
        return self.directory / "server.key"


def _acl(acltype: str, topic: str) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "priority": 0, "allow": True}


def _grants(topics: tuple[tuple[str, str], ...], shared: bool = False) -> list[dict[str, Any]]:
    """Dynamic-security ACLs: a write is publishClientSend, a read is a subscribe and a receive.

    ``shared``: also ``$share/<any group>/<topic>``, for the station's ingest workers only.
    """
    out: list[dict[str, Any]] = []
    for access, topic in topics:
        if access == "write":
            out.append(_acl("publishClientSend", topic))
            continue
        out += [_acl("subscribePattern", topic), _acl("publishClientReceive", topic)]
        if shared:
            out.append(_acl("subscribePattern", f"$share/+/{topic}"))
    return out


def box_role(device: str) -> str:
    return f"box-{device}"


def render_dynsec(devices: list[str], accounts: list[str], retired: list[str]) -> dict[str, Any]:
    """The dynamic-security plugin's file (``dynamic-security.json``).

    ``devices``: live boxes, each with a role over its own subtree. ``accounts``: live station
    accounts (``central.*``, ``officer.*``) with the role of their name. ``retired``: names
    whose certificates were all revoked: kept as clients without any role, so they are denied
    every topic even before the CRL shuts them out. Whatever is not granted is refused:
    publishing, receiving and subscribing (``$share/...`` included) default to deny.
    The client id is bound by the listener, not here: the plugin does not check client ids
    of certificate logins; each box's ``clientid`` records what the box listener forces.
    """
    roles = [
        {
            "rolename": box_role(d),
            "textname": f"box {d}: its own subtree",
            "acls": _grants(tuple((a, f"{ROOT}/{d}/{t}") for a, t in DEVICE_TOPICS)),
        }
        for d in devices
    ]
    roles += [
        {
            "rolename": role,
            "textname": f"station role {role}",
            "acls": _grants(topics, shared=role == "central"),
        }
        for role, topics in ROLE_TOPICS.items()
    ]
    clients: list[dict[str, Any]] = [
        {"username": d, "clientid": d, "roles": [{"rolename": box_role(d)}]} for d in devices
    ]
    clients += [{"username": a, "roles": [{"rolename": account_role(a)}]} for a in accounts]
    clients += [{"username": r, "textname": "revoked", "disabled": True} for r in retired]
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": clients,
        "groups": [],
        "roles": roles,
    }


def render_mosquitto_conf(
    files: BrokerFiles,
    port: int = BOX_PORT,
    bind: str | None = None,
    conf_dir: str | None = None,
    station_port: int = STATION_PORT,
    station_bind: str | None = None,
    plugin: str = DYNSEC_PLUGIN,
    officer_port: int = OFFICER_PORT,
    officer_bind: str | None = None,
) -> str:
    """The three listener blocks, with the file paths as they will be on the broker host.

    ``conf_dir`` is where the folder will live there (default /etc/mosquitto/roadside);
    ``plugin`` is the dynamic-security plugin's path there (Debian's, by default).
    """
    base = (conf_dir or DEFAULT_CONF_DIR).rstrip("/")

    def at(p: Path) -> str:
        return f"{base}/{p.name}"

    def listener(p: int, addr: str | None) -> str:
        return f"listener {p} {addr}" if addr else f"listener {p}"

    common = [
        f"certfile {at(files.cert)}",
        f"keyfile {at(files.key)}",
        f"crlfile {at(files.crl)}",
        "tls_version tlsv1.2",
        "require_certificate true",
        "use_identity_as_username true",
    ]
    return "\n".join(
        [
            "# Roadside: TLS with client certificates; the certificate's CN is the identity.",
            "# Written by `roadside provision broker`; include it from mosquitto.conf or link it",
            "# from /etc/mosquitto/conf.d/. Needs mosquitto >= 2.0.",
            "",
            "# Boxes: device CA only. The client id is forced to the CN, so no box can take",
            "# over another box's session.",
            listener(port, bind),
            f"cafile {at(files.device_ca)}",
            *common,
            "use_username_as_clientid true",
            "",
            "# The station (central's services): station CA only; bind it to the station",
            "# network. Client ids stay the client's (one account, several processes).",
            listener(station_port, station_bind),
            f"cafile {at(files.station_ca)}",
            *common,
            "",
            "# Officers: officer CA only; the station network too. The client id is forced to",
            "# the CN, so no officer can take over a station process's session.",
            listener(officer_port, officer_bind),
            f"cafile {at(files.officer_ca)}",
            *common,
            "use_username_as_clientid true",
            "",
            "# Global (per_listener_settings false, mosquitto's default).",
            "allow_anonymous false",
            "# Who may publish, receive and subscribe: one role per box, central, officer.",
            "# Unlike an acl_file it refuses a SUBSCRIBE ($share/... included) outright.",
            f"plugin {plugin}",
            f"plugin_opt_config_file {at(files.dynsec)}",
            "",
            f"# A day's outage of a district: {DISTRICT_BOXES} boxes x {OUTAGE_HOURS} h x "
            f"{MESSAGES_PER_BOX_HOUR:,} messages/h",
            "# (1,800 vehicles x start+end, counts 60/h, health 12/h) ="
            f" {DAY_OF_DISTRICT:,} messages of ~{MESSAGE_BYTES} B;",
            "# queued for the station's sessions, not dropped (docs/reliability.md).",
            f"max_queued_messages {MAX_QUEUED_MESSAGES}",
            f"max_queued_bytes {MAX_QUEUED_BYTES}",
            "# Largest legitimate message: a transfer chunk, 64 KiB + 18 B header; a bigger",
            "# packet closes the connection.",
            f"max_packet_size {MAX_PACKET_SIZE}",
            "",
        ]
    )


def write_broker_dir(
    ca: ProjectCA,
    out: Path,
    hosts: list[str],
    port: int = BOX_PORT,
    bind: str | None = None,
    conf_dir: str | None = None,
    renew: bool = False,
    station_port: int = STATION_PORT,
    station_bind: str | None = None,
    officer_port: int = OFFICER_PORT,
    officer_bind: str | None = None,
) -> BrokerFiles:
    """Write (or refresh) a broker folder; keeps an existing server key unless ``renew``.

    Running it again is how the roles and the CRL are brought up to date after new names.
    """
    files = BrokerFiles(Path(out))
    need_cert = renew or not (files.cert.exists() and files.key.exists())
    if not need_cert:
        cert = x509.load_pem_x509_certificate(read_bytes(files.cert, "server certificate"))
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        have = {str(v) for v in san.get_values_for_type(x509.DNSName)}
        have |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
        need_cert = have != set(hosts)
    if need_cert:
        key = new_key()
        cert = ca.issue_server(hosts, key.public_key())
        write_atomic(files.key, key_pem(key), 0o600)
        write_atomic(files.cert, cert_pem(cert), 0o644)
    write_atomic(files.device_ca, ca.cert_pem(DEVICE_CA), 0o644)
    write_atomic(files.station_ca, ca.cert_pem(STATION_CA), 0o644)
    write_atomic(files.officer_ca, ca.cert_pem(OFFICER_CA), 0o644)
    conf = render_mosquitto_conf(
        files,
        port,
        bind,
        conf_dir,
        station_port,
        station_bind,
        officer_port=officer_port,
        officer_bind=officer_bind,
    )
    write_atomic(files.conf, conf, 0o644)
    ca.registry.broker_dir = str(Path(out).resolve())
    if hosts:
        ca.registry.broker = f"{hosts[0]}:{port}"
    refresh_broker_dir(ca, files)
    return files


def station_ca_officers(ca: ProjectCA) -> list[str]:
    """Officers whose live certificate is the station CA's (issued before officers had a CA
    of their own): it still gets them onto the station listener, so each needs a new one."""
    reg = ca.registry
    return [
        a
        for a in reg.live_accounts()
        if account_role(a) == "officer" and any(c.issuer == STATION_CA for c in reg.live(a))
    ]


def refresh_broker_dir(ca: ProjectCA, files: BrokerFiles) -> None:
    """Re-render the roles and clients and re-sign the CRL into the broker folder."""
    if not files.directory.is_dir():
        raise ProvisionError(f"broker folder {files.directory} does not exist")
    ca.write_crl()
    write_atomic(files.crl, (ca.directory / "crl.pem").read_bytes(), 0o644)
    reg = ca.registry
    doc = render_dynsec(reg.live_devices(), reg.live_accounts(), reg.retired_names())
    write_atomic(files.dynsec, json.dumps(doc, indent=2) + "\n", 0o644)
    ca.registry.save()
