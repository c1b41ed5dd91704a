"""Signed evidence: a box vouches for each file it uploads, verifiable offline by anyone.

The box writes a small manifest of the file (device, transfer and request id, kind, name,
size, sha256, the range of footage it actually holds, its software version, when it signed)
as canonical JSON (sorted keys, no spaces) and signs exactly those bytes with its device key
(ECDSA P-256, SHA-256: the key and certificate provisioning issued for its broker login).
The manifest text, the signature and the device certificate travel in the transfer's
manifest (``XferInit.evidence``, ``ev``), about 1.2 KB, and the station keeps them beside
the clip as ``<clip>.evidence.json``.

``verify_evidence`` is the one check both the station (on receipt) and ``roadside clip
verify`` (offline, later) run: the certificate was issued by a trusted device CA, names the
box, is for signing and was valid when it signed, is not on the CA's revocation list; the
signature matches the manifest; and, given the file, its size and sha256 match. Any failure
is an ``EvidenceError`` whose sentence says which check failed.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from roadside.digest import sha256_file
from roadside.errors import RoadsideError
from roadside.wire.transfer import XferEvidence as Evidence

FORMAT = "roadside-evidence/1"
SIDECAR_SUFFIX = ".evidence.json"


class EvidenceFailure(StrEnum):
    """Which check failed (kept with a refusal, counted by the station)."""

    MISSING = "missing"  # no evidence at all
    MALFORMED = "malformed"  # it does not parse
    CERTIFICATE = "certificate"  # not issued by a trusted CA, wrong box, not valid then
    REVOKED = "revoked"
    SIGNATURE = "signature"
    FILE = "file"  # the file is not the one signed for
    MISMATCH = "mismatch"  # the manifest says another file than the transfer announces


class EvidenceError(RoadsideError):
    """Evidence that does not hold; the sentence says which check failed."""

    def __init__(self, failure: EvidenceFailure, message: str) -> None:
        super().__init__(message)
        self.failure = failure


class ClipManifest(BaseModel):
    """What the box signs for. Field names are the JSON keys, sorted when signed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str = FORMAT
    device: str = Field(min_length=1, max_length=63)
    xid: str = Field(min_length=1, max_length=64, description="the transfer id")
    request_id: str | None = Field(None, max_length=64, description="the officer request")
    kind: str = Field(max_length=16)
    name: str = Field(max_length=128)
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    actual_from: float | None = Field(None, description="first footage in the file, epoch s")
    actual_to: float | None = Field(None, description="end of the footage in the file, epoch s")
    software: str = Field(max_length=64, description="the box's software version")
    signed_at: float = Field(description="the box's clock when it signed, epoch s")

    def canonical(self) -> bytes:
        """The bytes that are signed: sorted keys, no spaces, absent values left out."""
        data = self.model_dump(exclude_none=True)
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def parse_manifest(evidence: Evidence) -> ClipManifest:
    """The signed manifest, parsed (``EvidenceError`` when it is not one)."""
    try:
        return ClipManifest.model_validate_json(evidence.manifest)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(manifest)"
        raise EvidenceError(
            EvidenceFailure.MALFORMED, f"the signed manifest is wrong: {where}: {err['msg']}"
        ) from None


def sidecar_bytes(evidence: Evidence) -> bytes:
    """The ``.evidence.json`` kept beside the file: readable names, the certificate PEM."""
    doc = {
        "format": FORMAT,
        "manifest": evidence.manifest,
        "signature": evidence.signature,
        "certificate": _der_to_pem(evidence.certificate),
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def read_sidecar(data: bytes) -> Evidence:
    """An ``.evidence.json`` read back (``EvidenceError`` when it is not one)."""
    try:
        doc = json.loads(data)
        cert = doc["certificate"]
        if cert.startswith("-----BEGIN"):
            der = x509.load_pem_x509_certificate(cert.encode()).public_bytes(
                serialization.Encoding.DER
            )
            cert = base64.b64encode(der).decode()
        return Evidence(manifest=doc["manifest"], signature=doc["signature"], certificate=cert)
    except (ValueError, KeyError, TypeError, AttributeError, ValidationError) as exc:
        raise EvidenceError(
            EvidenceFailure.MALFORMED, f"not an evidence file ({type(exc).__name__})"
        ) from None


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + SIDECAR_SUFFIX)


