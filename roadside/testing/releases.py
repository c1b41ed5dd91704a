"""Releases for update tests: small synthetic ones (a made-up roadside wheel) and keys."""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from roadside.provisioning.release import build_release, create_release_key, open_release_key

PASSPHRASE = b"release passphrase for tests"


def release_key(folder: Path) -> tuple[Ed25519PrivateKey, Path]:
    """A release key in ``folder``; (private key, public key file)."""
    public = create_release_key(folder, PASSPHRASE)
    return open_release_key(folder, PASSPHRASE), public


def fake_wheel(wheelhouse: Path, version: str, main: str, filler: int = 0) -> Path:
    """A 'roadside' wheel whose ``roadside`` command runs ``main`` (Python source of a
    ``main()``); ``filler`` bytes of random data make it as large as a test needs."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    dist = f"roadside-{version}.dist-info"
    files = {
        "roadside/__init__.py": main,
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: roadside\nVersion: {version}\n",
        f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
        f"{dist}/entry_points.txt": "[console_scripts]\nroadside = roadside:main\n",
    }
    path = wheelhouse / f"roadside-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
        names = list(files)
        if filler:
            z.writestr("roadside/filler.bin", os.urandom(filler), zipfile.ZIP_STORED)
            names.append("roadside/filler.bin")
        z.writestr(f"{dist}/RECORD", "".join(f"{n},,\n" for n in [*names, f"{dist}/RECORD"]))
    return path


EXITS_AT_START = "import sys\n\ndef main():\n    print('broken release')\n    sys.exit(1)\n"
SAYS_HELLO = "def main():\n    print('roadside from the release')\n"


def slot_agent(version: str) -> str:
    """A ``main()`` that hands the slot's ``roadside`` command over to the box's real update
    client (roadside.testing.slotagent) as release ``version``, in the tests' interpreter."""
    return (
        "import os\nimport sys\n\n\ndef main():\n"
        f"    py = {sys.executable!r}\n"
        f"    os.execv(py, [py, '-m', 'roadside.testing.slotagent', {version!r}, *sys.argv[1:]])\n"
    )


def synthetic_release(
    work: Path, key: Ed25519PrivateKey, version: str, main: str = SAYS_HELLO, filler: int = 0
) -> Path:
    """A signed release of one made-up roadside wheel, in ``work``."""
    wheels = work / f"wheels-{version}"
    fake_wheel(wheels, version, main, filler)
    path, _manifest = build_release(wheels, key, work / "releases")
    return path
