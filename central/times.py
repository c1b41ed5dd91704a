"""Times as officers type them, and as the station shows them: one parser for the console's
forms and the officer command line.

Accepted: ISO 8601 with an offset (``2024-05-01T10:14:00+07:00``, ``…Z``), a local date and
time (``2024-05-01 10:14``, or day first as Vietnamese write it: ``01/12/2026 14:05``,
``1/12/2026``), a local time alone (``10:14``, the latest one not in the future),
``today 10:14`` / ``yesterday 10:14`` (``hôm nay 14:05`` / ``hôm qua 14:05``), ``now``
(``bây giờ``), and ``now-15m`` / ``15m ago`` (``2 giờ trước``, ``30 phút trước``). Local means
the configured zone (default Asia/Ho_Chi_Minh), not the computer's.
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, date, datetime, timedelta, tzinfo

from roadside.central.i18n import _
from roadside.errors import UsageError

_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "giây": 1.0,
    "phút": 60.0,
    "giờ": 3600.0,
    "tiếng": 3600.0,
    "ngày": 86400.0,
}
_DURATION = re.compile(
    r"(\d+(?:\.\d+)?)\s*(giây|phút|giờ|tiếng|ngày|ms|min|s|m|h|d)", re.IGNORECASE
)
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?$")
_RELATIVE = re.compile(r"^now\s*-\s*(.+)$|^(.+?)\s+(?:ago|trước)$", re.IGNORECASE)
_DAY_FIRST = re.compile(r"^(\d{1,2})/(\d{1,2})/(\d{4})(?:\s+(.+))?$")
_NOW = ("now", "bây giờ")
_DAY_WORDS = {"today": 0, "yesterday": 1, "hôm nay": 0, "hôm qua": 1}


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
    raise TimeInputError(
        _("%(text)s is not a duration; write e.g. 10s, 2m, 1h30m") % {"text": repr(text)}
    )


def _at_clock(day: date, clock: re.Match, zone: tzinfo) -> datetime:
    hh, mm, ss, frac = clock.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    try:
        return datetime(
            day.year, day.month, day.day, int(hh), int(mm), int(ss or 0), micro, tzinfo=zone
        )
    except ValueError:
        raise TimeInputError(
            _("%(text)s is not a time of day (HH:MM or HH:MM:SS)") % {"text": repr(clock.string)}
        ) from None


def _day_first(match: re.Match, text: str, zone: tzinfo) -> float:
    """``01/12/2026`` (midnight) or ``01/12/2026 14:05``: day, month, year."""
    dd, mm, yyyy, clock_text = match.groups()
    try:
        day = date(int(yyyy), int(mm), int(dd))
    except ValueError:
        raise TimeInputError(
            _("%(text)s is not a date (day/month/year)") % {"text": repr(text)}
        ) from None
    if clock_text is None:
        return datetime(day.year, day.month, day.day, tzinfo=zone).timestamp()
    clock = _CLOCK.match(clock_text)
    if clock is None:
        raise TimeInputError(
            _("%(text)s is not a time of day (HH:MM or HH:MM:SS)") % {"text": repr(clock_text)}
        )
    return _at_clock(day, clock, zone).timestamp()


def _named_day(low: str, today: date, zone: tzinfo) -> float | None:
    """``yesterday 10:14``, ``hôm qua 14:05``: a day word, then a time of day."""
    for word, back in _DAY_WORDS.items():
        if low.startswith(word + " "):
            clock = _CLOCK.match(low[len(word) + 1 :])
            if clock:
                return _at_clock(today - timedelta(days=back), clock, zone).timestamp()
    return None


def parse_time(text: str, zone: tzinfo, now: float | None = None) -> float:
    """Epoch seconds for a time typed by an officer (see the module docstring)."""
    s = " ".join(text.strip().split())
    now = time.time() if now is None else now
    today = datetime.fromtimestamp(now, zone).date()
    low = s.lower()
    if low in _NOW:
        return now
    rel = _RELATIVE.match(s)
    if rel:
        return now - parse_duration(rel.group(1) or rel.group(2))
    named = _named_day(low, today, zone)
    if named is not None:
        return named
    day_first = _DAY_FIRST.match(s)
    if day_first:
        return _day_first(day_first, text, zone)
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
            _(
                "%(text)s is not a time; write e.g. 14:05, 'yesterday 14:05', '01/12/2026 "
                "14:05', '2h ago', now or 2024-05-01T10:14:00+07:00"
            )
            % {"text": repr(text)}
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.timestamp()


UNSHOWABLE = "?"  # a stored time no calendar holds (inf, NaN, the year 10000 and later)


def _local(epoch: object, zone: tzinfo) -> datetime | None:
    """The stored time as a local datetime, or None when it is not one (a box's bad clock or
    a hostile message stored as is must not stop a listing)."""
    if isinstance(epoch, bool) or not isinstance(epoch, int | float):
        return None
    try:
        return datetime.fromtimestamp(epoch, zone)
    except (OverflowError, ValueError, OSError):
        return None


def is_time(epoch: object) -> bool:
    """Whether a stored value is a time a calendar holds (not inf, NaN, text or year 10000)."""
    return _local(epoch, UTC) is not None


def show_time(epoch: float | None, zone: tzinfo, with_date: bool = True) -> str:
    """A time for a table: local, to the second; ``?`` for one that is not a time."""
    if epoch is None:
        return "-"
    local = _local(epoch, zone)
    if local is None:
        return UNSHOWABLE
    return local.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S")


def iso_time(epoch: float | None, zone: tzinfo) -> str | None:
    """A time for JSON output: ISO 8601 with the zone's offset, to the millisecond; None for
    none and for one that is not a time."""
    local = None if epoch is None else _local(epoch, zone)
    return None if local is None else local.isoformat(timespec="milliseconds")


def show_age(seconds: float) -> str:
    """``4s``, ``3m``, ``2h05m``, ``3d04h``: how long ago, at a glance; ``?`` when unknown."""
    if not math.isfinite(seconds):
        return UNSHOWABLE
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 86400}d{(s % 86400) // 3600:02d}h"
