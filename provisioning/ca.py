"""The project's certificate authorities, their revocation lists and what they issued.

One CA folder holds three self-signed authorities, all keys under the same passphrase:

``device-ca``
    Signs box certificates and nothing else. The broker trusts it for *clients* only.
``station-ca``
    Signs the broker's TLS server certificate and central's client certificates
    (``central.*``). Boxes and officers trust it, and only it, to recognise the broker.
``officer-ca``
    Signs officers' client certificates (``officer.*``) and nothing else. The broker's
    officer listener trusts it alone, so an officer certificate never gets onto the station
    listener, where central's processes choose their own client ids.

Why two: device keys live in the field, in boxes anyone can unscrew from a pole. Keeping them
under a CA that boxes never trust for servers means no device key, stolen or not, can ever
pose as the broker to the other boxes (on top of the EKU and hostname checks, which already
refuse it). The split also lets the station keys and the device keys have different
custodians later without re-flashing any box.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from roadside.errors import ProvisionError

from .files import read_bytes, write_atomic
from .identity import account_role, check_device_id
from .registry import IssuedCert, Issuer, Kind, Registry

DEVICE_CA: Issuer = "device-ca"
STATION_CA: Issuer = "station-ca"
OFFICER_CA: Issuer = "officer-ca"
AUTHORITIES: tuple[Issuer, ...] = (DEVICE_CA, STATION_CA, OFFICER_CA)
REGISTRY_FILE = "issued.json"
CRL_FILE = "crl.pem"
MIN_PASSPHRASE = 12
# Clocks of freshly flashed boxes and of the station disagree by minutes; never by an hour.
BACKDATE = timedelta(hours=1)
# The broker's CRL is a local file we replace ourselves, so an old one cannot be replayed at
# it; what matters is that it never expires unnoticed, because OpenSSL then refuses *every*
# client. Ten years, refreshed by each revoke and each `provision broker`.
CRL_DAYS = 3650

CA_TITLES = {
    DEVICE_CA: "Roadside Device CA",
    STATION_CA: "Roadside Station CA",
    OFFICER_CA: "Roadside Officer CA",
}


def new_key(curve: ec.EllipticCurve | None = None) -> ec.EllipticCurvePrivateKey:
    """A fresh EC key; P-256 unless told (every TLS stack on a Pi or a broker takes it)."""
    return ec.generate_private_key(curve or ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM, encrypted when a passphrase is given."""
    enc = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str, organisation: str, unit: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation)]
    if unit:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _self_signed_ca(
    title: str, organisation: str, days: int
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = new_key(ec.SECP384R1())
    name = _name(title, organisation)
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA384())
    )
    return key, cert


def _leaf_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


