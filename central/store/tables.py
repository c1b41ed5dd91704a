"""The station's tables as the code reads and writes them today (SQLAlchemy Core).

The database gets them through the versioned migrations in ``migrations.py``; a test checks
that a freshly migrated database matches these definitions, so the two cannot drift apart.
Times are epoch seconds (double precision); ids are the boxes' ULIDs.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

ID = sa.String(26)
DEVICE = sa.String(63)

devices = sa.Table(
    "devices",
    metadata,
    sa.Column("device", DEVICE, primary_key=True),
    sa.Column("first_seen", sa.Double, nullable=False),
    sa.Column(
        "last_seen", sa.Double, nullable=False, doc="last message of any kind, station clock"
    ),
    sa.Column("online", sa.Boolean, nullable=True, doc="from the newest status message"),
    sa.Column("status_id", ID, nullable=True),
    sa.Column("status_at", sa.Double, nullable=True, doc="box clock"),
    sa.Column(
        "status_rx", sa.Double, nullable=True, doc="station clock: the status received last wins"
    ),
    sa.Column("status", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("health_id", ID, nullable=True),
    sa.Column("health_at", sa.Double, nullable=True, doc="box clock"),
    sa.Column("health", sa.JSON(none_as_null=True), nullable=True),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", ID, primary_key=True, doc="the event id, shared by its start and end"),
    sa.Column("device", DEVICE, nullable=False),
    sa.Column("phase", sa.String(1), nullable=False, doc="s: started (ongoing), e: ended"),
    sa.Column("cls", sa.String(32), nullable=False),
    sa.Column("score", sa.Double, nullable=False),
    sa.Column("t0", sa.Double, nullable=False),
    sa.Column("t1", sa.Double, nullable=False),
    sa.Column("box", sa.JSON, nullable=False),
    sa.Column("track", sa.Integer, nullable=False),
    sa.Column("direction", sa.String(4), nullable=True),
    sa.Column("zones", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("unsynced", sa.Boolean, nullable=False, doc="the box clock was not NTP-synced"),
    sa.Column("received", sa.Double, nullable=False, doc="first message, station clock"),
    sa.Column("updated", sa.Double, nullable=False, doc="last change, station clock"),
    sa.Column("colour", sa.String(12), nullable=True, doc="named colour at the best frame"),
    # (…, t0, id): pages newest first stop after a page's rows (migration 3)
    sa.Index("ix_events_t0_id", "t0", "id"),
    sa.Index("ix_events_device_t0_id", "device", "t0", "id"),
    sa.Index("ix_events_cls_t0_id", "cls", "t0", "id"),
    sa.Index("ix_events_device_cls_t0_id", "device", "cls", "t0", "id"),
)

counts = sa.Table(
    "counts",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("device", DEVICE, nullable=False),
    sa.Column("t0", sa.Double, nullable=False),
    sa.Column("t1", sa.Double, nullable=False),
    sa.Column("n", sa.JSON, nullable=False, doc="{class: objects confirmed}"),
    sa.Column("received", sa.Double, nullable=False),
    sa.Index("ix_counts_device_t0", "device", "t0"),
)

line_counts = sa.Table(
    "line_counts",
    metadata,
    sa.Column("count_id", ID, primary_key=True, doc="the count message"),
    sa.Column("line", sa.String(32), primary_key=True),
    sa.Column("cls", sa.String(32), primary_key=True),
    sa.Column("direction", sa.String(4), primary_key=True, doc="N, NE, … NW across the line"),
    sa.Column("device", DEVICE, nullable=False),
    sa.Column("t0", sa.Double, nullable=False),
    sa.Column("t1", sa.Double, nullable=False),
    sa.Column("n", sa.Integer, nullable=False),
    sa.Index("ix_line_counts_device_t0", "device", "t0"),
)

health = sa.Table(
    "health",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("device", DEVICE, nullable=False),
    sa.Column("t", sa.Double, nullable=False, doc="box clock"),
    sa.Column("body", sa.JSON, nullable=False),
    sa.Column("received", sa.Double, nullable=False),
    sa.Index("ix_health_device_t", "device", "t"),
)

status_log = sa.Table(
    "status_log",
    metadata,
    sa.Column("id", ID, primary_key=True),
    sa.Column("device", DEVICE, nullable=False),
    sa.Column("st", sa.String(8), nullable=False, doc="online / offline"),
    sa.Column("why", sa.String(8), nullable=True, doc="offline: stop / lost"),
    sa.Column("t", sa.Double, nullable=False, doc="box clock"),
    sa.Column("received", sa.Double, nullable=False),
    sa.Index("ix_status_log_device_t", "device", "t"),
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True, doc="the request id"),
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("requester", sa.String(128), nullable=False, doc="user@host of the officer"),
    sa.Column("action", sa.String(32), nullable=False, doc="clip, snapshot, events, …"),
    sa.Column("device", DEVICE, nullable=True),
    sa.Column("params", sa.JSON, nullable=False),
    sa.Column(
        "state", sa.String(16), nullable=False, doc="sent, working, done, error, timeout, answered"
    ),
    sa.Column("result", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("detail", sa.Text, nullable=True, doc="a sentence for people: why it failed"),
    sa.Column("finished", sa.Double, nullable=True),
    sa.Index("ix_audit_at", "at"),
)

clips = sa.Table(
    "clips",
    metadata,
    sa.Column("id", ID, primary_key=True, doc="the transfer id"),
    sa.Column("request_id", sa.String(64), nullable=True, doc="the officer request"),
    sa.Column("device", DEVICE, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False, doc="clip / snapshot"),
    sa.Column("requester", sa.String(128), nullable=True),
    sa.Column("asked_from", sa.Double, nullable=True),
    sa.Column("asked_to", sa.Double, nullable=True),
    sa.Column("actual_from", sa.Double, nullable=True),
    sa.Column("actual_to", sa.Double, nullable=True),
    sa.Column("quality", sa.String(16), nullable=True),
    sa.Column("bytes", sa.BigInteger, nullable=True),
    sa.Column("sha256", sa.String(64), nullable=True),
    sa.Column("path", sa.Text, nullable=True),
    sa.Column("name", sa.String(128), nullable=True, doc="file name the box gave"),
    sa.Column(
        "meta",
        sa.JSON(none_as_null=True),
        nullable=True,
        doc="what the box says the file is (ranges, gaps, event)",
    ),
    sa.Column("state", sa.String(16), nullable=False, doc="receiving, done, failed"),
    sa.Column("detail", sa.Text, nullable=True, doc="failed: why, for people"),
    sa.Column("created", sa.Double, nullable=False),
    sa.Column("finished", sa.Double, nullable=True),
    sa.Column(
        "evidence",
        sa.JSON(none_as_null=True),
        nullable=True,
        doc="the box's signed manifest (as in <file>.evidence.json)",
    ),
    sa.Index("ix_clips_request_id", "request_id"),
)

rejects = sa.Table(
    "rejects",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("topic", sa.Text, nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("received", sa.Double, nullable=False),
    sa.Column("device", DEVICE, nullable=True, doc="the box of the topic; '' for none"),
    sa.Index("ix_rejects_device_seq", "device", "seq"),
)

reject_counts = sa.Table(
    "reject_counts",
    metadata,
    sa.Column("device", DEVICE, primary_key=True, doc="as rejects.device"),
    sa.Column("total", sa.BigInteger, nullable=False, doc="every reject, kept or not"),
    sa.Column("first_at", sa.Double, nullable=False),
    sa.Column("last_at", sa.Double, nullable=False),
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("name", sa.String(32), primary_key=True, doc="the officer's login name"),
    sa.Column("role", sa.String(16), nullable=False, doc="viewer, investigator, admin"),
    sa.Column("password_hash", sa.Text, nullable=False, doc="argon2id, PHC string"),
    sa.Column("active", sa.Boolean, nullable=False, doc="false: disabled, cannot log in"),
    sa.Column("created", sa.Double, nullable=False),
    sa.Column("changed", sa.Double, nullable=False),
)

web_sessions = sa.Table(
    "web_sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True, doc="sha256 of the cookie's token"),
    sa.Column("user", sa.String(32), nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False, doc="the token every form must carry"),
    sa.Column("created", sa.Double, nullable=False),
    sa.Column("expires", sa.Double, nullable=False),
    sa.Index("ix_web_sessions_user", "user"),
)

fleet_config = sa.Table(
    "fleet_config",
    metadata,
    sa.Column("device", DEVICE, primary_key=True),
    sa.Column("request_id", sa.String(64), nullable=False, doc="the set_config request (audit)"),
    sa.Column("hash", sa.String(16), nullable=False, doc="the desired config's hash"),
    sa.Column("doc", sa.JSON, nullable=False, doc="the desired config document, redacted"),
    sa.Column("requester", sa.String(128), nullable=False),
    sa.Column("at", sa.Double, nullable=False, doc="when it was sent, station clock"),
)

asked_files = sa.Table(
    "asked_files",
    metadata,
    sa.Column("request_id", sa.String(64), primary_key=True, doc="the clip or snapshot request"),
    sa.Column("device", DEVICE, nullable=False, doc="the box asked"),
    sa.Column("command", sa.String(16), nullable=False, doc="clip / snapshot"),
    sa.Column("at", sa.Double, nullable=False, doc="when it was sent, station clock"),
)
