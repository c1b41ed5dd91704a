"""Health readings of the box itself, from /proc and /sys: cheap, and absent when unavailable.

Every reader returns None when the box cannot tell (no thermal zone in a container, no Pi
firmware on a PC); the heartbeat leaves such readings out instead of inventing a value.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from roadside.agent.clock import clock_state

PROC = Path("/proc")
THERMAL = Path("/sys/class/thermal")
PI_THROTTLED = Path("/sys/devices/platform/soc/soc:firmware/get_throttled")
MIB = 1024 * 1024
_CPU_ZONE_TYPES = ("cpu", "soc", "x86_pkg_temp", "k10temp", "coretemp")

# Bits of the Raspberry Pi firmware's get_throttled word.
UNDER_VOLTAGE_NOW = 0x1
THROTTLED_NOW = 0x4
UNDER_VOLTAGE_SINCE_BOOT = 0x10000


@dataclass(frozen=True, slots=True)
class HostHealth:
    """One set of readings; None means "this box cannot tell"."""

    uptime_s: float | None
    load_1m: float | None
    cpu_temp_c: float | None
    throttled: int | None
    mem_used_mib: int | None
    mem_total_mib: int | None
    clock_synced: bool | None


def uptime_s() -> float | None:
    try:
        return float((PROC / "uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def load_1m() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def cpu_temp_c(thermal: Path = THERMAL) -> float | None:
    """The CPU's thermal zone (by type), else the first zone that reads; °C."""
    zones = sorted(thermal.glob("thermal_zone*")) if thermal.is_dir() else []

    def zone_type(zone: Path) -> str:
        try:
            return (zone / "type").read_text().strip().lower()
        except OSError:
            return ""

    ranked = sorted(zones, key=lambda z: not any(t in zone_type(z) for t in _CPU_ZONE_TYPES))
    for zone in ranked:
        try:
            return round(int((zone / "temp").read_text().strip()) / 1000.0, 1)
        except (OSError, ValueError):
            continue
    return None


def throttled(sysfs: Path = PI_THROTTLED) -> int | None:
    """The Pi firmware's throttling and under-voltage flags, from sysfs or ``vcgencmd``."""
    with contextlib.suppress(OSError, ValueError):
        return int(sysfs.read_text().strip(), 16)
    vcgencmd = shutil.which("vcgencmd")
    if vcgencmd is None:
        return None
    try:
        out = subprocess.run(
            [vcgencmd, "get_throttled"], capture_output=True, text=True, timeout=2, check=True
        ).stdout
        return int(out.strip().split("=", 1)[1], 16)  # "throttled=0x50005"
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def memory_mib(meminfo: Path = PROC / "meminfo") -> tuple[int, int] | None:
    """Memory in use (total minus available) and total, MiB."""
    try:
        fields = {}
        for line in meminfo.read_text().splitlines():
            name, _, rest = line.partition(":")
            fields[name] = int(rest.split()[0])  # kB
        total = fields["MemTotal"]
        used = total - fields.get("MemAvailable", fields.get("MemFree", 0))
        return used // 1024, total // 1024
    except (OSError, ValueError, KeyError, IndexError):
        return None


def disk_mib(path: str | os.PathLike) -> tuple[float, float] | None:
    """Used and free space of the filesystem holding ``path`` (the nearest existing parent)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        usage = shutil.disk_usage(p)
    except OSError:
        return None
    return round(usage.used / MIB, 1), round(usage.free / MIB, 1)


def tree_bytes(path: str | os.PathLike) -> int | None:
    """Bytes held by the files under ``path``; None when it does not exist."""
    root = Path(path)
    if not root.exists():
        return None
    total = 0
    stack = [root]
    while stack:
        with contextlib.suppress(OSError), os.scandir(stack.pop()) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
    return total


def read_host() -> HostHealth:
    """All host readings at once."""
    mem = memory_mib()
    return HostHealth(
        uptime_s=uptime_s(),
        load_1m=load_1m(),
        cpu_temp_c=cpu_temp_c(),
        throttled=throttled(),
        mem_used_mib=mem[0] if mem else None,
        mem_total_mib=mem[1] if mem else None,
        clock_synced=clock_state(),
    )
