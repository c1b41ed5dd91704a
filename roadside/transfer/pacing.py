"""The upload cap: a token bucket in bytes, so a slow link keeps room for events.

Pure: the caller passes the time. One bucket is shared by every transfer of a sender.
"""

from __future__ import annotations


class TokenBucket:
    """``kbps`` kbit/s with bursts up to ``burst`` bytes; a rate of 0 means no cap."""

    def __init__(self, kbps: float, burst: int, now: float) -> None:
        self.rate = kbps * 1000 / 8  # bytes per second
        self.burst = burst
        self.tokens = float(burst)
        self.at = now

    def take(self, n: int, now: float) -> bool:
        """Take ``n`` bytes now if there are enough; False means: not yet, ask again later."""
        if self.rate <= 0:
            return True
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= min(n, self.burst):
            self.tokens -= n
            return True
        return False