@dataclass(frozen=True)
class Signer:
    """A box's device key and certificate, as provisioning installed them."""

    key: ec.EllipticCurvePrivateKey
    cert_der: bytes

    @classmethod
    def load(cls, cert_path: str | Path, key_path: str | Path) -> Signer:
        try:
            cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
            key = serialization.load_pem_private_key(Path(key_path).read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as exc:
            raise RoadsideError(f"device key {key_path}: cannot load it ({exc})") from None
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise RoadsideError(f"device key {key_path}: not an EC key")
        return cls(key, cert.public_bytes(serialization.Encoding.DER))

    def sign(self, manifest: ClipManifest) -> Evidence:
        body = manifest.canonical()
        sig = self.key.sign(body, ec.ECDSA(hashes.SHA256()))
        return Evidence(
            manifest=body.decode(),
            signature=base64.b64encode(sig).decode(),
            certificate=base64.b64encode(self.cert_der).decode(),
        )


@dataclass(frozen=True)
class Trust:
    """The device CA certificate(s) and their revocation lists (``crl.pem`` of provisioning)."""

    cas: tuple[x509.Certificate, ...]
    crls: tuple[x509.CertificateRevocationList, ...] = ()
    checks_revocation: bool = False

    @classmethod
    def load(cls, ca_path: str | Path, crl_path: str | Path | None = None) -> Trust:
        try:
            cas = tuple(x509.load_pem_x509_certificates(Path(ca_path).read_bytes()))
        except (OSError, ValueError) as exc:
            raise RoadsideError(f"CA certificate {ca_path}: cannot read it ({exc})") from None
        crls: list[x509.CertificateRevocationList] = []
        if crl_path is not None:
            try:
                text = Path(crl_path).read_bytes()
            except OSError as exc:
                raise RoadsideError(f"revocation list {crl_path}: cannot read it ({exc})") from None
            for block in text.split(b"-----END X509 CRL-----")[:-1]:
                try:
                    crls.append(x509.load_pem_x509_crl(block + b"-----END X509 CRL-----\n"))
                except ValueError as exc:
                    raise RoadsideError(f"revocation list {crl_path}: damaged ({exc})") from None
        return cls(cas, tuple(crls), crl_path is not None)


@dataclass(frozen=True)
class Verified:
    """What a good piece of evidence vouches for."""

    manifest: ClipManifest
    serial: int
    issuer: str
    revocation_checked: bool


def verify_evidence(
    evidence: Evidence, trust: Trust, *, device: str | None = None, file: Path | None = None
) -> Verified:
    """Run every check (see the module doc); raises ``EvidenceError`` on the first that fails."""
    manifest = parse_manifest(evidence)
    cert = _certificate(evidence)
    ca = _issuer(cert, trust.cas)
    _check_certificate(cert, manifest, device)
    if trust.checks_revocation:
        _check_revocation(cert, ca, trust.crls)
    try:
        sig = base64.b64decode(evidence.signature, validate=True)
        public = cert.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise EvidenceError(EvidenceFailure.CERTIFICATE, "the certificate's key is not EC")
        public.verify(sig, evidence.manifest.encode(), ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        raise EvidenceError(
            EvidenceFailure.SIGNATURE,
            f"the signature does not match the manifest and {manifest.device}'s certificate",
        ) from None
    if file is not None:
        _check_file(file, manifest)
    return Verified(
        manifest, cert.serial_number, ca.subject.rfc4514_string(), trust.checks_revocation
    )


def _certificate(evidence: Evidence) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(base64.b64decode(evidence.certificate, validate=True))
    except (binascii.Error, ValueError):
        raise EvidenceError(
            EvidenceFailure.MALFORMED, "the evidence's certificate does not parse"
        ) from None


def _issuer(cert: x509.Certificate, cas: Sequence[x509.Certificate]) -> x509.Certificate:
    for ca in cas:
        if ca.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return ca
    raise EvidenceError(
        EvidenceFailure.CERTIFICATE,
        f"the certificate of {_common_name(cert)} was not issued by the trusted device CA",
    )


def _check_certificate(cert: x509.Certificate, manifest: ClipManifest, device: str | None) -> None:
    name = _common_name(cert)
    if name != manifest.device:
        raise EvidenceError(
            EvidenceFailure.CERTIFICATE,
            f"the manifest names {manifest.device} but is signed with {name}'s certificate",
        )
    if device is not None and name != device:
        raise EvidenceError(
            EvidenceFailure.CERTIFICATE,
            f"the upload came from {device} but is signed with {name}'s certificate",
        )
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        if not usage.digital_signature:
            raise EvidenceError(EvidenceFailure.CERTIFICATE, "the certificate may not sign")
    except x509.ExtensionNotFound:
        pass
    signed = datetime.fromtimestamp(manifest.signed_at, UTC)
    if not cert.not_valid_before_utc <= signed <= cert.not_valid_after_utc:
        raise EvidenceError(
            EvidenceFailure.CERTIFICATE,
            f"{name}'s certificate was not valid at {signed.isoformat()} when the box signed",
        )


def _check_revocation(
    cert: x509.Certificate, ca: x509.Certificate, crls: Sequence[x509.CertificateRevocationList]
) -> None:
    key = ca.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey):  # the project's CAs are EC
        raise EvidenceError(EvidenceFailure.CERTIFICATE, "the device CA's key is not EC")
    mine = [c for c in crls if c.issuer == ca.subject and c.is_signature_valid(key)]
    if not mine:
        raise EvidenceError(
            EvidenceFailure.REVOKED,
            f"the revocation list holds no list signed by {ca.subject.rfc4514_string()}",
        )
    for crl in mine:
        revoked = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if revoked is not None:
            raise EvidenceError(
                EvidenceFailure.REVOKED,
                f"{_common_name(cert)}'s certificate (serial {cert.serial_number:x}) was revoked "
                f"on {revoked.revocation_date_utc.isoformat()}",
            )


def _check_file(file: Path, manifest: ClipManifest) -> None:
    try:
        size = file.stat().st_size
        digest = sha256_file(file)
    except OSError as exc:
        raise EvidenceError(EvidenceFailure.FILE, f"cannot read {file}: {exc}") from None
    if size != manifest.size or digest != manifest.sha256:
        raise EvidenceError(
            EvidenceFailure.FILE,
            f"{file.name} is not the file the box signed for: its sha256 is {digest}, "
            f"the signed one is {manifest.sha256}",
        )


def _common_name(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else "(no name)"


def _der_to_pem(b64: str) -> str:
    try:
        cert = x509.load_der_x509_certificate(base64.b64decode(b64))
    except (binascii.Error, ValueError):
        return b64
    return cert.public_bytes(serialization.Encoding.PEM).decode()
