"""Reading a box's reply to a command (``ReplyMsg``) into an audit-log update."""

from __future__ import annotations

from typing import Any

from roadside.agent.protocol import ReplyMsg
from roadside.central.store.batch import ReplyUpdate

AUDIT_STATE = {"progress": "working", "done": "done", "error": "error"}


def reply_result(msg: ReplyMsg) -> dict[str, Any]:
    """What the audit log keeps of a reply: the result, or the error, or the progress."""
    if msg.st == "done":
        out: dict[str, Any] = dict(msg.r or {})
    elif msg.st == "error":
        out = {"code": msg.code, "msg": msg.msg}
    else:
        out = {k: v for k, v in (("pg", msg.pg), ("msg", msg.msg)) if v is not None}
    if msg.xid:
        out["xid"] = msg.xid
    return out


def reply_update(payload: bytes, received: float) -> tuple[str, ReplyUpdate]:
    """(request id, update) for one reply message; raises ValidationError when malformed."""
    msg = ReplyMsg.decode(payload)
    detail = msg.msg if msg.st == "error" else None
    return msg.rq, ReplyUpdate(
        state=AUDIT_STATE[msg.st],
        result=reply_result(msg),
        detail=detail,
        at=received,
        final=msg.final,
    )
