"""Message ids that are unique across restarts and sort by time: ULIDs.

48 bits of milliseconds since the epoch and 80 random bits, in Crockford base32 (26 characters).
Within one process the ids are strictly increasing even when the clock stalls or steps back,
and the random part makes a clash with another boot, or another box, negligible.
"""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _encode(value: int) -> str:
    out = []
    for _ in range(26):
        out.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(out))


class UlidFactory:
    """Hands out ULIDs; safe to call from any thread (one lock around the last value)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last = 0

    def new(self, at: float | None = None) -> str:
        ms = int((time.time() if at is None else at) * 1000) & ((1 << 48) - 1)
        value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
        with self._lock:
            if value <= self._last:
                value = self._last + 1
            self._last = value
        return _encode(value)


_default = UlidFactory()


def new_id(at: float | None = None) -> str:
    return _default.new(at)


def ulid_time(ulid: str) -> float:
    """The creation time (epoch seconds) a ULID carries."""
    value = 0
    for ch in ulid[:10]:
        value = value * 32 + _ALPHABET.index(ch)
    return value / 1000.0
