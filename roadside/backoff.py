"""Retry waits for every retry loop: exponential, capped, with jitter, so a district's boxes
do not all return to the broker in the same second after it comes back."""

from __future__ import annotations

import random


class Backoff:
    """Waits of ``min_s``, doubling up to ``max_s``, each drawn from [half, full] of its step.

    Not thread-safe: one connection supervisor owns it.
    """

    def __init__(self, min_s: float, max_s: float, rng: random.Random | None = None) -> None:
        if not 0 < min_s <= max_s:
            raise ValueError(f"backoff needs 0 < min_s <= max_s, got {min_s} and {max_s}")
        self.min_s = min_s
        self.max_s = max_s
        self.attempts = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        """The wait before the next attempt, in seconds."""
        step = min(self.max_s, self.min_s * 2 ** min(self.attempts, 62))
        self.attempts += 1
        return self._rng.uniform(step / 2, step)

    def reset(self) -> None:
        """The link is up again: the next failure starts from ``min_s``."""
        self.attempts = 0
