"""Schema version 3: officers' accounts, console sessions, and event indexes for its pages.

The events indexes end in ``id``: the console pages events newest first on (t0, id), and an
index in that order lets a page stop after 50 rows instead of sorting every match. The box
and class index serves the console's most common filter; the old (t0), (device, t0) and
(cls, t0) indexes are prefixes of the new ones and go.

Frozen like every released migration: later changes are new migrations.
"""

from __future__ import annotations

import sqlalchemy as sa

DESCRIPTION = "users, web sessions, event indexes for keyset pages (the officers' console)"


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
    for old in ("ix_events_t0", "ix_events_device_t0", "ix_events_cls_t0"):
        conn.execute(sa.text(f"DROP INDEX {old}"))
    for name, columns in (
        ("ix_events_t0_id", ("t0", "id")),
        ("ix_events_device_t0_id", ("device", "t0", "id")),
        ("ix_events_cls_t0_id", ("cls", "t0", "id")),
        ("ix_events_device_cls_t0_id", ("device", "cls", "t0", "id")),
    ):
        conn.execute(sa.text(f"CREATE INDEX {name} ON events ({', '.join(columns)})"))
