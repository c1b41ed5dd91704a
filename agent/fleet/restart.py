"""Asking the running agent to stop and be started again, to apply (or undo) a config.

The agent leaves with ``ExitCode.RESTART``; systemd starts it again (the unit's
``RestartForceExitStatus``, after ``RestartSec``), and every section of the new config applies
the same way as at boot: no part of the box has a reload path of its own to get wrong.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class RestartRequest:
    """Set by whoever needs a restart; ``stop`` is the pipeline's stop event."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop
        self.asked = False
        self.why = ""

    def ask(self, why: str) -> None:
        self.why, self.asked = why, True
        log.warning("restarting the agent: %s", why)
        self._stop.set()
