"""Replies to commands: progress while a job runs, then exactly one final answer.

Replies ride the uplink's durable outbox at the most urgent priority, so a reply made while
the link is down still arrives. Whether a final reply is sent is decided by the request log
(``RequestLog.finish``): the first final answer for a request wins, any later one is dropped.
A command the box could not take in at all gets one ``busy`` answer (``refuse``) that the log
does not keep, so the same request id asked again later runs.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from roadside.agent.commands.requests import Request, RequestLog
from roadside.ids import new_id
from roadside.wire.commands import ReplyMsg, ReplyState
from roadside.wire.messages import Message
from roadside.wire.topics import REPLY

log = logging.getLogger(__name__)

MSG_MAX = 500  # characters of a reply's sentence


class ReplyPort(Protocol):
    """The uplink as the replies use it (``Uplink``)."""

    @property
    def connected(self) -> bool: ...

    def publish(self, kind: str, msg: Message, priority: int | None = None) -> int: ...


class Replies:
    """Safe from any thread (the request log and the outbox lock for themselves)."""

    def __init__(self, uplink: ReplyPort, requests: RequestLog) -> None:
        self.uplink = uplink
        self.requests = requests
        self.finals = 0
        self.dropped_finals = 0

    def done(self, rq: str, result: dict[str, Any], xid: str | None = None) -> bool:
        return self._final(
            ReplyMsg(
                id=new_id(), request_id=rq, state=ReplyState.DONE, result=result, transfer_id=xid
            )
        )

    def error(self, rq: str, code: str, msg: str, xid: str | None = None) -> bool:
        log.info("request %s: %s: %s", rq, code, msg)
        return self._final(
            ReplyMsg(
                id=new_id(),
                request_id=rq,
                state=ReplyState.ERROR,
                code=code,
                detail=msg[:MSG_MAX],
                transfer_id=xid,
            )
        )

    def refuse(self, rq: str, code: str, msg: str) -> None:
        """A final error for a request the box did not take in (busy): not recorded, so a
        later request with the same id runs as new."""
        self._send(
            ReplyMsg(
                id=new_id(),
                request_id=rq,
                state=ReplyState.ERROR,
                code=code,
                detail=msg[:MSG_MAX],
            )
        )

    def progress(self, rq: str, pg: float | None, msg: str, xid: str | None = None) -> None:
        """A progress note; skipped while the link is down (only the present matters)."""
        if not self.uplink.connected:
            return
        pg = None if pg is None else round(min(1.0, max(0.0, pg)), 3)
        self._send(
            ReplyMsg(
                id=new_id(),
                request_id=rq,
                state=ReplyState.PROGRESS,
                progress=pg,
                detail=msg[:MSG_MAX],
                transfer_id=xid,
            )
        )

    def repeat(self, earlier: Request) -> None:
        """A request id seen before: its stored final reply again (same message id), or a
        note that it is still running."""
        if earlier.reply is not None:
            self._send(earlier.reply)
        else:
            self.progress(
                earlier.rq, None, "already running: this request id was seen before", earlier.xid
            )

    def _final(self, reply: ReplyMsg) -> bool:
        if not self.requests.finish(reply):
            self.dropped_finals += 1
            return False
        self.finals += 1
        self._send(reply)
        return True

    def _send(self, reply: ReplyMsg) -> None:
        self.uplink.publish(f"{REPLY}/{reply.request_id}", reply)
