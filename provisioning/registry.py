"""The CA folder's record of every certificate it signed (``issued.json``).

Revocation works by serial number, but technicians think in device names: this record is what
turns ``revoke junction-07`` into the serials to put on the CRL, and what the broker's ACL is
rendered from (live station accounts, retired device names). It holds no secret.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from roadside.errors import ProvisionError

from .files import write_atomic

Kind = Literal["device", "account", "server"]
Issuer = Literal["device-ca", "station-ca", "officer-ca"]
FORMAT = 1


@dataclass
class IssuedCert:
    """One signed certificate: who it names, which CA signed it, and whether it is revoked."""

    name: str
    kind: Kind
    issuer: Issuer
    serial: int
    not_after: datetime
    issued_at: datetime
    revoked_at: datetime | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def to_json(self) -> dict:
        d = asdict(self)
        d["serial"] = f"{self.serial:x}"
        for k in ("not_after", "issued_at", "revoked_at"):
            d[k] = d[k].isoformat() if d[k] else None
        d["revoked"] = self.revoked
        return d

    @classmethod
    def from_json(cls, d: dict) -> IssuedCert:
        revoked_at = d.get("revoked_at")
        return cls(
            name=d["name"],
            kind=d["kind"],
            issuer=d["issuer"],
            serial=int(d["serial"], 16),
            not_after=datetime.fromisoformat(d["not_after"]),
            issued_at=datetime.fromisoformat(d["issued_at"]),
            revoked_at=datetime.fromisoformat(revoked_at) if revoked_at else None,
        )


@dataclass
class Registry:
    """``issued.json``: the certificates, the CRL counter and the broker address last set."""

    path: Path
    certs: list[IssuedCert] = field(default_factory=list)
    crl_number: int = 0
    broker: str | None = None
    broker_dir: str | None = None

    @classmethod
    def load(cls, path: Path) -> Registry:
        try:
            doc = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ProvisionError(f"{path} is missing: is this a CA folder (`ca init`)?") from None
        except (OSError, ValueError) as exc:
            raise ProvisionError(f"cannot read {path}: {exc}") from None
        if doc.get("format") != FORMAT:
            raise ProvisionError(f"{path}: unknown format {doc.get('format')!r}")
        try:
            certs = [IssuedCert.from_json(c) for c in doc.get("certs", [])]
        except (KeyError, ValueError, TypeError) as exc:
            raise ProvisionError(f"{path}: damaged entry ({exc})") from None
        return cls(
            path=Path(path),
            certs=certs,
            crl_number=int(doc.get("crl_number", 0)),
            broker=doc.get("broker"),
            broker_dir=doc.get("broker_dir"),
        )

    def save(self) -> None:
        doc = {
            "format": FORMAT,
            "crl_number": self.crl_number,
            "broker": self.broker,
            "broker_dir": self.broker_dir,
            "certs": [c.to_json() for c in self.certs],
        }
        write_atomic(self.path, json.dumps(doc, indent=2) + "\n", 0o644)

    def live(self, name: str) -> list[IssuedCert]:
        """Certificates for ``name`` that are neither revoked nor expired."""
        now = datetime.now(UTC)
        return [c for c in self.certs if c.name == name and not c.revoked and c.not_after > now]

    def revoke(self, name: str) -> list[IssuedCert]:
        """Mark every unrevoked certificate of ``name`` revoked now; returns those marked."""
        now = datetime.now(UTC).replace(microsecond=0)
        marked = [c for c in self.certs if c.name == name and not c.revoked]
        for c in marked:
            c.revoked_at = now
        return marked

    def revoked(self, issuer: Issuer) -> list[IssuedCert]:
        """What the CRL of ``issuer`` must list."""
        return [c for c in self.certs if c.issuer == issuer and c.revoked]

    def retired_names(self) -> list[str]:
        """Names with revoked certificates and no live one: the ACL denies them everything."""
        names = {c.name for c in self.certs if c.revoked and c.kind != "server"}
        return sorted(n for n in names if not self.live(n))

    def live_devices(self) -> list[str]:
        """Boxes holding a usable certificate: each gets its own role on the broker."""
        names = {c.name for c in self.certs if c.kind == "device"}
        return sorted(n for n in names if self.live(n))

    def live_accounts(self) -> list[str]:
        """Station accounts (central.*, officer.*) holding a usable certificate."""
        names = {c.name for c in self.certs if c.kind == "account"}
        return sorted(n for n in names if self.live(n))
