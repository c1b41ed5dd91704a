"""Is the wall clock right, and did it just jump?

A Raspberry Pi has no real-time clock: it boots with a wrong wall clock (the epoch, or the
time of the last shutdown) and jumps when NTP first synchronises. Footage is labelled with
wall times, so the recorder needs two answers:

* ``clock_synchronised()``: does the kernel (and systemd-timesyncd, chrony or ntpd behind it)
  consider the clock synchronised? Recorded with every segment.
* ``WallAnchor``: within one run, labels come from the monotonic clock plus one offset
  (wall - monotonic); when that offset moves by more than ``jump_s`` the clock was stepped,
  and the recorder starts a new segment so no segment straddles the step.

The monotonic clock counts from boot, so ``boot_id()`` names its domain: a segment from this
boot can be relabelled exactly once the clock is known to be right (``mono + offset``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

TIMESYNCD_FLAG = Path("/run/systemd/timesync/synchronized")
BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised
STA_UNSYNC = 0x0040

ClockProbe = Callable[[], bool]


class _Timex(ctypes.Structure):
    """The head of ``struct timex`` (linux/timex.h); the tail is room the kernel may fill."""

    _fields_ = (
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("_tail", ctypes.c_byte * 256),
    )


def _adjtimex_synchronised() -> bool | None:
    """The kernel's view (what ``timedatectl``'s NTPSynchronized reads); None if unknown."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        tx = _Timex()  # modes = 0: read only, no privilege needed
        state = libc.adjtimex(ctypes.byref(tx))
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return state != TIME_ERROR and not tx.status & STA_UNSYNC


def clock_state() -> bool | None:
    """Whether the wall clock is synchronised (NTP, chrony, timesyncd or PTP); None if unknown.

    timesyncd's flag file is taken as a yes; otherwise the kernel's adjtimex state decides.
    """
    if TIMESYNCD_FLAG.exists():
        return True
    return _adjtimex_synchronised()


def clock_synchronised() -> bool:
    """``clock_state`` where unknown counts as not synchronised: footage is then doubtful."""
    return bool(clock_state())


def boot_id() -> str:
    """A short id of this boot: the domain in which monotonic times can be compared."""
    try:
        return BOOT_ID.read_text().strip().replace("-", "")[:8]
    except OSError:
        return "00000000"


class ClockWatch:
    """Asks ``probe`` whether the clock is synchronised, at most every ``every_s`` seconds,
    and remembers since when (``monotonic``), so that pictures taken before the sync but
    handled after it are not taken for synchronised ones.

    ``probe`` and ``monotonic`` are the seams tests replace (the real probe reads the kernel).
    Not shared between threads: the recorder and the pipeline each keep their own.
    """

    def __init__(
        self,
        probe: ClockProbe = clock_synchronised,
        every_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.probe = probe
        self.every_s = every_s
        self.monotonic = monotonic
        self.boot = boot_id()
        # Synchronised already when we start: every picture we will see counts as synced.
        self._since: float | None = float("-inf") if probe() else None
        self._checked = monotonic()

    @property
    def synced(self) -> bool:
        """Is the clock synchronised now?"""
        now = self.monotonic()
        if now - self._checked >= self.every_s:
            self._checked = now
            if not self.probe():
                self._since = None
            elif self._since is None:
                self._since = now
        return self._since is not None

    def synced_at(self, mono: float) -> bool:
        """Was the clock synchronised when the picture taken at ``mono`` was taken?"""
        return self.synced and self._since is not None and mono >= self._since

    def refresh(self) -> bool:
        self._checked = self.monotonic() - self.every_s
        return self.synced


@dataclass(frozen=True)
class ClockStep:
    """The wall clock moved by ``step_s`` (positive: forward) relative to the monotonic one."""

    step_s: float
    old_offset: float
    new_offset: float


class WallAnchor:
    """The offset wall - monotonic for the current run, and the steps it takes.

    ``observe(wall, mono)`` is fed capture times; it returns a ``ClockStep`` when the offset
    moved by more than ``jump_s`` (a stepped clock: NTP's first sync, a manual change) and
    adopts the new offset. Slow slewing below ``jump_s`` is ignored: labels stay continuous.
    """

    def __init__(self, jump_s: float = 1.0) -> None:
        self.jump_s = jump_s
        self.offset: float | None = None

    def observe(self, wall: float, mono: float) -> ClockStep | None:
        offset = wall - mono
        if self.offset is None:
            self.offset = offset
            return None
        if abs(offset - self.offset) <= self.jump_s:
            return None
        step = ClockStep(offset - self.offset, self.offset, offset)
        self.offset = offset
        return step

    def wall(self, mono: float) -> float:
        """The wall time of a monotonic instant, by the current offset."""
        if self.offset is None:
            self.offset = time.time() - time.monotonic()
        return mono + self.offset

    def mono(self, wall: float) -> float:
        if self.offset is None:
            self.offset = time.time() - time.monotonic()
        return wall - self.offset
