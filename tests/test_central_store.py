"""The station's store on SQLite and a real PostgreSQL: migrations, exactly-once upserts,
device state; and the config and time parsing the officer commands rely on."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from roadside.central.config import load_central_config, parse_central_config
from roadside.central.routing import route
from roadside.central.store import Store, queries
from roadside.central.store import tables as T
from roadside.central.store.batch import Batch
from roadside.central.store.migrations import LATEST, SchemaError, migrate, schema_version
from roadside.central.store.writer import BatchWriter
from roadside.central.times import TimeInputError, parse_duration, parse_time
from roadside.errors import ConfigError
from roadside.testing.messages import count, event_pair, health, status

HCM = ZoneInfo("Asia/Ho_Chi_Minh")


def _write(
    store: Store,
    *messages: tuple[str, str, object],
    received: float | None = None,
    writer: BatchWriter | None = None,
) -> None:
    batch = Batch()
    for device, kind, msg in messages:
        payload = msg if isinstance(msg, bytes) else msg.encode()  # type: ignore[attr-defined]
        route(batch, f"roadside/v1/{device}/{kind}", payload, received or time.time())
    (writer or store.writer()).write(batch)


def test_migrated_schema_matches_the_tables_the_code_uses(db_url: str) -> None:
    store = Store(db_url)
    assert store.applied == [1]
    assert migrate(store.engine) == []  # a second start applies nothing
    inspector = sa.inspect(store.engine)
    for table in T.metadata.sorted_tables:
        found = {c["name"]: c for c in inspector.get_columns(table.name)}
        assert set(found) == {c.name for c in table.columns}, table.name
        for column in table.columns:
            if not column.primary_key:
                assert found[column.name]["nullable"] == column.nullable, (table.name, column.name)
        assert {i["name"] for i in inspector.get_indexes(table.name)} == {
            i.name for i in table.indexes
        }, table.name
    with store.connect() as conn:
        assert conn.execute(sa.select(schema_version.c.version)).scalars().all() == [LATEST]
    store.close()


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    with store.engine.begin() as conn:
        conn.execute(
            schema_version.insert().values(version=LATEST + 1, description="x", applied=0.0)
        )
    with pytest.raises(SchemaError, match="newer than this software"):
        migrate(store.engine)


def test_each_event_is_stored_once_and_its_end_wins(db_url: str) -> None:
    store = Store(db_url)
    t = time.time() - 100
    a_start, a_end = event_pair(t, "car", 1)
    b_start, b_end = event_pair(t + 1, "person", 2)
    c_start, _ = event_pair(t + 2, "truck", 3)
    # a: start then end, each twice, over two batches and two writers (two workers)
    _write(store, ("box-a", "event", a_start), ("box-a", "event", a_start))
    _write(store, ("box-a", "event", a_end), ("box-a", "event", a_start), writer=store.writer())
    _write(store, ("box-a", "event", a_end))
    # b: the end overtakes the start (two workers), then the start arrives late
    _write(store, ("box-a", "event", b_end))
    _write(store, ("box-a", "event", b_start))
    # c: only the start so far
    _write(store, ("box-a", "event", c_start), ("box-a", "event", c_start))
    with store.connect() as conn:
        rows = {r["id"]: r for r in queries.events(conn, queries.EventFilter())}
    assert set(rows) == {a_start.id, b_start.id, c_start.id}
    for ended, end in ((rows[a_start.id], a_end), (rows[b_start.id], b_end)):
        assert ended["phase"] == "e"
        assert ended["t1"] == pytest.approx(end.t1)
        assert ended["score"] == pytest.approx(end.s)
        assert ended["zones"] == ["left-lanes"] and ended["direction"] == "E"
    assert rows[c_start.id]["phase"] == "s"
    store.close()


def test_counts_health_and_status_dedupe_and_track_the_device(db_url: str) -> None:
    store = Store(db_url)
    c = count(time.time() - 60, {"car": 3, "person": 1})
    h_old, h_new = health(ob=7, ck=1, ld=0.5), health(ob=2, ck=0, ld=0.7)
    online = status("online")
    will = status("offline", "lost", t=online.t - 5)  # a last will is made before the online
    now = time.time()
    _write(
        store,
        ("box-b", "count", c),
        ("box-b", "count", c),
        ("box-b", "health", h_new),
        ("box-b", "status", online),
        received=now,
    )
    _write(store, ("box-b", "health", h_old), ("box-b", "health", h_new), received=now + 1)
    with store.connect() as conn:
        dev = queries.devices(conn)[0]
        n = queries.table_counts(conn)
    assert (n["counts"], n["health"], n["status_log"]) == (1, 2, 1)
    assert dev["online"] is True and dev["health"]["ob"] == 2, "newest health by id wins"
    assert dev["last_seen"] == pytest.approx(now + 1)
    _write(store, ("box-b", "status", will), received=now + 2)  # arrives after: it wins
    with store.connect() as conn:
        dev = queries.devices(conn)[0]
    assert dev["online"] is False and dev["status"]["why"] == "lost"
    store.close()


def test_malformed_messages_are_kept_with_the_reason(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    start, _ = event_pair(time.time())
    _write(
        store,
        ("box-c", "event", b'{"v":1,"id":"short"}'),
        ("box-c", "event", b"\xff"),
        ("box-c", "nonsense", b"{}"),
        ("box-c", "event", start),
    )
    with store.connect() as conn:
        rejects = conn.execute(sa.select(T.rejects)).mappings().all()
        n = queries.table_counts(conn)
    assert n["events"] == 1 and len(rejects) == 3
    assert "id" in rejects[0]["reason"] and rejects[0]["payload"] == b'{"v":1,"id":"short"}'
    assert "no schema" in rejects[2]["reason"]
    store.close()


# -- config and times -------------------------------------------------------------------------
def test_config_errors_are_one_line_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'broker.hots'"):
        parse_central_config({"broker": {"hots": "x"}})
    with pytest.raises(ConfigError, match=r"time_zone = 'Mars/Base'.*IANA"):
        parse_central_config({"time_zone": "Mars/Base"})
    with pytest.raises(ConfigError, match=r"database.url = 'mysql://x'"):
        parse_central_config({"database": {"url": "mysql://x"}})
    with pytest.raises(ConfigError, match=r"ingest.group = 'a/b'"):
        parse_central_config({"ingest": {"group": "a/b"}})
    with pytest.raises(ConfigError, match=r"no such config file"):
        load_central_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[broker\n")
    with pytest.raises(ConfigError, match=r"not valid TOML"):
        load_central_config(bad)
    cfg = parse_central_config({"data_dir": str(tmp_path)})
    assert cfg.database_url == f"sqlite:///{tmp_path / 'central.db'}"
    assert cfg.time_zone == "Asia/Ho_Chi_Minh" and cfg.broker.effective_port == 1883


def test_times_typed_by_officers() -> None:
    now = datetime(2024, 5, 2, 9, 0, tzinfo=HCM).timestamp()
    at_1014_may1 = datetime(2024, 5, 1, 10, 14, tzinfo=HCM).timestamp()
    assert parse_time("2024-05-01T10:14:00+07:00", HCM, now) == at_1014_may1
    assert parse_time("2024-05-01T03:14:00Z", HCM, now) == at_1014_may1
    assert parse_time("2024-05-01 10:14", HCM, now) == at_1014_may1  # local = the zone's
    assert parse_time("10:14", HCM, now) == at_1014_may1  # 10:14 at 09:00: yesterday's
    assert parse_time("08:30:15", HCM, now) == now - 30 * 60 + 15
    assert parse_time("yesterday 10:14", HCM, now) == at_1014_may1
    assert parse_time("15m ago", HCM, now) == now - 900
    assert parse_time("now-1h30m", HCM, now) == now - 5400
    assert parse_duration("10s") == 10 and parse_duration("1h30m") == 5400
    assert parse_duration("500ms") == 0.5 and parse_duration("90") == 90
    for bad in ("tomorrow-ish", "25:99", "2024-13-01"):
        with pytest.raises(TimeInputError, match="is not a time"):  # of day, too
            parse_time(bad, HCM, now)
    with pytest.raises(TimeInputError, match="not a duration"):
        parse_duration("10 parsecs")
