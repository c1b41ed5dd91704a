"""The station's release key and signed releases (roadside/release.py says what a box checks).

The release key is an Ed25519 key of its own, in a folder of its own under a passphrase of
its own: it is not the device CA (whose key signs box certificates) nor the station CA. A
stolen box holds neither; a leaked device CA key cannot sign software, and a leaked release
key cannot make a box certificate. Boxes get only ``release.pub``.
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from roadside.errors import ProvisionError
from roadside.release import (
    MANIFEST,
    SIGNATURE,
    WHEELS,
    ReleaseFile,
    ReleaseManifest,
    this_machine,
    this_python,
)

from .ca import MIN_PASSPHRASE, REGISTRY_FILE
from .files import read_bytes, write_atomic

KEY_FILE = "release.key"
PUBLIC_FILE = "release.pub"
_PROJECT_WHEEL = re.compile(r"^roadside-([^-]+)-py3-none-any\.whl$")


def create_release_key(directory: Path, passphrase: bytes) -> Path:
    """A new release key in ``directory`` (private key encrypted, 0600; public key 0644)."""
    directory = Path(directory)
    if (directory / REGISTRY_FILE).exists():
        raise ProvisionError(
            f"{directory} is a CA folder: keep the release key in a folder of its own"
        )
    if (directory / KEY_FILE).exists():
        raise ProvisionError(f"{directory / KEY_FILE} exists already: one release key a station")
    if len(passphrase) < MIN_PASSPHRASE:
        raise ProvisionError(f"the passphrase needs at least {MIN_PASSPHRASE} characters")
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_atomic(directory / KEY_FILE, private, 0o600)
    write_atomic(directory / PUBLIC_FILE, public, 0o644)
    return directory / PUBLIC_FILE


def open_release_key(directory: Path, passphrase: bytes) -> Ed25519PrivateKey:
    raw = read_bytes(Path(directory) / KEY_FILE, "release key")
    try:
        key = serialization.load_pem_private_key(raw, passphrase)
    except (ValueError, TypeError):
        raise ProvisionError(
            f"cannot open {Path(directory) / KEY_FILE}: wrong passphrase or not a key"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ProvisionError(f"{Path(directory) / KEY_FILE} is not an Ed25519 release key")
    return key


def project_version(wheelhouse: Path) -> str:
    """The version of the one roadside wheel in ``wheelhouse``."""
    found = [
        m.group(1) for p in Path(wheelhouse).glob("*.whl") if (m := _PROJECT_WHEEL.match(p.name))
    ]
    if len(found) != 1:
        raise ProvisionError(
            f"{wheelhouse} must hold exactly one roadside wheel (found {len(found)})"
        )
    return found[0]


def build_release(
    wheelhouse: Path,
    key: Ed25519PrivateKey,
    out: Path,
    python: str | None = None,
    machine: str | None = None,
) -> tuple[Path, ReleaseManifest]:
    """Pack every wheel of ``wheelhouse`` with a signed manifest; the release file goes to
    ``out`` (a folder: named ``roadside-<version>.release``)."""
    wheels = sorted(Path(wheelhouse).glob("*.whl"))
    if not wheels:
        raise ProvisionError(f"no wheels in {wheelhouse}")
    files = tuple(
        ReleaseFile(name=p.name, size=p.stat().st_size, sha256=_sha256(p)) for p in wheels
    )
    manifest = ReleaseManifest(
        version=project_version(wheelhouse),
        python=python or this_python(),
        machine=machine or this_machine(),
        created=round(time.time(), 3),
        files=files,
    )
    body = manifest.encode()
    target = Path(out) / f"roadside-{manifest.version}.release"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    with tarfile.open(partial, "w:", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, MANIFEST, body)
        _add_bytes(tar, SIGNATURE, key.sign(body))
        for p in wheels:
            tar.add(p, arcname=f"{WHEELS}/{p.name}", recursive=False, filter=_plain)
    partial.replace(target)
    return target, manifest


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
    tar.addfile(info, io.BytesIO(data))


def _plain(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode = 0o644
    return info
