"""Versioned schema migrations: a numbered list, applied in order, recorded in schema_version.

Each step runs in the same transaction as its schema_version row, under a lock (PostgreSQL
advisory lock; SQLite BEGIN IMMEDIATE), so workers starting together apply it once. To change
the schema, add ``vNNN_what.py`` with ``DESCRIPTION`` and ``upgrade(conn)`` and list it below;
then update ``tables.py`` to match (a test compares them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import sqlalchemy as sa

from roadside.central.store.migrations import (
    v001_initial,
    v002_long_names,
    v003_console,
    v004_lines_colour,
    v005_fleet_config,
    v006_evidence,
    v007_reject_counts,
)
from roadside.errors import RoadsideError

_LOCK_KEY = 0x726F6164  # "road": the advisory lock id migrations take on PostgreSQL


class SchemaError(RoadsideError):
    """The database holds a schema this software does not know (newer, or damaged)."""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    upgrade: Callable[[sa.Connection], None]


def _step(version: int, module: ModuleType) -> Migration:
    return Migration(version, module.DESCRIPTION, module.upgrade)


MIGRATIONS: tuple[Migration, ...] = (
    _step(1, v001_initial),
    _step(2, v002_long_names),
    _step(3, v003_console),
    _step(4, v004_lines_colour),
    _step(5, v005_fleet_config),
    _step(6, v006_evidence),
    _step(7, v007_reject_counts),
)
LATEST = MIGRATIONS[-1].version

schema_version = sa.Table(
    "schema_version",
    sa.MetaData(),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("applied", sa.Double, nullable=False),
)


def current_version(conn: sa.Connection) -> int:
    if not sa.inspect(conn).has_table("schema_version"):
        return 0
    return conn.scalar(sa.select(sa.func.max(schema_version.c.version))) or 0


def migrate(engine: sa.Engine) -> list[int]:
    """Bring the database up to LATEST; returns the versions applied now (often none)."""
    applied: list[int] = []
    with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
        if engine.dialect.name == "postgresql":
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_LOCK_KEY)))
        schema_version.create(conn, checkfirst=True)
        have = current_version(conn)
        if have > LATEST:
            raise SchemaError(
                f"the database is at schema version {have}, newer than this software "
                f"({LATEST}); upgrade roadside on this computer"
            )
        for step in MIGRATIONS:
            if step.version <= have:
                continue
            step.upgrade(conn)
            conn.execute(
                schema_version.insert().values(
                    version=step.version, description=step.description, applied=time.time()
                )
            )
            applied.append(step.version)
    return applied
