"""TLS with client certificates, broker passwords, and the MQTT 3.1.1 fallback, on mosquitto."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from roadside.agent.uplink import Uplink
from roadside.config.agent import UplinkConfig
from roadside.testing.broker import LocalBroker
from roadside.testing.clients import Subscriber, kinds
from roadside.testing.configs import mqtt_config
from roadside.testing.messages import event
from roadside.testing.ports import free_port
from roadside.testing.waiting import eventually
from roadside.wire.messages import EventMsg

DEVICE = "box-1"

# -- certificates --------------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
    path.with_suffix(".key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.with_suffix(".crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def make_ca(folder: Path, cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write(folder / cn, key, cert)
    return key, cert


def make_leaf(
    folder: Path,
    cn: str,
    ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
    server: bool = False,
) -> Path:
    ca_key, ca_cert = ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    _write(folder / cn, key, builder.sign(ca_key, hashes.SHA256()))
    return folder / cn


def tls_files(base: Path) -> dict[str, str]:
    return {"tls_cert": str(base.with_suffix(".crt")), "tls_key": str(base.with_suffix(".key"))}


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    folder = tmp_path / "pki"
    folder.mkdir()
    station_ca = make_ca(folder, "district-ca")
    other_ca = make_ca(folder, "other-ca")
    make_leaf(folder, "broker", station_ca, server=True)
    make_leaf(folder, DEVICE, station_ca)
    make_leaf(folder, "station", station_ca)
    make_leaf(folder, "intruder", other_ca)
    return folder


def test_tls_with_client_certificates(tmp_path: Path, pki: Path):
    port = free_port()
    broker = LocalBroker(
        tmp_path / "broker",
        port=port,
        listener=f"listener {port} 127.0.0.1",
        extra=(
            f"cafile {pki / 'district-ca.crt'}\ncertfile {pki / 'broker.crt'}\n"
            f"keyfile {pki / 'broker.key'}\nrequire_certificate true\n"
            "use_identity_as_username true\n"
        ),
    ).start()
    station = Subscriber(
        port,
        client_id="station",
        tls={
            "ca_certs": str(pki / "district-ca.crt"),
            "certfile": str(pki / "station.crt"),
            "keyfile": str(pki / "station.key"),
        },
    )
    good = Uplink(
        DEVICE,
        mqtt_config(port, tls_ca=str(pki / "district-ca.crt"), **tls_files(pki / DEVICE)),
        UplinkConfig(outbox_sync="normal"),
        tmp_path / "good",
        heartbeat=False,
    )
    bad = Uplink(
        "intruder",
        mqtt_config(port, tls_ca=str(pki / "district-ca.crt"), **tls_files(pki / "intruder")),
        UplinkConfig(outbox_sync="normal"),
        tmp_path / "bad",
        heartbeat=False,
    )
    try:
        with good, bad:
            sent = event(1)
            good.sink.publish("event", sent)
            bad.sink.publish("event", event(2))
            assert station.wait(lambda m: len(kinds(m, "event")) == 1)
            assert EventMsg.decode(kinds(station.messages, "event")[0].payload) == sent
            assert good.client.state().connected
            # The intruder's certificate is from another CA: refused, again and again.
            assert eventually(lambda: bad.client.state().failures >= 2, 15)
            assert bad.client.state().connects == 0 and not bad.connected
            assert bad.outbox.rows == 1  # kept for when it is allowed in
        assert len(kinds(station.messages, "event")) == 1
        assert "certificate" in broker.log.read_text().lower()
    finally:
        station.close()
        broker.stop()


def test_password_login(tmp_path: Path):
    passwords = tmp_path / "passwd"
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(passwords), DEVICE, "s3cret"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["mosquitto_passwd", "-b", str(passwords), "station", "st4tion"],
        check=True,
        capture_output=True,
    )
    broker = LocalBroker(
        tmp_path / "broker", anonymous=False, extra=f"password_file {passwords}\n"
    ).start()
    secret = tmp_path / "mqtt.password"
    secret.write_text("s3cret\n")
    station = Subscriber(broker.port, login=("station", "st4tion"))
    try:
        good = Uplink(
            DEVICE,
            mqtt_config(broker.port, username=DEVICE, password_file=str(secret)),
            UplinkConfig(outbox_sync="normal"),
            tmp_path / "good",
            heartbeat=False,
        )
        bad = Uplink(
            DEVICE,
            mqtt_config(broker.port, username=DEVICE, password="guess", client_id="guesser"),
            UplinkConfig(outbox_sync="normal"),
            tmp_path / "bad",
            heartbeat=False,
        )
        with good, bad:
            good.sink.publish("event", event(1))
            assert station.wait(lambda m: len(kinds(m, "event")) == 1)
            assert eventually(lambda: bad.client.state().failures >= 2, 15)
            state = bad.client.state()
            assert state.connects == 0 and "refused" in state.last_error
    finally:
        station.close()
        broker.stop()


class Mqtt311Front:
    """A TCP front for mosquitto that answers like a 3.1.1-only broker: a CONNECT for MQTT 5
    gets CONNACK "unacceptable protocol version"; any other is passed through."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.levels: list[int] = []
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        head = conn.recv(1)
        length, shift, raw = 0, 0, b""
        while True:
            b = conn.recv(1)
            raw += b
            length |= (b[0] & 0x7F) << shift
            shift += 7
            if not b[0] & 0x80:
                break
        body = b""
        while len(body) < length:
            body += conn.recv(length - len(body))
        level = body[6]  # after the protocol name "MQTT" (2-byte length + 4 bytes)
        self.levels.append(level)
        if level == 5:
            conn.sendall(b"\x20\x02\x00\x01")
            conn.close()
            return
        up = socket.create_connection(("127.0.0.1", self.upstream))
        up.sendall(head + raw + body)
        for a, b in ((conn, up), (up, conn)):
            threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()


def test_falls_back_to_mqtt_311(tmp_path: Path):
    broker = LocalBroker(tmp_path / "broker").start()
    front = Mqtt311Front(broker.port)
    station = Subscriber(broker.port)
    up = Uplink(
        DEVICE,
        mqtt_config(front.port),
        UplinkConfig(outbox_sync="normal"),
        tmp_path / "data",
        heartbeat=False,
    )
    try:
        with up:
            sent = [event(i) for i in range(20)]
            for msg in sent:
                up.sink.publish("event", msg)
            assert station.wait(lambda m: len(kinds(m, "event")) == 20)
            assert up.client.state().protocol == "3.1.1"
        assert front.levels[:2] == [5, 4]
        got = [EventMsg.decode(m.payload) for m in kinds(station.messages, "event")]
        # Each once; events stored after the reconnect go before the backlog, so the order
        # of the two groups is the sender's (test_uplink covers it), not the sequence sent.
        assert sorted(got, key=lambda m: m.track) == sent
        statuses = [m for m in station.messages if m.topic.endswith("/status")]
        assert statuses and b'"offline"' in statuses[-1].payload
    finally:
        station.close()
        front.close()
        broker.stop()
