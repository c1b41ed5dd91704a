"""Schema version 2: officers' accounts and console sessions.

Frozen like every released migration: later changes are new migrations.
"""

from __future__ import annotations

import sqlalchemy as sa

DESCRIPTION = "users and web sessions (the officers' console)"


def upgrade(conn: sa.Connection) -> None:
    metadata = sa.MetaData()
    sa.Table(
        "users",
        metadata,
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created", sa.Double, nullable=False),
        sa.Column("changed", sa.Double, nullable=False),
    )
    sa.Table(
        "web_sessions",
        metadata,
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("user", sa.String(32), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created", sa.Double, nullable=False),
        sa.Column("expires", sa.Double, nullable=False),
        sa.Index("ix_web_sessions_user", "user"),
    )
    metadata.create_all(conn)
