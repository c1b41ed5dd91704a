"""Releases: the project's wheels for one Python and architecture, with a signed manifest.

A release file is an uncompressed tar (wheels are zip files already) of

- ``release.json``: the manifest (version, python, machine, and name, size and sha256 of
  every wheel), compact JSON;
- ``release.sig``: the Ed25519 signature of exactly those ``release.json`` bytes, made with
  the station's release key (``roadside provision release-key``, never the device CA);
- ``wheels/<name>.whl``: the wheels, each listed in the manifest.

A box trusts one public key. ``open_release`` checks the signature before it reads anything
else from the manifest, then that the release is for this box's Python and machine, then
unpacks the wheels, each checked against its sha256; any other member, a missing or extra
wheel, a link or a path outside ``wheels/`` refuses the whole release. Building and signing
is the station's (provisioning/release.py).
"""

from __future__ import annotations

import hashlib
import platform
import re
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from roadside.errors import RoadsideError
from roadside.wire.update import VERSION_PATTERN

MANIFEST = "release.json"
SIGNATURE = "release.sig"
WHEELS = "wheels"
MAX_MANIFEST_BYTES = 1 << 20
_WHEEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,200}\.whl$")


class ReleaseError(RoadsideError):
    """A release that must not be installed; the sentence says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code  # signature, sha256, platform, damaged


class ReleaseFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_WHEEL_NAME.pattern)
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class ReleaseManifest(BaseModel):
    """What a release holds and what it is for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str = Field(pattern=VERSION_PATTERN)
    python: str = Field(pattern=r"^3\.[0-9]{1,2}$", description="the interpreter, e.g. 3.11")
    machine: str = Field(pattern=r"^[a-z0-9_]{1,32}$", description="x86_64, aarch64 ...")
    created: float
    files: tuple[ReleaseFile, ...] = Field(min_length=1)

    def encode(self) -> bytes:
        return self.model_dump_json().encode()


def this_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"


def this_machine() -> str:
    """The architecture as wheels name it (``arm64`` is ``aarch64`` there)."""
    machine = platform.machine().lower()
    return {"arm64": "aarch64", "amd64": "x86_64"}.get(machine, machine)


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError) as exc:
        raise RoadsideError(f"release key {path}: cannot read it ({exc})") from None
    if not isinstance(key, Ed25519PublicKey):
        raise RoadsideError(f"release key {path}: not an Ed25519 public key")
    return key


@dataclass(frozen=True)
class Release:
    """A verified, unpacked release: its manifest and the folder holding its wheels."""

    manifest: ReleaseManifest
    wheels: Path


def read_manifest(path: Path, key: Ed25519PublicKey) -> ReleaseManifest:
    """The manifest of the release file at ``path``, once its signature is checked."""
    try:
        with tarfile.open(path, "r:") as tar:
            return _signed_manifest(tar, key)
    except (tarfile.TarError, OSError) as exc:
        raise ReleaseError("damaged", f"not a release file: {exc}") from None


def open_release(
    path: Path,
    key: Ed25519PublicKey,
    into: Path,
    python: str | None = None,
    machine: str | None = None,
) -> Release:
    """Check the release file at ``path`` and unpack its wheels into ``into`` (made anew)."""
    try:
        with tarfile.open(path, "r:") as tar:
            manifest = _signed_manifest(tar, key)
            _check_platform(manifest, python or this_python(), machine or this_machine())
            _unpack_wheels(tar, manifest, into)
    except (tarfile.TarError, OSError) as exc:
        raise ReleaseError("damaged", f"not a release file: {exc}") from None
    return Release(manifest, into)


def _member_bytes(tar: tarfile.TarFile, name: str, what: str) -> bytes:
    try:
        member = tar.getmember(name)
    except KeyError:
        raise ReleaseError("signature", f"the release has no {what} ({name})") from None
    if not member.isfile() or member.size > MAX_MANIFEST_BYTES:
        raise ReleaseError("damaged", f"the release's {name} is not a small regular file")
    fh = tar.extractfile(member)
    assert fh is not None
    return fh.read()


def _signed_manifest(tar: tarfile.TarFile, key: Ed25519PublicKey) -> ReleaseManifest:
    body = _member_bytes(tar, MANIFEST, "manifest")
    signature = _member_bytes(tar, SIGNATURE, "signature")
    try:
        key.verify(signature, body)
    except InvalidSignature:
        raise ReleaseError(
            "signature", "the release's signature does not match the station's release key"
        ) from None
    try:
        return ReleaseManifest.model_validate_json(body)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "(manifest)"
        why = f"the manifest is signed but wrong: {where}: {err['msg']}"
        raise ReleaseError("damaged", why) from None


def _check_platform(manifest: ReleaseManifest, python: str, machine: str) -> None:
    if (manifest.python, manifest.machine) != (python, machine):
        raise ReleaseError(
            "platform",
            f"release {manifest.version} is for Python {manifest.python} on {manifest.machine}; "
            f"this box runs Python {python} on {machine}",
        )


def _unpack_wheels(tar: tarfile.TarFile, manifest: ReleaseManifest, into: Path) -> None:
    listed = {f.name: f for f in manifest.files}
    into.mkdir(parents=True, exist_ok=False)
    seen: set[str] = set()
    for member in tar.getmembers():
        if member.name in (MANIFEST, SIGNATURE):
            continue
        folder, _, name = member.name.partition("/")
        if folder != WHEELS or name not in listed or not member.isfile() or name in seen:
            raise ReleaseError("damaged", f"the release holds {member.name!r}, not in its manifest")
        entry = listed[name]
        digest = _copy_out(tar, member, into / name)
        if member.size != entry.size or digest.hexdigest() != entry.sha256:
            raise ReleaseError("sha256", f"{name}: its sha256 does not match the manifest")
        seen.add(name)
    missing = sorted(set(listed) - seen)
    if missing:
        raise ReleaseError("damaged", f"the release lacks {missing[0]} (in its manifest)")


def _copy_out(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> hashlib._Hash:
    """Write one member to ``dest`` (a new file); the sha256 of what was written."""
    fh = tar.extractfile(member)
    assert fh is not None
    digest = hashlib.sha256()
    with open(dest, "xb") as out:
        while block := fh.read(1 << 20):
            digest.update(block)
            out.write(block)
    return digest
