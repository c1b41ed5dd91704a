"""A district's keys for tests and benchmarks: a project CA made once, device keys issued on
demand. Boxes sign their uploads and the station checks them, as in a provisioned district
(the station refuses unsigned uploads)."""

from __future__ import annotations

from pathlib import Path

from roadside.provisioning.ca import CRL_FILE, DEVICE_CA, ProjectCA, cert_pem, key_pem, new_key

PASSPHRASE = b"test passphrase, not for use"


class DistrictKeys:
    """The CA folder under ``base`` and one key and certificate per box name."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.ca = ProjectCA.create(base / "ca", PASSPHRASE)

    @property
    def device_ca(self) -> Path:
        return self.base / "ca" / f"{DEVICE_CA}.crt"

    @property
    def crl(self) -> Path:
        return self.base / "ca" / CRL_FILE

    def device(self, name: str) -> tuple[Path, Path]:
        """``name``'s certificate and key files, issued on first use."""
        cert, key = self.base / f"{name}.crt", self.base / f"{name}.key"
        if not cert.exists():
            private = new_key()
            key.write_bytes(key_pem(private))
            cert.write_bytes(cert_pem(self.ca.issue_device(name, private.public_key())))
        return cert, key

    def receiver_section(self) -> dict[str, str]:
        """The station's ``[receiver]`` settings that check the boxes' signatures."""
        return {"device_ca": str(self.device_ca), "crl": str(self.crl)}

    def transfer_section(self, name: str) -> dict[str, str]:
        """Box ``name``'s ``[transfer]`` settings that sign its uploads."""
        cert, key = self.device(name)
        return {"device_cert": str(cert), "device_key": str(key)}
