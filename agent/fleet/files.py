"""Replacing a file so that a power cut leaves the old one or the new one, never a mix.

Write a temporary file beside it, fsync it, rename it over the old one (atomic on POSIX),
fsync the folder so the rename itself is on the card.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

NEW_SUFFIX = ".new"  # the temporary file, beside its target


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes, mode: int | None = None) -> None:
    """Put ``data`` at ``path`` in one step; ``mode`` defaults to the old file's, else 0640."""
    if mode is None:
        try:
            mode = path.stat().st_mode & 0o777
        except FileNotFoundError:
            mode = 0o640
    tmp = path.with_name(path.name + NEW_SUFFIX)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # whatever the umask took away
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def remove_durably(path: Path) -> None:
    """Delete ``path`` (if there) and make the deletion survive a power cut."""
    try:
        path.unlink()
    except FileNotFoundError:
        return
    fsync_dir(path.parent)
