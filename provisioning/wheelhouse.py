"""An offline wheelhouse: the project and all its dependencies as files, for boxes with no network.

Built in the station (which has a network) with pip itself, then carried on the SD card;
``install.sh`` installs from it with ``pip install --no-index --find-links``, so a box on a
roadside never needs an index. ``--platform``/``--python-version`` let an x86 station PC fetch
the aarch64 wheels a Raspberry Pi needs (binary wheels only, since nothing is built for a
foreign platform).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from roadside.errors import RoadsideError


class WheelhouseError(RoadsideError):
    """pip could not build or collect the wheels (a failure, not a wrong argument)."""


PROJECT_ROOT = Path(__file__).resolve().parent.parent


def wheel_command(project: Path, out: Path, python: str = sys.executable) -> list[str]:
    """Step 1: build the project's own wheel (pure Python, fits every platform)."""
    return [python, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), str(project)]


def download_command(
    wheel: Path | str,
    out: Path,
    python: str = sys.executable,
    platforms: tuple[str, ...] = (),
    python_version: str | None = None,
    extras: str = "",
) -> list[str]:
    """Step 2: fetch every dependency of that wheel (by file path, so never a look-alike
    package named ``roadside`` from an index)."""
    cmd = [python, "-m", "pip", "download", "--dest", str(out)]
    if platforms or python_version:
        cmd += ["--only-binary=:all:", "--implementation", "cp"]
        for p in platforms:
            cmd += ["--platform", p]
        if python_version:
            cmd += ["--python-version", python_version]
    cmd.append(f"{wheel}{f'[{extras}]' if extras else ''}")
    return cmd


def _run(cmd: list[str]) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise WheelhouseError(f"cannot run pip: {exc}") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise WheelhouseError(f"`{' '.join(cmd[2:5])} ...` failed: {last}")


def build_wheelhouse(
    out: Path,
    project: Path = PROJECT_ROOT,
    platforms: tuple[str, ...] = (),
    python_version: str | None = None,
    extras: str = "",
) -> Path:
    """Run both steps; returns the project's wheel in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    before = set(out.glob("roadside-*.whl"))
    _run(wheel_command(project, out))
    wheels = sorted(set(out.glob("roadside-*.whl")) - before) or sorted(
        out.glob("roadside-*.whl"), key=lambda p: p.stat().st_mtime
    )
    if not wheels:
        raise WheelhouseError(f"pip built no roadside wheel in {out}")
    wheel = wheels[-1]
    _run(
        download_command(
            wheel, out, platforms=platforms, python_version=python_version, extras=extras
        )
    )
    return wheel
