"""Waiting in tests for what other threads and processes do: poll, never sleep blindly."""

from __future__ import annotations

import time
from collections.abc import Callable


def eventually(condition: Callable[[], object], timeout: float = 10.0) -> bool:
    """True as soon as ``condition()`` holds; its last answer after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return bool(condition())


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    """``eventually``, failing the test with ``what`` it was waiting for."""
    if not eventually(condition, timeout):
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")
