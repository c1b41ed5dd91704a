"""Schema version 6: signed evidence with each received file, and the files boxes were asked for.

``clips.evidence`` keeps the box's signed manifest (the same as the ``.evidence.json`` beside
the file); ``asked_files`` lists every clip and snapshot request sent to a box, audited or
not (live view pictures), so the receiver takes only what was asked for. Frozen like every
migration: later changes are new migrations.
"""

from __future__ import annotations

import sqlalchemy as sa

DESCRIPTION = "clips.evidence and asked_files: signed uploads, and only asked ones"


def upgrade(conn: sa.Connection) -> None:
    conn.execute(sa.text("ALTER TABLE clips ADD COLUMN evidence JSON"))
    metadata = sa.MetaData()
    sa.Table(
        "asked_files",
        metadata,
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("device", sa.String(63), nullable=False),
        sa.Column("command", sa.String(16), nullable=False),
        sa.Column("at", sa.Double, nullable=False),
    )
    metadata.create_all(conn)
