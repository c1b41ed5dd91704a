"""What the station last asked each box to run: the desired config, one row per box.

The row names its request; the request's audit row says how it ended (the box's final reply
closes it, whoever sees the reply first), so the outcome is kept in one place only.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa

from roadside.central.store import tables as T


def record(
    engine: sa.Engine, device: str, request_id: str, hash_: str, doc: dict[str, Any], who: str
) -> None:
    """Make ``doc`` (redacted) the desired config of ``device``."""
    values = {"request_id": request_id, "hash": hash_, "doc": doc, "requester": who}
    with engine.begin() as conn:
        done = conn.execute(
            T.fleet_config.update()
            .where(T.fleet_config.c.device == device)
            .values(**values, at=time.time())
        )
        if done.rowcount == 0:
            conn.execute(T.fleet_config.insert().values(device=device, **values, at=time.time()))


def desired(conn: sa.Connection) -> dict[str, dict[str, Any]]:
    """Every box's desired config row with its request's audit state, by device."""
    f, a = T.fleet_config.c, T.audit.c
    q = sa.select(
        f.device,
        f.request_id,
        f.hash,
        f.requester,
        f.at,
        a.state,
        a.result,
        a.detail,
    ).select_from(T.fleet_config.outerjoin(T.audit, a.id == f.request_id))
    return {r["device"]: dict(r) for r in conn.execute(q).mappings()}