@dataclass
class Authority:
    """One signing CA: its key and certificate."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def _new_authority(
    directory: Path, which: Issuer, passphrase: bytes, organisation: str, days: int
) -> Authority:
    key, cert = _self_signed_ca(CA_TITLES[which], organisation, days)
    write_atomic(directory / f"{which}.key", key_pem(key, passphrase), 0o600)
    write_atomic(directory / f"{which}.crt", cert_pem(cert), 0o644)
    return Authority(key, cert)


class ProjectCA:
    """The CA folder: the three authorities, ``issued.json`` and the combined ``crl.pem``.

    Opening it needs the passphrase (every operation here signs something); the public
    certificates and ``issued.json`` are plain files anyone may read.
    """

    def __init__(
        self, directory: Path, authorities: dict[Issuer, Authority], registry: Registry
    ) -> None:
        self.directory = Path(directory)
        self.authorities = authorities
        self.registry = registry

    # ---------------------------------------------------------------- create / open
    @classmethod
    def create(
        cls, directory: Path, passphrase: bytes, organisation: str = "Roadside", days: int = 7300
    ) -> ProjectCA:
        """Make a new CA folder; refuses to touch one that already holds a CA."""
        directory = Path(directory)
        if len(passphrase) < MIN_PASSPHRASE:
            raise ProvisionError(f"the CA passphrase must be at least {MIN_PASSPHRASE} characters")
        ensure_no_ca(directory)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            os.chmod(directory, 0o700)
        except OSError as exc:
            raise ProvisionError(f"cannot create {directory}: {exc.strerror or exc}") from None
        authorities = {
            which: _new_authority(directory, which, passphrase, organisation, days)
            for which in AUTHORITIES
        }
        registry = Registry(directory / REGISTRY_FILE)
        ca = cls(directory, authorities, registry)
        ca.write_crl()  # also saves the registry (CRL number 1)
        return ca

    @classmethod
    def open(cls, directory: Path, passphrase: bytes) -> ProjectCA:
        """Load the authorities; a wrong passphrase is one clear error, not a traceback.

        A folder made before officers had a CA of their own gets its officer CA here (the
        passphrase is at hand), with the device CA's organisation and end date.
        """
        directory = Path(directory)
        registry = Registry.load(directory / REGISTRY_FILE)
        authorities: dict[Issuer, Authority] = {}
        for which in AUTHORITIES:
            if which == OFFICER_CA and not (directory / f"{which}.key").exists():
                continue
            cert = x509.load_pem_x509_certificate(
                read_bytes(directory / f"{which}.crt", f"{which} certificate")
            )
            raw = read_bytes(directory / f"{which}.key", f"{which} key")
            try:
                key = serialization.load_pem_private_key(raw, password=passphrase)
            except (ValueError, TypeError):
                raise ProvisionError(
                    f"cannot unlock {directory / (which + '.key')}: wrong CA passphrase?"
                ) from None
            if not isinstance(key, ec.EllipticCurvePrivateKey):
                raise ProvisionError(f"{which}.key is not an EC key")
            authorities[which] = Authority(key, cert)
        ca = cls(directory, authorities, registry)
        if OFFICER_CA not in authorities:
            device = authorities[DEVICE_CA].cert
            days = (device.not_valid_after_utc - _now()).days
            authorities[OFFICER_CA] = _new_authority(
                directory, OFFICER_CA, passphrase, ca._organisation(), days
            )
            ca.write_crl()  # crl.pem must cover every issuer
        return ca

    # ---------------------------------------------------------------- issuing
    def _issue(
        self,
        issuer: Issuer,
        kind: Kind,
        subject: x509.Name,
        name: str,
        public_key: ec.EllipticCurvePublicKey,
        days: int,
        eku: x509.ObjectIdentifier,
        san: list[x509.GeneralName] | None = None,
    ) -> x509.Certificate:
        ca = self.authorities[issuer]
        now = _now()
        not_after = min(now + timedelta(days=days), ca.cert.not_valid_after_utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca.cert.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_leaf_usage(), critical=True)
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                critical=False,
            )
        )
        if san:
            builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        cert = builder.sign(ca.key, hashes.SHA384())
        # Recorded before anyone sees the certificate: a cert we cannot name is one we
        # cannot revoke.
        self.registry.certs.append(
            IssuedCert(
                name=name,
                kind=kind,
                issuer=issuer,
                serial=cert.serial_number,
                not_after=cert.not_valid_after_utc,
                issued_at=now,
            )
        )
        self.registry.save()
        return cert

    def _check_free(self, name: str, replace: bool) -> None:
        live = self.registry.live(name)
        if live and not replace:
            raise ProvisionError(
                f"{name} already has a valid certificate (serial {live[0].serial:x}); "
                "pass --replace to revoke it and issue a new one"
            )
        if live:
            self.registry.revoke(name)
            self.write_crl()

    def issue_device(
        self,
        name: str,
        public_key: ec.EllipticCurvePublicKey,
        days: int = 3650,
        replace: bool = False,
    ) -> x509.Certificate:
        """A box's client certificate, CN = device id, signed by the device CA."""
        check_device_id(name)
        self._check_free(name, replace)
        org = self._organisation()
        return self._issue(
            DEVICE_CA,
            "device",
            _name(name, org, "device"),
            name,
            public_key,
            days,
            ExtendedKeyUsageOID.CLIENT_AUTH,
        )

    def issue_account(
        self,
        name: str,
        public_key: ec.EllipticCurvePublicKey,
        days: int = 365,
        replace: bool = False,
    ) -> x509.Certificate:
        """A station client certificate: central.* signed by the station CA, officer.* by
        the officer CA (it connects to the officer listener only)."""
        role = account_role(name)
        self._check_free(name, replace)
        org = self._organisation()
        return self._issue(
            OFFICER_CA if role == "officer" else STATION_CA,
            "account",
            _name(name, org, role),
            name,
            public_key,
            days,
            ExtendedKeyUsageOID.CLIENT_AUTH,
        )

    def issue_server(
        self,
        hosts: list[str],
        public_key: ec.EllipticCurvePublicKey,
        days: int = 1825,
        role: str = "broker",
    ) -> x509.Certificate:
        """A TLS server certificate of the station CA: the broker's (``role`` = broker) or the
        officers' console's (``web``), for every host name or IP it is reached by."""
        if not hosts:
            raise ProvisionError(f"the {role} certificate needs at least one --host")
        san: list[x509.GeneralName] = []
        for h in hosts:
            try:
                san.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                san.append(x509.DNSName(h))
        org = self._organisation()
        return self._issue(
            STATION_CA,
            "server",
            _name(hosts[0], org, role),
            f"{role}:{hosts[0]}",
            public_key,
            days,
            ExtendedKeyUsageOID.SERVER_AUTH,
            san,
        )

    def _organisation(self) -> str:
        attrs = self.authorities[DEVICE_CA].cert.subject.get_attributes_for_oid(
            NameOID.ORGANIZATION_NAME
        )
        return str(attrs[0].value) if attrs else "Roadside"

    # ---------------------------------------------------------------- revocation
    def revoke(self, name: str) -> list[IssuedCert]:
        """Revoke every certificate issued to ``name`` and re-sign the CRLs."""
        known = [c for c in self.registry.certs if c.name == name]
        if not known:
            raise ProvisionError(f"no certificate was ever issued to {name!r} by this CA")
        marked = self.registry.revoke(name)
        self.write_crl()
        return marked

    def crl(self, issuer: Issuer) -> x509.CertificateRevocationList:
        """A freshly signed CRL of ``issuer`` (number = the registry's counter)."""
        ca = self.authorities[issuer]
        now = _now()
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(ca.cert.subject)
            .last_update(now - BACKDATE)
            .next_update(now + timedelta(days=CRL_DAYS))
            .add_extension(x509.CRLNumber(self.registry.crl_number), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
                critical=False,
            )
        )
        for c in self.registry.revoked(issuer):
            assert c.revoked_at is not None
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(c.serial)
                .revocation_date(c.revoked_at)
                .build()
            )
        return builder.sign(ca.key, hashes.SHA384())

    def crl_pem(self) -> bytes:
        """Every CA's CRL in one PEM file, as mosquitto's ``crlfile`` wants it.

        With ``crlfile`` set, OpenSSL insists on a CRL from the issuer of *every* client
        certificate; leaving the station CA's out would lock out central, the officer CA's
        the officers.
        """
        return b"".join(
            self.crl(which).public_bytes(serialization.Encoding.PEM) for which in AUTHORITIES
        )

    def write_crl(self) -> Path:
        """Bump the CRL number, sign, save ``crl.pem`` and the registry."""
        self.registry.crl_number += 1
        path = write_atomic(self.directory / CRL_FILE, self.crl_pem(), 0o644)
        self.registry.save()
        return path

    # ---------------------------------------------------------------- public material
    def cert_pem(self, issuer: Issuer) -> bytes:
        return cert_pem(self.authorities[issuer].cert)


def ensure_no_ca(directory: Path) -> None:
    """Refuse a folder that already holds a CA: overwriting it would orphan every box."""
    directory = Path(directory)
    if (directory / REGISTRY_FILE).exists() or (directory / f"{DEVICE_CA}.key").exists():
        raise ProvisionError(f"{directory} already holds a CA; refusing to overwrite it")
