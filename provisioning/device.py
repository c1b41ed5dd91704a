"""A box's identity in one file: key, certificate, CA, agent.toml and a manifest.

The bundle is a tar.gz a technician can carry on a USB stick or drop on the SD card's boot
partition. It holds the box's private key, so it is written 0600 and should be deleted once
installed (``install.sh --remove-bundle`` does that on first boot). The key is made here and
exists nowhere else: the CA folder keeps only the certificate's serial, so a stolen laptop
CA folder never leaks keys of boxes already in the field.

Layout inside the archive (all at the top level, no absolute paths)::

    manifest.json   who, where, which broker, certificate serial and expiry, file modes
    SHA256SUMS      sha256sum -c format over every other file (install.sh checks it)
    agent.toml      -> /etc/roadside/agent.toml
    tls/ca.crt      -> /etc/roadside/tls/ca.crt      the station CA (verifies the broker)
    tls/device.crt  -> /etc/roadside/tls/device.crt
    tls/device.key  -> /etc/roadside/tls/device.key  (0600)
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from roadside.errors import ProvisionError

from .agent_toml import (
    Broker,
    check_agent_toml,
    check_site,
    render_agent_toml,
)
from .ca import STATION_CA, ProjectCA, cert_pem, key_pem, new_key
from .files import write_atomic
from .identity import check_device_id

BUNDLE_FORMAT = "roadside-bundle/1"
BUNDLE_SUFFIX = ".bundle.tar.gz"
# Archive path -> mode; install.sh applies the same modes on the box.
FILE_MODES = {
    "agent.toml": 0o644,
    "tls/ca.crt": 0o644,
    "tls/device.crt": 0o644,
    "tls/device.key": 0o600,
}


@dataclass(frozen=True)
class DeviceRequest:
    """What the technician says about the box being prepared."""

    name: str
    site: str
    location: tuple[float, float]
    broker: Broker
    camera: str = "picamera2"
    status_led: int | None = None


@dataclass
class Bundle:
    """A bundle read back: its manifest and its files (archive path -> bytes)."""

    manifest: dict
    files: dict[str, bytes]

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.files["tls/device.crt"])


def bundle_path(out_dir: Path, name: str) -> Path:
    return Path(out_dir) / f"{name}{BUNDLE_SUFFIX}"


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes, mode: int, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    info.mtime = int(mtime)
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    tar.addfile(info, io.BytesIO(data))


def make_bundle(
    ca: ProjectCA, req: DeviceRequest, out_dir: Path, days: int = 3650, replace: bool = False
) -> Path:
    """Issue the box's certificate and write ``<out_dir>/<name>.bundle.tar.gz`` (0600)."""
    check_device_id(req.name)
    site = check_site(req.site)
    toml = render_agent_toml(req.name, req.broker, req.camera, site, req.location, req.status_led)
    check_agent_toml(toml)  # before signing anything: a bad camera or broker costs no serial
    key: ec.EllipticCurvePrivateKey = new_key()
    cert = ca.issue_device(req.name, key.public_key(), days=days, replace=replace)
    files = {
        "agent.toml": toml.encode("utf-8"),
        "tls/ca.crt": ca.cert_pem(STATION_CA),
        "tls/device.crt": cert_pem(cert),
        "tls/device.key": key_pem(key),
    }
    manifest = {
        "format": BUNDLE_FORMAT,
        "device": req.name,
        "site": site,
        "location": {"lat": req.location[0], "lon": req.location[1]},
        "camera": req.camera,
        "broker": str(req.broker),
        "certificate": {
            "serial": f"{cert.serial_number:x}",
            "not_after": cert.not_valid_after_utc.isoformat(),
            "sha256": cert.fingerprint(hashes.SHA256()).hex(),
        },
        "created": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "files": {p: {"mode": f"{m:04o}"} for p, m in FILE_MODES.items()},
    }
    files["manifest.json"] = (json.dumps(manifest, indent=2) + "\n").encode("utf-8")
    sums = "".join(f"{hashlib.sha256(d).hexdigest()}  {p}\n" for p, d in sorted(files.items()))
    buf = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for d in ("tls",):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, int(now)
            tar.addfile(info)
        for p in ("manifest.json", "SHA256SUMS", *FILE_MODES):
            data = sums.encode() if p == "SHA256SUMS" else files[p]
            _tar_add(tar, p, data, FILE_MODES.get(p, 0o644), now)
    return write_atomic(bundle_path(out_dir, req.name), buf.getvalue(), 0o600)


def read_bundle(path: Path) -> Bundle:
    """Open a bundle and check every file against SHA256SUMS (catches a corrupt SD card)."""
    files: dict[str, bytes] = {}
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            for m in tar.getmembers():
                if m.isfile():
                    f = tar.extractfile(m)
                    assert f is not None
                    files[m.name] = f.read()
    except (OSError, tarfile.TarError) as exc:
        raise ProvisionError(f"cannot read bundle {path}: {exc}") from None
    sums = files.get("SHA256SUMS", b"").decode()
    listed = {}
    for line in sums.splitlines():
        digest, _, name = line.partition("  ")
        listed[name] = digest
    for name, digest in listed.items():
        if name not in files or hashlib.sha256(files[name]).hexdigest() != digest:
            raise ProvisionError(f"bundle {path} is damaged: {name} does not match SHA256SUMS")
    if not listed or set(files) - {"SHA256SUMS"} != set(listed):
        raise ProvisionError(f"bundle {path} is damaged: SHA256SUMS does not list every file")
    manifest = json.loads(files["manifest.json"])
    if manifest.get("format") != BUNDLE_FORMAT:
        raise ProvisionError(f"{path}: not a {BUNDLE_FORMAT} bundle")
    return Bundle(manifest, files)
