"""Provisioning: CA, device bundles, and a real mosquitto enforcing the generated TLS and roles.

Keys are made once per module (EC keys are cheap, but a broker per test is not): one CA, the
broker folder it writes, and a running mosquitto 2.0 with exactly those listeners and roles. Each
MQTT check has a positive control (someone allowed receives the same kind of message), so a
"nothing arrived" can never pass because nothing worked at all.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import signal
import socket
import ssl
import tarfile
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from roadside.central.ingest import IngestWorker
from roadside.central.store import Store
from roadside.central.store import tables as T
from roadside.cli import main
from roadside.config.agent import DEVICE_ID as AGENT_DEVICE_ID
from roadside.config.agent import load_config
from roadside.errors import ProvisionError
from roadside.provisioning import broker as broker_mod
from roadside.provisioning.agent_toml import (
    Broker,
    check_agent_toml,
    parse_broker,
    parse_location,
    render_agent_toml,
)
from roadside.provisioning.broker import (
    BrokerFiles,
    refresh_broker_dir,
    render_dynsec,
    render_mosquitto_conf,
)
from roadside.provisioning.ca import (
    DEVICE_CA,
    OFFICER_CA,
    STATION_CA,
    ProjectCA,
    cert_pem,
    key_pem,
    new_key,
)
from roadside.provisioning.cloudinit import render_meta_data, render_user_data, write_card
from roadside.provisioning.device import DeviceRequest, make_bundle, read_bundle
from roadside.provisioning.identity import DEVICE_ID, account_role, check_device_id
from roadside.provisioning.registry import Registry
from roadside.testing.broker import LocalBroker, ProvisionedBroker, loopback_broker_dir
from roadside.testing.configs import central_config
from roadside.testing.messages import event_pair
from roadside.testing.ports import free_port
from roadside.testing.waiting import eventually
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

PASS = b"correct horse battery staple"
WAIT = 3.0  # seconds to wait for something that should arrive
QUIET = 0.7  # seconds to wait before concluding that something did not arrive


# --------------------------------------------------------------------------- fixtures
@dataclass
class Creds:
    """A client's files, as an agent or the central service would have them."""

    ca: Path
    cert: Path
    key: Path


def _write_creds(
    d: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, server_ca: bytes
) -> Creds:
    d.mkdir(parents=True, exist_ok=True)
    c = Creds(d / "ca.crt", d / "client.crt", d / "client.key")
    c.ca.write_bytes(server_ca)
    c.cert.write_bytes(cert_pem(cert))
    c.key.write_bytes(key_pem(key))
    return c


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One project CA with boxes, station accounts and a foreign CA's box."""
    base = tmp_path_factory.mktemp("pki")
    ca = ProjectCA.create(base / "ca", PASS)
    station = ca.cert_pem(STATION_CA)
    out: dict = {"ca": ca, "base": base}
    for name in ("dev-a", "dev-b", "stolen-box"):
        k = new_key()
        out[name] = _write_creds(base / name, ca.issue_device(name, k.public_key()), k, station)
    for name in ("central.ingest", "officer.rossi"):
        k = new_key()
        out[name] = _write_creds(base / name, ca.issue_account(name, k.public_key()), k, station)
    other = ProjectCA.create(base / "other-ca", PASS)
    k = new_key()
    out["foreign"] = _write_creds(
        base / "foreign", other.issue_device("dev-a", k.public_key()), k, station
    )
    out["files"], out["ports"] = loopback_broker_dir(ca, base / "broker")
    return out


Ports = tuple[int, int, int]  # the box, station and officer listeners


def _ports() -> Ports:
    while True:
        box, station, officer = free_port(), free_port(), free_port()
        if len({box, station, officer}) == 3:
            return box, station, officer


def port_for(name: str, ports: Ports) -> int:
    """Boxes use the box listener, central the station listener, officers their own."""
    if name.startswith("officer."):
        return ports[2]
    return ports[1] if "." in name else ports[0]


def _mosquitto(workdir: Path, files: BrokerFiles, ports: Ports) -> LocalBroker:
    """mosquitto with the generated listeners as is (only ports and paths are the test's)."""
    conf = render_mosquitto_conf(
        files,
        ports[0],
        "127.0.0.1",
        str(files.directory),
        ports[1],
        "127.0.0.1",
        officer_port=ports[2],
        officer_bind="127.0.0.1",
    )
    return ProvisionedBroker(workdir, conf, ports)


@pytest.fixture(scope="module")
def mosq(pki: dict, tmp_path_factory: pytest.TempPathFactory):
    m = _mosquitto(tmp_path_factory.mktemp("mosq"), pki["files"], pki["ports"])
    with m:
        yield m


