"""Release slots on the box: one virtual environment per release, and two links.

Under ``<root>/opt/roadside`` (``root`` is ``/`` on a box, a temporary folder in tests)::

    releases/<version>/   a venv each; complete once it holds SLOT_MARK (written last)
    current -> releases/<version>   what systemd starts (ExecStart=/opt/roadside/current/...)
    stable  -> releases/<version>   the last release that proved healthy; the start guard
                                    runs from here, so a broken release cannot break it

Every change is one rename of a link or the last write of a marker, so a kill or a power cut
at any moment leaves the links on complete slots and at most one incomplete slot folder,
which ``recover`` removes at the next start.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from roadside.errors import RoadsideError

log = logging.getLogger(__name__)

OPT = Path("opt/roadside")
SLOT_MARK = ".roadside-slot.json"
PIP_TIMEOUT_S = 1800.0


class InstallError(RoadsideError):
    """A release could not be installed into its slot; the running release is untouched."""


class Slots:
    """The slots and links under ``root``; one process changes them at a time (the agent)."""

    def __init__(self, root: str | Path = "/") -> None:
        self.root = Path(root)
        self.opt = self.root / OPT
        self.releases = self.opt / "releases"
        self.current_link = self.opt / "current"
        self.stable_link = self.opt / "stable"

    # -- reading -------------------------------------------------------------------------
    def slot(self, version: str) -> Path:
        return self.releases / version

    def complete(self, version: str) -> bool:
        return (self.slot(version) / SLOT_MARK).is_file()

    def versions(self) -> list[str]:
        """Complete slots, oldest install first."""
        if not self.releases.is_dir():
            return []
        found = [p.name for p in self.releases.iterdir() if (p / SLOT_MARK).is_file()]
        return sorted(found, key=lambda v: self.slot(v).joinpath(SLOT_MARK).stat().st_mtime)

    def current(self) -> str | None:
        return self._target(self.current_link)

    def stable(self) -> str | None:
        return self._target(self.stable_link)

    def _target(self, link: Path) -> str | None:
        try:
            return Path(os.readlink(link)).name
        except OSError:
            return None

    # -- changing ------------------------------------------------------------------------
    def recover(self) -> list[str]:
        """After a crash: remove slot folders without their marker (an install cut short),
        and put a link that points at no complete slot back on the stable one."""
        removed: list[str] = []
        if self.releases.is_dir():
            for p in self.releases.iterdir():
                if p.is_dir() and not (p / SLOT_MARK).is_file():
                    shutil.rmtree(p, ignore_errors=True)
                    removed.append(p.name)
        for stale in self.opt.glob(".*.link-new"):
            stale.unlink(missing_ok=True)
        current, stable = self.current(), self.stable()
        if current is not None and not self.complete(current) and stable is not None:
            self.point(self.current_link, stable)
        if removed:
            log.warning("removed incomplete release slots: %s", ", ".join(removed))
        return removed

    def install(self, version: str, wheels: Path, python: str | None = None) -> Path:
        """Make slot ``version``: a venv with roadside==version from ``wheels``, offline."""
        if version in (self.current(), self.stable()):
            raise InstallError(f"release {version} is the one running or the stable one")
        slot = self.slot(version)
        if slot.exists():
            shutil.rmtree(slot)  # a slot of an earlier try (rolled back): made anew
        self.releases.mkdir(parents=True, exist_ok=True)
        base = python or _base_python()
        # System site packages: picamera2 and libcamera come from apt on a Pi, not from pip.
        _run([base, "-m", "venv", "--without-pip", "--system-site-packages", str(slot)], "venv")
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(slot / "bin" / "python"),
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-index",
                "--no-cache-dir",
                "--find-links",
                str(wheels),
                f"roadside=={version}",
            ],
            "pip install",
        )
        if not (slot / "bin" / "roadside").is_file():
            raise InstallError(f"release {version} installed no roadside command")
        os.sync()  # every file pip wrote is on the card before the slot counts as complete
        mark = {"version": version, "installed": time.time()}
        _write_synced(slot / SLOT_MARK, json.dumps(mark).encode())
        _sync_dir(self.releases)
        return slot

    def switch(self, version: str) -> None:
        """``current`` to ``version`` (a complete slot), in one rename."""
        self.point(self.current_link, version)

    def mark_stable(self, version: str) -> None:
        self.point(self.stable_link, version)

    def point(self, link: Path, version: str) -> None:
        if not self.complete(version):
            raise InstallError(f"release {version} has no complete slot")
        new = link.with_name(f".{link.name}.link-new")
        new.unlink(missing_ok=True)
        os.symlink(Path("releases") / version, new)
        os.replace(new, link)
        _sync_dir(link.parent)

    def prune(self, keep: int = 2) -> list[str]:
        """Remove old slots: keep ``current``, ``stable`` and the newest up to ``keep``."""
        keep_set = {v for v in (self.current(), self.stable()) if v}
        for version in reversed(self.versions()):
            if len(keep_set) >= keep:
                break
            keep_set.add(version)
        removed = [v for v in self.versions() if v not in keep_set]
        for version in removed:
            # Unmark first: a kill while the tree goes leaves an incomplete slot, not a broken
            # complete one, and recover() finishes the job.
            (self.slot(version) / SLOT_MARK).unlink(missing_ok=True)
            shutil.rmtree(self.slot(version), ignore_errors=True)
        return removed


def _base_python() -> str:
    """The interpreter new venvs are made from: the one under the running venv."""
    return getattr(sys, "_base_executable", None) or sys.executable


def _run(cmd: list[str], what: str) -> None:
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, check=False, timeout=PIP_TIMEOUT_S
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallError(f"{what} failed: {exc}") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise InstallError(f"{what} failed: {last}")


def _write_synced(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _sync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
