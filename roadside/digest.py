"""File digests: model manifests, clip transfers and delivered clips all check by sha256."""

from __future__ import annotations

import hashlib
from pathlib import Path

BLOCK = 1 << 20  # read 1 MiB at a time: a Pi reads a clip without holding it in memory


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()
