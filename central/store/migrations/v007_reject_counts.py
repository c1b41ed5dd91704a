"""Schema version 7: rejects bound per box: the box of each kept reject, and a count per box.

``rejects.device`` names the box whose topic the message came on ('' when the topic names no
box provisioning would make); ``reject_counts`` holds every box's total, first and last
reject, also of those no longer kept. Rows already stored get their device from their topic,
and their box's count. Frozen like every migration: later changes are new migrations.
"""

from __future__ import annotations

import re
from collections import defaultdict

import sqlalchemy as sa

DESCRIPTION = "rejects.device and reject_counts: rejects kept per box, the rest counted"

_DEVICE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")  # a box's name, as provisioning makes them
_CHUNK = 5000


def _device(topic: str) -> str:
    parts = topic.split("/")
    if len(parts) < 4 or parts[:2] != ["roadside", "v1"] or not _DEVICE.match(parts[2]):
        return ""
    return parts[2]


def upgrade(conn: sa.Connection) -> None:
    conn.execute(sa.text("ALTER TABLE rejects ADD COLUMN device VARCHAR(63)"))
    conn.execute(sa.text("CREATE INDEX ix_rejects_device_seq ON rejects (device, seq)"))
    metadata = sa.MetaData()
    counts = sa.Table(
        "reject_counts",
        metadata,
        sa.Column("device", sa.String(63), primary_key=True),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.Column("first_at", sa.Double, nullable=False),
        sa.Column("last_at", sa.Double, nullable=False),
    )
    metadata.create_all(conn)
    seen: dict[str, list[float]] = defaultdict(lambda: [0, float("inf"), float("-inf")])
    last = -1
    while True:
        rows = conn.execute(
            sa.text(
                "SELECT seq, topic, received FROM rejects WHERE seq > :last ORDER BY seq LIMIT :n"
            ),
            {"last": last, "n": _CHUNK},
        ).all()
        if not rows:
            break
        updates = []
        for seq, topic, received in rows:
            device = _device(topic)
            updates.append({"s": seq, "d": device})
            tally = seen[device]
            tally[0] += 1
            tally[1], tally[2] = min(tally[1], received), max(tally[2], received)
        conn.execute(sa.text("UPDATE rejects SET device = :d WHERE seq = :s"), updates)
        last = rows[-1][0]
    if seen:
        conn.execute(
            counts.insert(),
            [
                {"device": d, "total": int(n), "first_at": first, "last_at": latest}
                for d, (n, first, latest) in sorted(seen.items())
            ],
        )
