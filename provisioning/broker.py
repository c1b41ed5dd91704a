"""The broker's side: mosquitto 2.0 TLS listeners with client certificates, and the ACL.

Every client, box or person, presents a certificate; the broker takes its CN as the username
(``use_identity_as_username``) and the ACL grants topics by that name. Nothing a client *says*
counts, only what a CA signed. Two listeners, one per kind of client:

``boxes`` (8883, faces the 3G/4G side)
    trusts the device CA only; the client id is forced to the CN
    (``use_username_as_clientid``), so no box can take over another box's session.
``station`` (8884, bind it to the station network)
    trusts the station CA only; client ids stay the client's, because one central account
    runs several processes (ingest workers, the transfer receiver, officer requests), each
    with its own persistent session.

A box certificate is refused on the station listener and a station certificate on the box
listener, at the TLS handshake. The files land in one folder meant for
``/etc/mosquitto/roadside/``::

    roadside.conf   both listeners; include it or link it from /etc/mosquitto/conf.d/
    acl             pattern ACL for boxes, user blocks for station accounts and retired names
    device-ca.pem   who may connect as a box
    station-ca.pem  who may connect as the station
    crl.pem         both CAs' revocation lists
    server.crt/key  the broker's certificate (station CA), key 0600

mosquitto re-reads the ACL and the CRL on SIGHUP (``systemctl reload mosquitto``): a revoked
box still connected is then denied every topic and cannot connect again; a restart also
closes its connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

from roadside.errors import ProvisionError
from roadside.wire.topics import (
    CMD,
    COUNT,
    EVENT,
    HEALTH,
    REPLY,
    ROOT,
    STATUS,
    XFER,
    XFER_ABORT,
    XFER_ACK,
    XFER_DATA,
    XFER_INIT,
)

from .ca import DEVICE_CA, STATION_CA, ProjectCA, cert_pem, key_pem, new_key
from .files import read_bytes, write_atomic
from .identity import account_role

DEFAULT_CONF_DIR = "/etc/mosquitto/roadside"
BOX_PORT = 8883
STATION_PORT = 8884

# What a box may do under its own subtree. It writes what it reports and reads what it is
# told; it can never write its own cmd/ (a stolen box would otherwise forge "station"
# commands to itself, or leave retained ones behind), nor the station's transfer acks.
DEVICE_TOPICS: tuple[tuple[str, str], ...] = (
    ("write", STATUS),
    ("write", EVENT),
    ("write", COUNT),
    ("write", HEALTH),
    ("write", f"{REPLY}/#"),
    ("write", f"{XFER}/+/{XFER_INIT}"),
    ("write", f"{XFER}/+/{XFER_DATA}"),
    ("write", f"{XFER}/+/{XFER_ABORT}"),
    ("read", f"{CMD}/#"),
    ("read", f"{XFER}/+/{XFER_ACK}"),
)
# Station roles, over every box. Central reads everything (cmd/ included: the audit log
# sees officers' requests) and writes commands and transfer acks. Officers send commands and
# follow their own requests (reply, the box's status, transfer progress); the event stream,
# counts, health and the footage chunks stay with central, so a leaked officer certificate
# cannot watch the road.
ROLE_TOPICS: dict[str, tuple[tuple[str, str], ...]] = {
    "central": (
        ("read", f"{ROOT}/#"),
        ("write", f"{ROOT}/+/{CMD}/#"),
        ("write", f"{ROOT}/+/{XFER}/+/{XFER_ACK}"),
    ),
    "officer": (
        ("write", f"{ROOT}/+/{CMD}/#"),
        ("read", f"{ROOT}/+/{REPLY}/#"),
        ("read", f"{ROOT}/+/{STATUS}"),
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
    def acl(self) -> Path:
        return self.directory / "acl"

    @property
    def device_ca(self) -> Path:
        return self.directory / "device-ca.pem"

    @property
    def station_ca(self) -> Path:
        return self.directory / "station-ca.pem"

    @property
    def crl(self) -> Path:
        return self.directory / "crl.pem"

    @property
    def cert(self) -> Path:
        return self.directory / "server.crt"

    @property
    def key(self) -> Path:
        return self.directory / "server.key"


def render_acl(accounts: list[str], retired: list[str]) -> str:
    """The mosquitto ``acl_file`` text.

    ``accounts``: live station accounts (``central.*``, ``officer.*``), one user block each.
    ``retired``: names whose certificates were all revoked: denied every topic, so a revoked
    box is shut out by the ACL as soon as the broker reloads, even before it is restarted
    with the new CRL.
    """
    out = [
        "# Roadside broker ACL, written by `roadside provision broker` / `revoke`.",
        "# Do not edit by hand: it is rendered again from the CA folder's issued.json.",
        "# Usernames are certificate CNs (use_identity_as_username).",
        "",
        "# Every box: its own subtree only; %u is its CN, i.e. its device id.",
    ]
    out += [f"pattern {access} {ROOT}/%u/{topic}" for access, topic in DEVICE_TOPICS]
    for name in accounts:
        role = account_role(name)
        out += ["", f"# station account, role {role}", f"user {name}"]
        # The patterns above also apply to accounts; a dotted name is never a device, so its
        # would-be subtree is closed to keep it from posing as one.
        out.append(f"topic deny {ROOT}/{name}/#")
        out += [f"topic {access} {topic}" for access, topic in ROLE_TOPICS[role]]
    if retired:
        out += ["", "# Revoked: no topic at all (deny is checked before any grant)."]
    for name in retired:
        out += [f"user {name}", "topic deny #"]
    return "\n".join(out) + "\n"


def render_mosquitto_conf(
    files: BrokerFiles,
    port: int = BOX_PORT,
    bind: str | None = None,
    conf_dir: str | None = None,
    station_port: int = STATION_PORT,
    station_bind: str | None = None,
) -> str:
    """Both listener blocks, with the file paths as they will be on the broker host.

    ``conf_dir`` is where the folder will live there (default /etc/mosquitto/roadside).
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
            "# The station (central services, officers): station CA only; bind it to the station",
            "# network. Client ids stay the client's (one account, several processes).",
            listener(station_port, station_bind),
            f"cafile {at(files.station_ca)}",
            *common,
            "",
            "# Global (per_listener_settings false, mosquitto's default).",
            "allow_anonymous false",
            f"acl_file {at(files.acl)}",
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
) -> BrokerFiles:
    """Write (or refresh) a broker folder; keeps an existing server key unless ``renew``.

    Running it again is how the ACL and CRL are brought up to date after new accounts.
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
    write_atomic(
        files.conf,
        render_mosquitto_conf(files, port, bind, conf_dir, station_port, station_bind),
        0o644,
    )
    ca.registry.broker_dir = str(Path(out).resolve())
    if hosts:
        ca.registry.broker = f"{hosts[0]}:{port}"
    refresh_broker_dir(ca, files)
    return files


def refresh_broker_dir(ca: ProjectCA, files: BrokerFiles) -> None:
    """Re-render the ACL and re-sign the CRL into the broker folder (after a revoke)."""
    if not files.directory.is_dir():
        raise ProvisionError(f"broker folder {files.directory} does not exist")
    ca.write_crl()
    write_atomic(files.crl, (ca.directory / "crl.pem").read_bytes(), 0o644)
    write_atomic(
        files.acl, render_acl(ca.registry.live_accounts(), ca.registry.retired_names()), 0o644
    )
    ca.registry.save()
