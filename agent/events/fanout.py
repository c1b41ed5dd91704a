"""One door into the sinks for every producer: the pipeline and hardware alerts.

Events normally leave from the pipeline thread; a forced door is reported from gpiozero's
pin thread the moment it happens, even while the camera is stalled. ``SinkFanout`` hands each
message to the real sinks in their order under one lock, so the two never interleave inside a
sink.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from roadside.agent.events.sinks import Sink
from roadside.wire.messages import Message

log = logging.getLogger(__name__)


class SinkFanout:
    """A ``Sink`` over several sinks, safe to publish to from any thread.

    Threading: the pipeline thread and hardware alert threads call ``publish``; the lock is
    held for one message's fan-out. After ``close`` (end of the pipeline), late messages are
    logged as lost and counted in ``lost``, never silently dropped.
    """

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = tuple(sinks)
        self.lost = 0
        self._closed = False
        self._lock = threading.Lock()

    def publish(self, kind: str, msg: Message) -> None:
        with self._lock:
            if self._closed:
                self.lost += 1
                log.error("%s %s arrived after the sinks closed: lost", kind, msg.id)
                return
            for sink in self.sinks:
                sink.publish(kind, msg)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for sink in self.sinks:
                sink.close()
