"""Times as officers type them, and as the station shows them.

Accepted: ISO 8601 with an offset (``2024-05-01T10:14:00+07:00``, ``…Z``), a local date and
time (``2024-05-01 10:14``), a local time alone (``10:14``, the latest one not in the future),
``today 10:14`` / ``yesterday 10:14``, ``now``, and ``now-15m`` / ``15m ago``. Local means the
configured zone (default Asia/Ho_Chi_Minh), not the computer's.
"""

from __future__ import annotations

import re
import time
from datetime import date, datetime, timedelta, tzinfo

from roadside.errors import UsageError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|min|s|m|h|d)", re.IGNORECASE)
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?$")
_RELATIVE = re.compile(r"^now\s*-\s*(.+)$|^(.+?)\s+ago$", re.IGNORECASE)


class TimeInputError(UsageError):
    """A time or duration typed on the command line cannot be understood."""


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``10s``, ``2m``, ``1h30m``, ``500ms``."""
    s = text.strip()
    try:
        return float(s)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _DURATION.finditer(s):
        if s[pos : m.start()].strip():
            break
        total += float(m.group(1)) * _UNITS[m.group(2).lower()]
        pos = m.end()
    else:
        if pos and not s[pos:].strip():
            return total
    raise TimeInputError(f"{text!r} is not a duration; write e.g. 10s, 2m, 1h30m")


def _at_clock(day: date, clock: re.Match, zone: tzinfo) -> datetime:
    hh, mm, ss, frac = clock.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    try:
        return datetime(
            day.year, day.month, day.day, int(hh), int(mm), int(ss or 0), micro, tzinfo=zone
        )
    except ValueError:
        raise TimeInputError(f"{clock.string!r} is not a time of day (HH:MM or HH:MM:SS)") from None


def parse_time(text: str, zone: tzinfo, now: float | None = None) -> float:
    """Epoch seconds for a time typed by an officer (see the module docstring)."""
    s = " ".join(text.strip().split())
    now = time.time() if now is None else now
    today = datetime.fromtimestamp(now, zone).date()
    low = s.lower()
    if low == "now":
        return now
    rel = _RELATIVE.match(s)
    if rel:
        return now - parse_duration(rel.group(1) or rel.group(2))
    words = low.split(" ", 1)
    if words[0] in ("today", "yesterday") and len(words) == 2 and _CLOCK.match(words[1]):
        day = today - timedelta(days=1 if words[0] == "yesterday" else 0)
        return _at_clock(day, _CLOCK.match(words[1]), zone).timestamp()  # type: ignore[arg-type]
    clock = _CLOCK.match(s)
    if clock:
        when = _at_clock(today, clock, zone)
        if when.timestamp() > now + 60:  # "10:14" typed at 09:00 means yesterday's
            when = _at_clock(today - timedelta(days=1), clock, zone)
        return when.timestamp()
    try:
        parsed = datetime.fromisoformat(s)
    except ValueError:
        raise TimeInputError(
            f"{text!r} is not a time; write e.g. 2024-05-01T10:14:00+07:00, "
            "'2024-05-01 10:14', 10:14, 'yesterday 10:14', now or '15m ago'"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.timestamp()


def show_time(epoch: float | None, zone: tzinfo, with_date: bool = True) -> str:
    """A time for a table: local, to the second."""
    if epoch is None:
        return "-"
    fmt = "%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S"
    return datetime.fromtimestamp(epoch, zone).strftime(fmt)


def iso_time(epoch: float | None, zone: tzinfo) -> str | None:
    """A time for JSON output: ISO 8601 with the zone's offset, to the millisecond."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, zone).isoformat(timespec="milliseconds")


def show_age(seconds: float) -> str:
    """``4s``, ``3m``, ``2h05m``, ``3d04h``: how long ago, at a glance."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"
