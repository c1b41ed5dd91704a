"""Opening the database: one engine per process, SQLite tuned for several writers.

SQLite runs in WAL mode (readers never block the writer) with a busy timeout, and
transactions begin explicitly, so DDL is transactional and writers can take the lock up
front (``execution_options(sqlite_immediate=True)`` gives BEGIN IMMEDIATE) instead of
failing when two processes upgrade a read lock at once.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from roadside.errors import RoadsideError


class DatabaseError(RoadsideError):
    """The database cannot be reached or used."""


def _sqlite_hooks(engine: sa.Engine) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None  # we say BEGIN ourselves (see _on_begin)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints,
        cur.execute("PRAGMA busy_timeout=30000")  # never corrupt; a power cut loses < 1 commit
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def open_engine(url: str, echo: bool = False) -> sa.Engine:
    """An engine for ``url``; creates the folder of a SQLite file."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise DatabaseError(f"database.url {url!r} is not a database URL: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, echo=echo)
        _sqlite_hooks(engine)
        return engine
    try:
        return sa.create_engine(url, echo=echo, pool_pre_ping=True)
    except ModuleNotFoundError as exc:
        raise DatabaseError(
            f"database.url needs the {exc.name} driver: pip install 'roadside[postgres]'"
        ) from None
