"""Schema version 4: counting-line crossings from count messages, and the event's colour.

Frozen like every migration: later changes are new migrations.
"""

from __future__ import annotations

import sqlalchemy as sa

DESCRIPTION = "line crossings per count message; events.colour"


def upgrade(conn: sa.Connection) -> None:
    conn.execute(sa.text("ALTER TABLE events ADD COLUMN colour VARCHAR(12)"))
    metadata = sa.MetaData()
    sa.Table(
        "line_counts",
        metadata,
        sa.Column("count_id", sa.String(26), primary_key=True, doc="the count message"),
        sa.Column("line", sa.String(32), primary_key=True),
        sa.Column("cls", sa.String(32), primary_key=True),
        sa.Column("direction", sa.String(4), primary_key=True, doc="N, NE, … NW across the line"),
        sa.Column("device", sa.String(63), nullable=False),
        sa.Column("t0", sa.Double, nullable=False),
        sa.Column("t1", sa.Double, nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Index("ix_line_counts_device_t0", "device", "t0"),
    )
    metadata.create_all(conn)
