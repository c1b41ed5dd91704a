"""Reading a box's reply to a command (``ReplyMsg``) into an audit-log update."""

from __future__ import annotations

from typing import Any

from roadside.central.store.batch import ReplyUpdate
from roadside.wire.commands import ReplyMsg, ReplyState

AUDIT_STATE = {ReplyState.PROGRESS: "working", ReplyState.DONE: "done", ReplyState.ERROR: "error"}


def reply_result(msg: ReplyMsg) -> dict[str, Any]:
    """What the audit log keeps of a reply: the result, or the error, or the progress.

    Its keys are the reply's as the box sent them (``code``, ``msg``, ``pg``, ``xid``), the
    same as the keys of a box's own result.
    """
    if msg.state == ReplyState.DONE:
        out: dict[str, Any] = dict(msg.result or {})
    elif msg.state == ReplyState.ERROR:
        out = {"code": msg.code, "msg": msg.detail}
    else:
        out = {k: v for k, v in (("pg", msg.progress), ("msg", msg.detail)) if v is not None}
    if msg.transfer_id:
        out["xid"] = msg.transfer_id
    return out


def reply_update(payload: bytes, received: float) -> tuple[str, ReplyUpdate]:
    """(request id, update) for one reply message; raises ValidationError when malformed."""
    msg = ReplyMsg.decode(payload)
    detail = msg.detail if msg.state == ReplyState.ERROR else None
    return msg.request_id, ReplyUpdate(
        state=AUDIT_STATE[msg.state],
        result=reply_result(msg),
        detail=detail,
        at=received,
        final=msg.final,
    )
