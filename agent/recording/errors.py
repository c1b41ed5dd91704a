"""Errors of the recordings: each says what went wrong and what the box does hold.

``code`` is the reason code a station reply carries (``roadside.wire.commands.ErrorCode``).
"""

from __future__ import annotations

from datetime import datetime

from roadside.errors import RoadsideError, UsageError
from roadside.wire.commands import ErrorCode


def when(t: float) -> str:
    """A wall time for people: local time with its UTC offset, to the second."""
    return datetime.fromtimestamp(t).astimezone().isoformat(sep=" ", timespec="seconds")


class RecordingError(RoadsideError):
    """A recording cannot be read, cut or written as asked."""

    code = ErrorCode.FAILED


class BadRangeError(RecordingError, UsageError):
    """The range asked for is not a range."""

    code = ErrorCode.BAD_PARAMS


class NoFootageError(RecordingError):
    """Nothing was recorded in the range asked for; the message states what is retained."""

    code = ErrorCode.OUT_OF_RANGE

    def __init__(
        self, start: float, end: float, retained: tuple[float, float] | None, ranges: int = 0
    ) -> None:
        self.start, self.end, self.retained = start, end, retained
        asked = f"no footage between {when(start)} and {when(end)}"
        if retained is None:
            held = "this box holds no recordings"
        else:
            held = (
                f"this box holds {when(retained[0])} to {when(retained[1])} "
                f"({ranges} range{'s' if ranges != 1 else ''}; "
                "`roadside agent recordings` lists them)"
            )
        super().__init__(f"{asked}: {held}")
