"""Schema version 5: each box's desired config (``roadside fleet config set``).

One row per box: the last config sent to it, redacted, its hash and its request (whose audit
row says how it ended). Frozen like every migration: later changes are new migrations.
"""

from __future__ import annotations

import sqlalchemy as sa

DESCRIPTION = "fleet_config: the desired config of each box"


def upgrade(conn: sa.Connection) -> None:
    metadata = sa.MetaData()
    sa.Table(
        "fleet_config",
        metadata,
        sa.Column("device", sa.String(63), primary_key=True),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(16), nullable=False),
        sa.Column("doc", sa.JSON, nullable=False),
        sa.Column("requester", sa.String(128), nullable=False),
        sa.Column("at", sa.Double, nullable=False),
    )
    metadata.create_all(conn)