class Peer:
    """A paho 2.x MQTT 5 client that records connack, subacks, pubacks and messages."""

    def __init__(
        self,
        creds: Creds,
        port: int,
        client_id: str = "",
        session_expiry_s: int = 0,
        protocol: int = mqtt.MQTTv5,
    ) -> None:
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connack: mqtt.ReasonCode | None = None
        self.connected = threading.Event()
        self.acks: dict[int, mqtt.ReasonCode] = {}
        self.subacks: dict[int, list[mqtt.ReasonCode]] = {}
        self._acked = threading.Condition()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol
        )
        self.client.tls_set(
            ca_certs=str(creds.ca), certfile=str(creds.cert), keyfile=str(creds.key)
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.messages.put(m)
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.port = port
        self.session_expiry_s = session_expiry_s

    def _on_connect(self, client, userdata, flags, rc, props) -> None:
        self.connack = rc
        if not rc.is_failure:
            self.connected.set()

    def _on_publish(self, client, userdata, mid, rc, props) -> None:
        with self._acked:
            self.acks[mid] = rc
            self._acked.notify_all()

    def _on_subscribe(self, client, userdata, mid, rcs, props) -> None:
        with self._acked:
            self.subacks[mid] = rcs
            self._acked.notify_all()

    def start(self) -> Peer:
        """Connect; with ``session_expiry_s`` the session is kept (and resumed) like a worker's."""
        if self.client.protocol == mqtt.MQTTv5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.session_expiry_s
            self.client.connect(
                "127.0.0.1",
                self.port,
                keepalive=30,
                clean_start=self.session_expiry_s == 0,
                properties=props,
            )
        else:
            self.client.connect("127.0.0.1", self.port, keepalive=30)
        self.client.loop_start()
        assert self.connected.wait(WAIT), f"no CONNACK success (got {self.connack})"
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _wait(self, table: dict, mid: int):
        with self._acked:
            assert self._acked.wait_for(lambda: mid in table, WAIT), "no ack from the broker"
            return table[mid]

    def subscribe(self, topic: str) -> list[mqtt.ReasonCode]:
        _, mid = self.client.subscribe(topic, qos=1)
        return self._wait(self.subacks, mid)

    def publish(self, topic: str, payload: bytes) -> mqtt.ReasonCode:
        """QoS 1; returns the PUBACK reason (MQTT 5 tells a denied publish apart)."""
        info = self.client.publish(topic, payload, qos=1)
        return self._wait(self.acks, info.mid)

    def received(self, timeout: float = WAIT) -> list[tuple[str, bytes]]:
        """Everything that arrives until ``timeout`` passes with nothing new."""
        got = []
        while True:
            try:
                m = self.messages.get(timeout=timeout)
            except queue.Empty:
                return got
            got.append((m.topic, m.payload))
            timeout = QUIET

    def expect(self, topic: str, payload: bytes) -> list[tuple[str, bytes]]:
        got = self.received()
        assert (topic, payload) in got, f"{topic} {payload!r} never arrived; got {got}"
        return got


@pytest.fixture
def peers(pki: dict, mosq: LocalBroker):
    """Open MQTT clients by name; all stopped after the test."""
    opened: list[Peer] = []

    def open_(name: str, client_id: str = "") -> Peer:
        p = Peer(pki[name], port_for(name, pki["ports"]), client_id).start()
        opened.append(p)
        return p

    yield open_
    for p in opened:
        p.stop()


NOT_AUTHORIZED = 0x87


def tls_refusal(creds: Creds, port: int) -> Exception | None:
    """Handshake with TLS 1.2 (client auth decided inside the handshake) and one read.

    Returns the error, or None if the broker accepted the certificate.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(str(creds.ca))
    ctx.load_cert_chain(str(creds.cert), str(creds.key))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw:
        try:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                # An MQTT 3.1.1 CONNECT; an accepted client gets a CONNACK back.
                tls.sendall(bytes.fromhex("101000044d5154540402003c0004746c7331"))
                return None if tls.recv(4)[:1] == b"\x20" else EOFError("no CONNACK")
        except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as exc:
            return exc


# --------------------------------------------------------------------------- CA and certs
def test_ca_folder_has_three_cas_with_encrypted_keys(pki: dict) -> None:
    d = pki["ca"].directory
    assert (d.stat().st_mode & 0o777) == 0o700
    for which in (DEVICE_CA, STATION_CA, OFFICER_CA):
        key_file = d / f"{which}.key"
        assert (key_file.stat().st_mode & 0o777) == 0o600
        assert b"ENCRYPTED PRIVATE KEY" in key_file.read_bytes()
        with pytest.raises(TypeError):  # needs the passphrase
            serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate((d / f"{which}.crt").read_bytes())
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    with pytest.raises(ProvisionError, match="wrong CA passphrase"):
        ProjectCA.open(d, b"not the passphrase at all")
    with pytest.raises(ProvisionError, match="already holds a CA"):
        ProjectCA.create(d, PASS)
    with pytest.raises(ProvisionError, match="at least 12"):
        ProjectCA.create(pki["base"] / "weak", b"short")


def test_a_two_ca_folder_gets_its_officer_ca_and_officers_are_signed_by_it(
    tmp_path: Path,
) -> None:
    d = tmp_path / "ca"
    ProjectCA.create(d, PASS)
    for suffix in ("key", "crt"):  # a folder from before officers had a CA of their own
        (d / f"{OFFICER_CA}.{suffix}").unlink()
    ca = ProjectCA.open(d, PASS)
    assert (d / f"{OFFICER_CA}.key").exists() and OFFICER_CA in ca.authorities
    pem = (d / "crl.pem").read_bytes()
    assert pem.count(b"BEGIN X509 CRL") == 3  # every issuer's, or OpenSSL refuses its clients
    officer = ca.issue_account("officer.tran", new_key().public_key())
    officer.verify_directly_issued_by(ca.authorities[OFFICER_CA].cert)
    central = ca.issue_account("central.ingest", new_key().public_key())
    central.verify_directly_issued_by(ca.authorities[STATION_CA].cert)
    assert ProjectCA.open(d, PASS).authorities[OFFICER_CA].cert == ca.authorities[OFFICER_CA].cert


def test_device_certificate_is_p256_cn_device_signed_by_the_device_ca(pki: dict) -> None:
    ca: ProjectCA = pki["ca"]
    cert = x509.load_pem_x509_certificate(pki["dev-a"].cert.read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "dev-a"
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    cert.verify_directly_issued_by(ca.authorities[DEVICE_CA].cert)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    # Recorded with its serial, so `revoke dev-a` knows what to put on the CRL.
    reg = Registry.load(ca.directory / "issued.json")
    (entry,) = [c for c in reg.certs if c.name == "dev-a"]
    assert entry.serial == cert.serial_number and entry.issuer == DEVICE_CA
    assert entry.not_after == cert.not_valid_after_utc and not entry.revoked
    # One live certificate per box: a second needs --replace (which revokes the first).
    with pytest.raises(ProvisionError, match="--replace"):
        ca.issue_device("dev-a", new_key().public_key())


def test_device_key_cannot_pose_as_the_broker(pki: dict) -> None:
    """A box trusts only the station CA for servers: a stolen box key is no broker."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(pki["dev-b"].cert), str(pki["dev-b"].key))
    client = ssl.create_default_context(cafile=str(pki["dev-a"].ca))
    client.check_hostname = False  # even without the hostname check
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    cli = client.wrap_bio(c_in, c_out, server_side=False)
    srv = server.wrap_bio(s_in, s_out, server_side=True)
    with pytest.raises(ssl.SSLCertVerificationError):
        for _ in range(10):
            for end in (cli, srv):
                with contextlib.suppress(ssl.SSLWantReadError):
                    end.do_handshake()
            s_in.write(c_out.read())
            c_in.write(s_out.read())


def test_names_and_inputs_are_checked() -> None:
    assert DEVICE_ID.pattern == AGENT_DEVICE_ID.pattern
    assert check_device_id("junction-07") == "junction-07"
    for bad in ("Junction", "-x", "a.b", "x" * 64, "roadside-central-ingest-1", ""):
        with pytest.raises(ProvisionError, match="bad device name"):
            check_device_id(bad)
    assert account_role("central.ingest") == "central"
    assert account_role("officer.rossi") == "officer"
    for bad in ("central", "officer.", "admin.bob", "officer.Rossi", "dev-a"):
        with pytest.raises(ProvisionError):
            account_role(bad)
    assert parse_location(" 46.4983,11.3548") == (46.4983, 11.3548)
    for bad in ("46.5", "46.5;11.3", "91,11", "46,-181", "nan,1", "a,b", "1,2,3"):
        with pytest.raises(ProvisionError, match="--location"):
            parse_location(bad)
    assert parse_broker("broker.lan") == Broker("broker.lan", 8883)
    assert parse_broker("10.0.0.5:1884") == Broker("10.0.0.5", 1884)
    assert parse_broker("[fd00::1]:8883") == Broker("fd00::1", 8883)
    for bad in ("", "broker.lan:0", "broker.lan:x", "bro ker", "-x:1"):
        with pytest.raises(ProvisionError, match="--broker"):
            parse_broker(bad)


# --------------------------------------------------------------------------- agent.toml
def test_rendered_agent_toml_is_a_valid_agent_config(tmp_path: Path) -> None:
    text = render_agent_toml(
        "junction-07",
        Broker("broker.lan", 8883),
        camera="rtsp://10.1.1.9/stream1",
        site='Passo "Alto"\nkm 7',
        location=(46.5, 11.35),
        status_led=17,
    )
    doc = check_agent_toml(text)
    assert doc["source"] == {"kind": "rtsp", "url": "rtsp://10.1.1.9/stream1"}
    assert doc["mqtt"] == {
        "host": "broker.lan",
        "port": 8883,
        "tls_ca": "/etc/roadside/tls/ca.crt",
        "tls_cert": "/etc/roadside/tls/device.crt",
        "tls_key": "/etc/roadside/tls/device.key",
    }
    path = tmp_path / "agent.toml"
    path.write_text(text)
    cfg = load_config(path)  # the agent's own loader takes it as is
    assert cfg.device == "junction-07" and cfg.data_dir == "/var/lib/roadside"
    assert cfg.events.sinks == ["mqtt"]
    assert cfg.hardware.status_led is not None and cfg.hardware.status_led.pin == 17
    pi = tomllib.loads(render_agent_toml("j", Broker("b"), site="s", location=(0, 0)))
    assert pi["source"] == {"kind": "picamera2"}


# --------------------------------------------------------------------------- bundle
def test_bundle_holds_key_cert_config_and_manifest(pki: dict, tmp_path: Path) -> None:
    req = DeviceRequest("junction-07", "SS42 km 7", (46.49, 11.35), Broker("broker.lan", 8883))
    path = make_bundle(pki["ca"], req, tmp_path)
    assert path.name == "junction-07.bundle.tar.gz"
    assert (path.stat().st_mode & 0o777) == 0o600
    with tarfile.open(path) as tar:
        modes = {m.name: m.mode for m in tar.getmembers() if m.isfile()}
        assert all(not n.startswith(("/", "..")) for n in tar.getnames())
    assert modes["tls/device.key"] == 0o600 and modes["agent.toml"] == 0o644
    b = read_bundle(path)
    cert = b.certificate()
    key = serialization.load_pem_private_key(b.files["tls/device.key"], None)
    assert key.public_key() == cert.public_key()
    assert b.files["tls/ca.crt"] == pki["ca"].cert_pem(STATION_CA)
    m = b.manifest
    assert m["device"] == "junction-07" and m["broker"] == "broker.lan:8883"
    assert m["location"] == {"lat": 46.49, "lon": 11.35}
    assert int(m["certificate"]["serial"], 16) == cert.serial_number
    check_agent_toml(b.files["agent.toml"].decode())
    # A damaged copy is caught before anything is installed.
    broken = tmp_path / "broken.tar.gz"
    with tarfile.open(path) as src, tarfile.open(broken, "w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else None
            if member.name == "agent.toml":
                data = data.replace(b"broker.lan", b"evil.example")
                member.size = len(data)
            dst.addfile(member, io.BytesIO(data) if data is not None else None)
    with pytest.raises(ProvisionError, match="damaged"):
        read_bundle(broken)


def test_cloud_init_runs_install_from_the_boot_partition(pki: dict, tmp_path: Path) -> None:
    user_data = render_user_data("junction-07", "junction-07.bundle.tar.gz")
    lines = user_data.splitlines()
    assert lines[0] == "#cloud-config"
    assert 'hostname: "junction-07"' in lines
    (cmd_line,) = [line for line in lines if line.startswith("  - [")]
    cmd = json.loads(cmd_line.removeprefix("  - "))  # flow sequence of JSON strings
    assert cmd[:2] == ["bash", "/boot/firmware/roadside/install.sh"]
    assert cmd[cmd.index("--bundle") + 1] == "/boot/firmware/roadside/junction-07.bundle.tar.gz"
    assert "--remove-bundle" in cmd
    assert 'instance-id: "roadside-junction-07-00ff' in render_meta_data("junction-07", "00ff")
    bundle = make_bundle(pki["ca"], DeviceRequest("card-box", "x", (0, 0), Broker("b")), tmp_path)
    card = write_card(tmp_path / "card", "card-box", "abcd", bundle)
    assert (card / "user-data").is_file() and (card / "meta-data").is_file()
    assert os.access(card / "roadside" / "install.sh", os.X_OK)
    assert (card / "roadside" / bundle.name).read_bytes() == bundle.read_bytes()


# --------------------------------------------------------------------------- ACL text
def test_acl_names_the_protocol_topics() -> None:
    assert broker_mod.ROOT == ROOT
    assert (
        broker_mod.XFER_INIT,
        broker_mod.XFER_DATA,
        broker_mod.XFER_ABORT,
        broker_mod.XFER_ACK,
    ) == (XFER_INIT, XFER_DATA, XFER_ABORT, XFER_ACK)
    assert (
        broker_mod.STATUS,
        broker_mod.EVENT,
        broker_mod.COUNT,
        broker_mod.HEALTH,
        broker_mod.CMD,
        broker_mod.REPLY,
        broker_mod.XFER,
    ) == (
        STATUS,
        EVENT,
        COUNT,
        HEALTH,
        CMD,
        REPLY,
        XFER,
    )
    doc = render_dynsec(["dev-a"], ["central.ingest", "officer.rossi"], ["stolen-box"])
    assert doc["defaultACLAccess"] == {
        "publishClientSend": False,
        "publishClientReceive": False,
        "subscribe": False,
        "unsubscribe": True,
    }
    roles = {r["rolename"]: r["acls"] for r in doc["roles"]}

    def grants(role: str, kind: str) -> list[str]:
        return [a["topic"] for a in roles[role] if a["acltype"] == kind and a["allow"]]

    box_reads = [
        "roadside/v1/dev-a/cmd/#",
        "roadside/v1/dev-a/xfer/+/ack",
        "roadside/v1/dev-a/dl/+/init",
        "roadside/v1/dev-a/dl/+/d",
        "roadside/v1/dev-a/dl/+/abort",
    ]
    assert grants("box-dev-a", "subscribePattern") == box_reads
    assert grants("box-dev-a", "publishClientReceive") == box_reads
    assert not any("cmd" in t for t in grants("box-dev-a", "publishClientSend"))
    assert grants("officer", "publishClientSend") == ["roadside/v1/+/cmd/#"]
    assert grants("officer", "subscribePattern") == [
        "roadside/v1/+/reply/#",
        "roadside/v1/+/status",
        "roadside/v1/+/update",
        "roadside/v1/+/xfer/+/init",
        "roadside/v1/+/xfer/+/ack",
    ]
    # Only central may hold a shared subscription (the ingest workers' group).
    shared = [t for r in roles for t in grants(r, "subscribePattern") if t.startswith("$share")]
    assert shared == ["$share/+/roadside/v1/#"] and "$share/+/roadside/v1/#" in grants(
        "central", "subscribePattern"
    )
    clients = {c["username"]: c for c in doc["clients"]}
    assert clients["dev-a"]["roles"] == [{"rolename": "box-dev-a"}]
    assert clients["officer.rossi"]["roles"] == [{"rolename": "officer"}]
    assert clients["stolen-box"].get("roles", []) == [] and clients["stolen-box"]["disabled"]
    conf = render_mosquitto_conf(BrokerFiles(Path("/x")), 8883).splitlines()
    box = conf[conf.index("listener 8883") : conf.index("listener 8884")]
    station = conf[conf.index("listener 8884") : conf.index("listener 8885")]
    officers = conf[conf.index("listener 8885") : conf.index("allow_anonymous false")]
    for block in (box, station, officers):
        for line in (
            "require_certificate true",
            "use_identity_as_username true",
            "crlfile /etc/mosquitto/roadside/crl.pem",
        ):
            assert line in block
    assert "cafile /etc/mosquitto/roadside/device-ca.pem" in box
    assert "use_username_as_clientid true" in box
    assert "cafile /etc/mosquitto/roadside/station-ca.pem" in station
    assert "use_username_as_clientid true" not in station
    assert "cafile /etc/mosquitto/roadside/officer-ca.pem" in officers
    assert "use_username_as_clientid true" in officers
    assert "allow_anonymous false" in conf and not any(ln.startswith("acl_file") for ln in conf)
    assert f"plugin {broker_mod.DYNSEC_PLUGIN}" in conf
    assert f"max_queued_messages {broker_mod.MAX_QUEUED_MESSAGES}" in conf
    assert broker_mod.MAX_QUEUED_MESSAGES >= broker_mod.DAY_OF_DISTRICT
    assert "plugin_opt_config_file /etc/mosquitto/roadside/dynamic-security.json" in conf


# --------------------------------------------------------------------------- real broker
@pytest.mark.slow
def test_device_reads_only_its_own_commands(peers) -> None:
    central, a, b = peers("central.ingest"), peers("dev-a"), peers("dev-b")
    # The plugin refuses the SUBSCRIBE itself; and nothing is ever delivered to A.
    assert [rc.value for rc in a.subscribe("roadside/v1/dev-b/cmd/#")] == [NOT_AUTHORIZED]
    assert [rc.value for rc in a.subscribe("roadside/v1/+/cmd/#")] == [NOT_AUTHORIZED]
    b.subscribe("roadside/v1/dev-b/cmd/#")
    assert not central.publish("roadside/v1/dev-b/cmd/snapshot", b"r1").is_failure
    b.expect("roadside/v1/dev-b/cmd/snapshot", b"r1")  # control: B gets its command
    assert a.received(QUIET) == []


@pytest.mark.slow
def test_device_cannot_publish_as_another_or_command_itself(peers) -> None:
    central, a = peers("central.ingest"), peers("dev-a")
    central.subscribe("roadside/v1/#")
    a.subscribe("roadside/v1/dev-a/cmd/#")
    assert a.publish("roadside/v1/dev-b/event", b"forged").value == NOT_AUTHORIZED
    assert a.publish("roadside/v1/dev-a/cmd/reboot", b"self").value == NOT_AUTHORIZED
    assert a.publish("roadside/v1/dev-a/status", b"online").value == 0  # its own: fine
    assert not a.publish("roadside/v1/dev-a/event", b"genuine").is_failure
    got = central.expect("roadside/v1/dev-a/event", b"genuine")  # control
    assert ("roadside/v1/dev-b/event", b"forged") not in got
    assert ("roadside/v1/dev-a/cmd/reboot", b"self") not in got
    assert a.received(QUIET) == []


def test_device_cannot_take_over_another_session(peers) -> None:
    """The client id is forced to the certificate's CN: 'dev-b' from A's cert is still A."""
    b = peers("dev-b", client_id="dev-b")
    b.subscribe("roadside/v1/dev-b/cmd/#")
    a = peers("dev-a", client_id="dev-b")
    central = peers("central.ingest")
    central.publish("roadside/v1/dev-b/cmd/ping", b"still-b")
    b.expect("roadside/v1/dev-b/cmd/ping", b"still-b")
    assert b.client.is_connected() and a.client.is_connected()


@pytest.mark.slow
def test_central_reads_all_devices_and_sends_commands(peers) -> None:
    central, a, b = peers("central.ingest"), peers("dev-a"), peers("dev-b")
    central.subscribe("roadside/v1/+/event")
    central.subscribe("roadside/v1/+/reply/#")
    a.publish("roadside/v1/dev-a/event", b"ea")
    b.publish("roadside/v1/dev-b/event", b"eb")
    b.publish("roadside/v1/dev-b/reply/r1", b"done")
    got = central.received()
    assert {
        ("roadside/v1/dev-a/event", b"ea"),
        ("roadside/v1/dev-b/event", b"eb"),
        ("roadside/v1/dev-b/reply/r1", b"done"),
    } <= set(got)
    a.subscribe("roadside/v1/dev-a/cmd/#")
    assert not central.publish("roadside/v1/dev-a/cmd/clip", b"c1").is_failure
    a.expect("roadside/v1/dev-a/cmd/clip", b"c1")
    # ... and no more: it cannot speak for a box.
    assert central.publish("roadside/v1/dev-a/event", b"fake").value == NOT_AUTHORIZED
    assert central.publish("roadside/v1/central.ingest/event", b"as-box").value == NOT_AUTHORIZED


@pytest.mark.slow
def test_officer_sends_commands_but_cannot_watch_the_road(peers) -> None:
    officer, central, b = peers("officer.rossi"), peers("central.ingest"), peers("dev-b")
    b.subscribe("roadside/v1/dev-b/cmd/#")
    officer.subscribe("roadside/v1/+/event")
    officer.subscribe("roadside/v1/#")
    central.subscribe("roadside/v1/+/event")
    assert not officer.publish("roadside/v1/dev-b/cmd/clip", b"10:14-10:17").is_failure
    b.expect("roadside/v1/dev-b/cmd/clip", b"10:14-10:17")
    b.publish("roadside/v1/dev-b/event", b"seen")
    central.expect("roadside/v1/dev-b/event", b"seen")  # control: events do flow
    assert officer.received(QUIET) == []
    assert officer.publish("roadside/v1/dev-b/event", b"fake").value == NOT_AUTHORIZED


@pytest.mark.slow
def test_transfers_go_box_to_station_and_acks_back(peers) -> None:
    central, a, officer = peers("central.ingest"), peers("dev-a"), peers("officer.rossi")
    central.subscribe("roadside/v1/+/xfer/#")
    # Each subscribes what its code does; anything wider is refused outright.
    assert [rc.value for rc in officer.subscribe("roadside/v1/+/xfer/#")] == [NOT_AUTHORIZED]
    officer.subscribe("roadside/v1/+/xfer/+/init")
    officer.subscribe("roadside/v1/+/xfer/+/ack")
    assert [rc.value for rc in a.subscribe("roadside/v1/dev-a/xfer/#")] == [NOT_AUTHORIZED]
    a.subscribe("roadside/v1/dev-a/xfer/+/ack")
    for part in ("init", "d", "abort"):
        assert not a.publish(f"roadside/v1/dev-a/xfer/x1/{part}", part.encode()).is_failure
    assert a.publish("roadside/v1/dev-a/xfer/x1/ack", b"self-ack").value == NOT_AUTHORIZED
    assert a.publish("roadside/v1/dev-b/xfer/x1/d", b"other").value == NOT_AUTHORIZED
    got = central.received()
    assert {(f"roadside/v1/dev-a/xfer/x1/{p}", p.encode()) for p in ("init", "d", "abort")} <= set(
        got
    )
    assert not central.publish("roadside/v1/dev-a/xfer/x1/ack", b"ack").is_failure
    assert central.publish("roadside/v1/dev-a/xfer/x1/d", b"fake").value == NOT_AUTHORIZED
    assert a.received() == [("roadside/v1/dev-a/xfer/x1/ack", b"ack")]
    # The officer follows progress (init, ack), never the footage itself.
    assert sorted(officer.received(QUIET)) == [
        ("roadside/v1/dev-a/xfer/x1/ack", b"ack"),
        ("roadside/v1/dev-a/xfer/x1/init", b"init"),
    ]


@pytest.mark.slow
def test_a_release_and_a_config_reach_a_box_and_its_answers_come_back(peers) -> None:
    """The topics of `roadside fleet update` and `fleet config set`, as the code uses them:
    central sends dl/ chunks and commands, the box acks, replies and reports retained."""
    central, a = peers("central.ingest"), peers("dev-a")
    # The box subscribes as ReleaseDownloads and the command channel do.
    for part in (XFER_INIT, XFER_DATA, XFER_ABORT):
        assert [rc.value for rc in a.subscribe(f"roadside/v1/dev-a/{DL}/+/{part}")] == [1]
    a.subscribe("roadside/v1/dev-a/cmd/#")
    # Central subscribes as ReleaseSender and FleetView do.
    for sub in (f"roadside/v1/+/{DL}/+/{XFER_ACK}", "roadside/v1/+/reply/#"):
        assert [rc.value for rc in central.subscribe(sub)] == [1]
    sent = [(f"roadside/v1/dev-a/{DL}/r1/{p}", p.encode()) for p in (XFER_INIT, XFER_DATA)]
    sent += [("roadside/v1/dev-a/cmd/set_config", b"cfg"), ("roadside/v1/dev-a/dl/r1/abort", b"x")]
    for t, payload in sent:
        assert central.publish(t, payload).value == 0, t
    assert sorted(a.received()) == sorted(sent)
    answers = [
        (f"roadside/v1/dev-a/{DL}/r1/{XFER_ACK}", b"ack"),
        ("roadside/v1/dev-a/reply/q1", b"done"),
    ]
    for t, payload in answers:
        assert a.publish(t, payload).value == 0, t
    info = a.client.publish(f"roadside/v1/dev-a/{UPDATE}", b"healthy", qos=1, retain=True)
    assert not a._wait(a.acks, info.mid).is_failure  # retained: nobody need listen now
    assert sorted(central.received()) == sorted(answers)
    # The retained report reaches a view that subscribes later (roadside fleet status).
    view = peers("central.ingest")
    assert [rc.value for rc in view.subscribe(f"roadside/v1/+/{UPDATE}")] == [1]
    view.expect(f"roadside/v1/dev-a/{UPDATE}", b"healthy")
    info = a.client.publish(f"roadside/v1/dev-a/{UPDATE}", b"", qos=1, retain=True)
    assert not a._wait(a.acks, info.mid).is_failure  # cleared for the module's other tests
    # The station's side stays the station's: a box cannot send itself chunks or commands.
    assert a.publish(f"roadside/v1/dev-a/{DL}/r2/{XFER_DATA}", b"own").value == NOT_AUTHORIZED
    assert central.publish(f"roadside/v1/dev-a/{UPDATE}", b"fake").value == NOT_AUTHORIZED


@pytest.mark.slow
def test_a_box_cannot_touch_another_boxs_release_update_or_config(peers) -> None:
    central, a, b = peers("central.ingest"), peers("dev-a"), peers("dev-b")
    theirs = [f"{DL}/+/{p}" for p in (XFER_INIT, XFER_DATA, XFER_ABORT, XFER_ACK)]
    theirs += [UPDATE, "cmd/set_config", "cmd/get_config", "reply/#", f"{DL}/#"]
    for kind in theirs:
        for sub in (f"roadside/v1/dev-b/{kind}", f"roadside/v1/+/{kind}"):
            assert [rc.value for rc in a.subscribe(sub)] == [NOT_AUTHORIZED], sub
    for kind in (f"{DL}/r1/{XFER_ACK}", f"{DL}/r1/{XFER_DATA}", UPDATE, "reply/q1"):
        assert a.publish(f"roadside/v1/dev-b/{kind}", b"forged").value == NOT_AUTHORIZED, kind
    # Control: B's own release chunk and update report flow.
    b.subscribe(f"roadside/v1/dev-b/{DL}/+/{XFER_DATA}")
    central.subscribe(f"roadside/v1/+/{UPDATE}")
    central.publish(f"roadside/v1/dev-b/{DL}/r1/{XFER_DATA}", b"chunk")
    b.expect(f"roadside/v1/dev-b/{DL}/r1/{XFER_DATA}", b"chunk")
    b.publish(f"roadside/v1/dev-b/{UPDATE}", b"trial")
    got = central.received()
    assert (f"roadside/v1/dev-b/{UPDATE}", b"trial") in got
    assert (f"roadside/v1/dev-b/{UPDATE}", b"forged") not in got
    assert a.received(QUIET) == []


def test_officer_follows_its_request(peers) -> None:
    """What `roadside clip` needs: send cmd, then read the reply and the box's status."""
    officer, b = peers("officer.rossi"), peers("dev-b")
    officer.subscribe("roadside/v1/dev-b/reply/r9")
    officer.subscribe("roadside/v1/dev-b/status")
    b.publish("roadside/v1/dev-b/status", b"online")
    b.publish("roadside/v1/dev-b/reply/r9", b"done")
    b.publish("roadside/v1/dev-b/health", b"ok")
    got = officer.received()
    assert sorted(got) == [
        ("roadside/v1/dev-b/reply/r9", b"done"),
        ("roadside/v1/dev-b/status", b"online"),
    ]


@pytest.mark.slow
def test_station_processes_keep_their_own_client_ids(peers) -> None:
    """One central account, several processes (ingest workers, receiver): no kicking."""
    w1 = peers("central.ingest", client_id="roadside-central-ingest-1")
    w2 = peers("central.ingest", client_id="roadside-central-ingest-2")
    w1.subscribe("roadside/v1/+/event")
    w2.subscribe("roadside/v1/+/event")
    peers("dev-a").publish("roadside/v1/dev-a/event", b"both")
    w1.expect("roadside/v1/dev-a/event", b"both")
    w2.expect("roadside/v1/dev-a/event", b"both")
    assert w1.client.is_connected() and w2.client.is_connected()


SHARED_EVENTS = "$share/central/roadside/v1/+/event"  # the ingest workers' subscription


def _events(peer: Peer, n: int, timeout: float = 30.0) -> set[bytes]:
    """The event payloads ``peer`` got, waiting until ``n`` arrived (or ``timeout``)."""
    got: set[bytes] = set()
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            got.add(peer.messages.get(timeout=0.5).payload)
    return got


@pytest.mark.slow
def test_no_box_or_officer_takes_a_share_of_the_station_events(peers) -> None:
    """A $share subscription in central's group would take its share of every box's events,
    which it may not read, so mosquitto would drop them: the SUBSCRIBE itself is refused."""
    central = peers("central.ingest", client_id="roadside-central-central-1")
    assert [rc.value for rc in central.subscribe(SHARED_EVENTS)] == [1]  # granted QoS 1
    a, officer = peers("dev-a"), peers("officer.rossi")
    for thief in (a, officer):
        assert [rc.value for rc in thief.subscribe(SHARED_EVENTS)] == [NOT_AUTHORIZED]
        assert [rc.value for rc in thief.subscribe("$share/x/roadside/v1/#")] == [NOT_AUTHORIZED]
    b = peers("dev-b")
    for i in range(200):
        b.client.publish("roadside/v1/dev-b/event", b"e%d" % i, qos=1)
    assert _events(central, 200) == {b"e%d" % i for i in range(200)}
    assert a.received(QUIET) == [] and officer.received(0.1) == []


@pytest.mark.slow
def test_an_officer_cannot_take_over_the_ingest_workers_session(pki: dict, tmp_path: Path) -> None:
    """The plugin does not check a certificate login's client id: an officer with the ingest
    worker's id took its session on the station listener and lost it 200 of 200 events. Now
    its certificate is refused there, and its own listener forces its id to its name."""
    box, station, officers = ports = _ports()
    with _mosquitto(tmp_path / "mosq", pki["files"], ports):
        c = pki["central.ingest"]
        tls = {"tls_ca": str(c.ca), "tls_cert": str(c.cert), "tls_key": str(c.key)}
        cfg = central_config(tmp_path, station, broker={"host": "127.0.0.1", **tls})
        store = Store(cfg.database_url)
        worker = IngestWorker(cfg, store).start()
        thief = None
        try:
            assert worker.wait_connected(10)
            assert tls_refusal(pki["officer.rossi"], station) is not None
            thief = Peer(pki["officer.rossi"], officers, worker.client_id, 3600).start()
            assert [rc.value for rc in thief.subscribe(SHARED_EVENTS)] == [NOT_AUTHORIZED]
            a = Peer(pki["dev-a"], box).start()
            t = time.time() - 3600
            starts = [event_pair(t + i, track=i)[0] for i in range(200)]
            ev = "roadside/v1/dev-a/event"
            # The first event doubles as the probe that the worker's subscription is there.
            assert eventually(lambda: a.publish(ev, starts[0].encode()).value == 0, 10)
            for msg in starts[1:]:
                a.client.publish(ev, msg.encode(), qos=1)

            def stored() -> int:
                with store.connect() as conn:
                    return conn.execute(sa.select(sa.func.count()).select_from(T.events)).scalar()

            assert eventually(lambda: stored() == 200, 30), f"{stored()} of 200 stored"
            assert worker.stats.connects == 1 and worker.connected.is_set()
            assert thief.client.is_connected() and thief.received(QUIET) == []
            a.stop()
        finally:
            if thief is not None:
                thief.stop()
            worker.stop()
            store.close()


@pytest.mark.slow
def test_a_day_of_events_waits_for_the_station(pki: dict, tmp_path: Path) -> None:
    """3,000 events while the station is away: all there when it comes back (the default
    queue of 1,000 dropped the rest after PUBACKing them)."""
    box, station, _ = ports = _ports()
    with _mosquitto(tmp_path / "mosq", pki["files"], ports):
        worker = Peer(pki["central.ingest"], station, "roadside-central-q-1", 3600).start()
        worker.subscribe(SHARED_EVENTS)
        worker.stop()  # the station is away; its session stays
        a = Peer(pki["dev-a"], box).start()
        sent = {b"q%d" % i for i in range(3000)}
        infos = [a.client.publish("roadside/v1/dev-a/event", p, qos=1) for p in sorted(sent)]
        assert eventually(lambda: all(i.is_published() for i in infos), 60)
        a.stop()
        back = Peer(pki["central.ingest"], station, "roadside-central-q-1", 3600).start()
        try:
            assert _events(back, 3000, 60) == sent
        finally:
            back.stop()


@pytest.mark.slow
def test_an_oversized_message_is_refused(pki: dict, peers) -> None:
    """MQTT 3.1.1, so that the client does not hold the packet back itself (an MQTT 5 client
    is told the limit in the CONNACK): the broker closes the connection, nothing is passed on."""
    central = peers("central.ingest")
    central.subscribe("roadside/v1/dev-a/#")
    a = Peer(pki["dev-a"], pki["ports"][0], protocol=mqtt.MQTTv311).start()
    try:
        chunk = b"\0" * (18 + 64 * 1024)  # the largest legitimate message: a full chunk
        assert a.publish("roadside/v1/dev-a/xfer/x9/d", chunk).value == 0
        a.client.publish("roadside/v1/dev-a/event", b"x" * broker_mod.MAX_PACKET_SIZE, qos=1)
        assert eventually(lambda: not a.client.is_connected(), WAIT)
        got = central.received()
        assert [(t, len(p)) for t, p in got] == [("roadside/v1/dev-a/xfer/x9/d", len(chunk))]
    finally:
        a.stop()


def test_each_listener_takes_only_its_own_ca(pki: dict, mosq: LocalBroker) -> None:
    box, station, officers = pki["ports"]
    assert tls_refusal(pki["dev-a"], box) is None  # controls
    assert tls_refusal(pki["central.ingest"], station) is None
    assert tls_refusal(pki["officer.rossi"], officers) is None
    for name, port in (("dev-a", station), ("dev-a", officers), ("central.ingest", box)):
        assert tls_refusal(pki[name], port) is not None, (name, port)
    assert tls_refusal(pki["central.ingest"], officers) is not None
    assert tls_refusal(pki["officer.rossi"], box) is not None
    assert tls_refusal(pki["officer.rossi"], station) is not None


@pytest.mark.slow
def test_certificate_from_another_ca_is_refused_at_tls(pki: dict, mosq: LocalBroker) -> None:
    box, station, officers = pki["ports"]
    for port in (box, station, officers):  # same CN 'dev-a', other CA
        assert tls_refusal(pki["foreign"], port) is not None, "a foreign CA's cert got in"
    peer = Peer(pki["foreign"], box)
    with pytest.raises((ssl.SSLError, ConnectionError, AssertionError)):
        peer.start()
    peer.client.loop_stop()


@pytest.mark.slow
def test_revoked_device_is_refused(pki: dict, tmp_path: Path) -> None:
    """Revoke on a broker of its own (the module's broker keeps its state)."""
    ca: ProjectCA = pki["ca"]
    files: BrokerFiles = pki["files"]
    box, station, _ = ports = _ports()
    with _mosquitto(tmp_path / "mosq", files, ports) as m:
        central = Peer(pki["central.ingest"], station).start()
        stolen = Peer(pki["stolen-box"], box).start()  # connected before the theft
        central.subscribe("roadside/v1/+/event")
        stolen.publish("roadside/v1/stolen-box/event", b"before")
        central.expect("roadside/v1/stolen-box/event", b"before")

        (entry,) = ca.revoke("stolen-box")
        refresh_broker_dir(ca, files)
        crl = x509.load_pem_x509_crl(files.crl.read_bytes())  # the device CA's, first
        assert crl.get_revoked_certificate_by_serial_number(entry.serial) is not None
        assert crl.is_signature_valid(ca.authorities[DEVICE_CA].cert.public_key())
        doc = json.loads(files.dynsec.read_text())
        (client,) = [c for c in doc["clients"] if c["username"] == "stolen-box"]
        assert client.get("roles", []) == []
        assert "box-stolen-box" not in {r["rolename"] for r in doc["roles"]}

        # SIGHUP (systemctl reload): the CRL is re-read, a new connection is refused at TLS.
        os.kill(m.proc.pid, signal.SIGHUP)
        assert eventually(lambda: tls_refusal(pki["stolen-box"], box) is not None, WAIT)
        stolen.stop()
        central.stop()

        # A restart drops every connection and loads the roles: none for it any more.
        m.restart()
        assert tls_refusal(pki["stolen-box"], box) is not None
        assert tls_refusal(pki["dev-a"], box) is None  # control: others unaffected
        assert tls_refusal(pki["central.ingest"], station) is None  # station CA has its CRL


# --------------------------------------------------------------------------- CLI
NO_PASS = {"ROADSIDE_CA_PASSPHRASE": None, "ROADSIDE_CA_PASSPHRASE_FILE": None}


def _cli(args: list[str], env: dict | None = None):
    return CliRunner().invoke(
        main, ["provision", *args], env={**NO_PASS, **(env or {})}, catch_exceptions=False
    )


def _dynsec_clients(broker_dir: Path) -> dict[str, dict]:
    doc = json.loads(BrokerFiles(broker_dir).dynsec.read_text())
    return {c["username"]: c for c in doc["clients"]}


def test_cli_from_ca_to_revoke(tmp_path: Path) -> None:
    pw = tmp_path / "pass"
    pw.write_text("a long enough passphrase\n")
    pw.chmod(0o600)
    env = {"ROADSIDE_CA_PASSPHRASE_FILE": str(pw)}
    ca = str(tmp_path / "ca")
    r = _cli(["ca", "init", ca], env)
    assert r.exit_code == 0, r.output
    assert "a long enough passphrase" not in r.output  # never echoed
    r = _cli(["broker", "--ca", ca, "--out", str(tmp_path / "brk"), "--host", "broker.lan"], env)
    assert r.exit_code == 0, r.output
    r = _cli(
        [
            "device",
            "junction-07",
            "--ca",
            ca,
            "--site",
            "SS42 km 7",
            "--location",
            "46.49,11.35",
            "--camera",
            "rtsp://cam.local/s",
            "--out",
            str(tmp_path / "out"),
            "--cloud-init",
            str(tmp_path / "card"),
        ],
        env,
    )
    assert r.exit_code == 0, r.output
    b = read_bundle(tmp_path / "out" / "junction-07.bundle.tar.gz")
    assert b.manifest["broker"] == "broker.lan:8883"  # remembered from `provision broker`
    assert tomllib.loads(b.files["agent.toml"].decode())["source"]["kind"] == "rtsp"
    assert (tmp_path / "card" / "user-data").is_file()
    r = _cli(["account", "officer.rossi", "--ca", ca, "--out", str(tmp_path / "acct")], env)
    assert r.exit_code == 0, r.output
    assert ((tmp_path / "acct" / "officer.rossi" / "client.key").stat().st_mode & 0o777) == 0o600
    assert "officer.rossi" in _dynsec_clients(tmp_path / "brk")  # the roles follow
    old = b.certificate().serial_number
    r = _cli(
        [
            "device",
            "junction-07",
            "--ca",
            ca,
            "--site",
            "SS42 km 7",
            "--location",
            "46.49,11.35",
            "--out",
            str(tmp_path / "out"),
            "--replace",
        ],
        env,
    )
    assert r.exit_code == 0, r.output
    new = read_bundle(tmp_path / "out" / "junction-07.bundle.tar.gz").certificate()
    assert new.serial_number != old
    crl = x509.load_pem_x509_crl((tmp_path / "brk" / "crl.pem").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(old) is not None
    assert crl.get_revoked_certificate_by_serial_number(new.serial_number) is None
    r = _cli(["revoke", "junction-07", "--ca", ca], env)
    assert r.exit_code == 0, r.output
    clients = _dynsec_clients(tmp_path / "brk")
    assert clients["junction-07"].get("roles", []) == [] and clients["officer.rossi"]["roles"]
    r = _cli(["list", "--ca", ca])
    assert r.exit_code == 0 and "revoked" in r.output and "officer.rossi" in r.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["device", "Junction 7", "--site", "x", "--location", "46,11"], "bad device name"),
        (["device", "j7", "--site", "x", "--location", "46.5"], "bad --location"),
        (["device", "j7", "--site", "x", "--location", "100,11"], "bad --location"),
        (["device", "j7", "--site", "x", "--location", "46,11", "--camera", "usb"], "bad --camera"),
        (["device", "j7", "--site", "x", "--location", "46,11", "--broker", "a b"], "bad --broker"),
        (["account", "bob", "--out", "x"], "bad account name"),
    ],
)
def test_cli_bad_input_is_one_line_error(tmp_path: Path, args: list[str], message: str) -> None:
    r = CliRunner().invoke(
        main,
        ["provision", *args, "--ca", str(tmp_path / "none")],
        env={"ROADSIDE_CA_PASSPHRASE": "whatever it is"},
    )
    assert r.exit_code == 2
    lines = r.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), r.output


