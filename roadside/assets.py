"""Model and footage manifests, and fetching their files with a checked sha256.

A manifest (``models/*.toml`` for models, ``models/footage/*.toml`` for sample footage) names
each file, its public URL (optionally a member of a zip archive), its license and its sha256.
Weights and footage are never part of the project: they are fetched into a store folder,
either downloaded or copied from a local folder (``--from``), and checked on the way in.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import tomllib
import urllib.request
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from roadside.digest import sha256_file
from roadside.errors import AssetError, UnknownAssetError

ENV_STORE = "ROADSIDE_MODELS_DIR"
ENV_SHARED = "ROADSIDE_SHARED"
BOX_STORE = Path("/var/lib/roadside/models")


@dataclass(frozen=True)
class AssetFile:
    """One file of an asset: where it comes from and what its bytes must hash to."""

    role: str
    file: str
    sha256: str
    url: str
    member: str | None = None
    extra: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Manifest:
    """What the project knows of a model or a piece of footage without having its bytes."""

    name: str
    kind: str
    license: str
    description: str
    files: tuple[AssetFile, ...]
    family: str = ""
    input: dict = field(default_factory=dict, compare=False)

    def file(self, role: str) -> AssetFile:
        for f in self.files:
            if f.role == role:
                return f
        raise AssetError(f"manifest {self.name!r} has no {role!r} file")


_ROLES = ("weights", "labels", "video")


def _parse(text: str, origin: str) -> Manifest:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise AssetError(f"manifest {origin} is not valid TOML: {exc}") from None
    files = []
    for role in _ROLES:
        if role in data:
            spec = dict(data[role])
            files.append(
                AssetFile(
                    role=role,
                    file=spec.pop("file"),
                    sha256=spec.pop("sha256"),
                    url=spec.pop("url"),
                    member=spec.pop("member", None),
                    extra=spec,
                )
            )
    return Manifest(
        name=data["name"],
        kind=data["kind"],
        license=data.get("license", ""),
        description=data.get("description", ""),
        family=data.get("family", ""),
        input=data.get("input", {}),
        files=tuple(files),
    )


def manifests(kind: str = "model") -> dict[str, Manifest]:
    """Every shipped manifest of one kind (``model`` or ``footage``), by name."""
    pkg = "roadside.models" if kind == "model" else "roadside.models.footage"
    found: dict[str, Manifest] = {}
    for entry in resources.files(pkg).iterdir():
        if entry.name.endswith(".toml"):
            m = _parse(entry.read_text(encoding="utf-8"), entry.name)
            found[m.name] = m
    return dict(sorted(found.items()))


def manifest(name: str, kind: str = "model") -> Manifest:
    known = manifests(kind)
    if name not in known:
        raise UnknownAssetError(f"no {kind} named {name!r}; known: {', '.join(known) or 'none'}")
    return known[name]


def default_store() -> Path:
    """Where fetched files live: $ROADSIDE_MODELS_DIR, the box's data folder, or the user's."""
    if os.environ.get(ENV_STORE):
        return Path(os.environ[ENV_STORE])
    if BOX_STORE.is_dir() and os.access(BOX_STORE, os.W_OK):
        return BOX_STORE
    base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "roadside" / "models"


def default_source(kind: str) -> Path | None:
    """A local folder to copy from instead of downloading, from $ROADSIDE_SHARED."""
    shared = os.environ.get(ENV_SHARED)
    if not shared:
        return None
    return Path(shared) / ("models" if kind == "model" else "footage")


def verify(m: Manifest, store: Path) -> list[tuple[AssetFile, str]]:
    """Check every file of ``m`` in ``store``; returns (file, problem) pairs, empty when sound."""
    problems = []
    for f in m.files:
        path = store / f.file
        if not path.is_file():
            problems.append((f, f"missing: {path}"))
        elif (actual := sha256_file(path)) != f.sha256:
            problems.append(
                (f, f"sha256 mismatch: {path} is {actual[:12]}…, want {f.sha256[:12]}…")
            )
    return problems


def _download(url: str, timeout: float = 60.0) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.read()
    except OSError as exc:
        raise AssetError(
            f"cannot download {url}: {exc}; copy the files by hand and use --from DIR"
        ) from None


def _fetch_bytes(f: AssetFile, source: Path | None, cache: dict[str, bytes]) -> bytes:
    if source is not None:
        path = source / f.file
        if not path.is_file():
            raise AssetError(f"{path} not found (fetching {f.file} with --from {source})")
        return path.read_bytes()
    if f.url not in cache:
        cache[f.url] = _download(f.url)
    blob = cache[f.url]
    if f.member is None:
        return blob
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            return zf.read(f.member)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise AssetError(f"{f.url}: cannot read member {f.member!r}: {exc}") from None


def fetch(m: Manifest, store: Path, source: Path | None = None) -> list[Path]:
    """Bring every file of ``m`` into ``store``, verified; files already sound are kept."""
    store.mkdir(parents=True, exist_ok=True)
    cache: dict[str, bytes] = {}
    written = []
    for f in m.files:
        dest = store / f.file
        if dest.is_file() and sha256_file(dest) == f.sha256:
            written.append(dest)
            continue
        data = _fetch_bytes(f, source, cache)
        actual = hashlib.sha256(data).hexdigest()
        if actual != f.sha256:
            raise AssetError(
                f"{f.file}: sha256 is {actual}, the manifest wants {f.sha256}; refusing to install"
            )
        # Write beside the destination and rename, so a power cut never leaves half a model.
        with tempfile.NamedTemporaryFile(dir=store, delete=False, prefix=".fetch-") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp.name, dest)
        written.append(dest)
    return written
