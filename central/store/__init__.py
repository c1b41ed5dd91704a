"""The station's store: tables, migrations, the ingest writer, the officers' queries."""

from __future__ import annotations

import sqlalchemy as sa

from roadside.central.store.asked import AskedFiles
from roadside.central.store.audit import AuditLog
from roadside.central.store.clips import ClipRecords
from roadside.central.store.engine import DatabaseError, open_engine
from roadside.central.store.migrations import migrate
from roadside.central.store.writer import REJECTS_PER_BOX, BatchWriter

__all__ = ["AuditLog", "BatchWriter", "ClipRecords", "DatabaseError", "Store", "open_engine"]


class Store:
    """One process's handle on the database: opened, migrated, ready."""

    def __init__(self, url: str, echo: bool = False) -> None:
        self.url = url
        self.engine = open_engine(url, echo)
        try:
            self.applied = migrate(self.engine)
        except sa.exc.OperationalError as exc:
            self.engine.dispose()
            raise DatabaseError(
                f"cannot open the database {self.safe_url}: {str(exc.orig).strip().splitlines()[0]}"
            ) from None
        self.audit = AuditLog(self.engine)
        self.clips = ClipRecords(self.engine)
        self.asked = AskedFiles(self.engine)

    @property
    def safe_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def writer(self, rejects_per_box: int = REJECTS_PER_BOX) -> BatchWriter:
        return BatchWriter(self.engine, rejects_per_box)

    def connect(self) -> sa.Connection:
        return self.engine.connect()

    def close(self) -> None:
        self.engine.dispose()