def test_cli_without_passphrase_or_with_a_wrong_one(pki: dict) -> None:
    ca = str(pki["ca"].directory)
    r = CliRunner().invoke(main, ["provision", "revoke", "dev-a", "--ca", ca], env=NO_PASS)
    assert r.exit_code == 2 and r.output.strip() == (
        "error: no CA passphrase: pass --passphrase-file FILE or set ROADSIDE_CA_PASSPHRASE"
    )
    r = CliRunner().invoke(
        main,
        ["provision", "revoke", "dev-a", "--ca", ca],
        env={**NO_PASS, "ROADSIDE_CA_PASSPHRASE": "wrong wrong wrong"},
    )
    assert r.exit_code == 2 and "wrong CA passphrase" in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_cli_wheelhouse_dry_run(tmp_path: Path) -> None:
    r = _cli(
        [
            "wheelhouse",
            "--out",
            str(tmp_path / "wh"),
            "--platform",
            "manylinux2014_aarch64",
            "--python-version",
            "3.11",
            "--dry-run",
        ]
    )
    assert r.exit_code == 0, r.output
    build, download = r.output.strip().splitlines()
    assert " -m pip wheel --no-deps --wheel-dir " in build
    assert " -m pip download --dest " in download
    assert "--platform manylinux2014_aarch64" in download and "--only-binary=:all:" in download
