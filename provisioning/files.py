"""Writing files so that a crash or a full disk never leaves half a key or half a CRL behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from roadside.errors import ProvisionError


def write_atomic(path: Path, data: bytes | str, mode: int = 0o644) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename.

    The temporary file gets ``mode`` before any byte is written, so a private key is never
    readable by others, not even for an instant.
    """
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as f:
                f.write(raw)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise ProvisionError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def read_bytes(path: Path, what: str) -> bytes:
    """Read a file the command needs, with a one-line error naming what it was for."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ProvisionError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise ProvisionError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
