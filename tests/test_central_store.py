"""The station's store on SQLite and a real PostgreSQL: migrations, exactly-once upserts,
device state; and the config and time parsing the officer commands rely on."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from roadside.central import views
from roadside.central.config import load_central_config, parse_central_config
from roadside.central.routing import route
from roadside.central.store import Store, queries
from roadside.central.store import tables as T
from roadside.central.store.batch import Batch
from roadside.central.store.engine import open_engine
from roadside.central.store.migrations import (
    LATEST,
    MIGRATIONS,
    SchemaError,
    migrate,
    schema_version,
    v001_initial,
    v002_long_names,
)
from roadside.central.store.writer import BatchWriter
from roadside.central.times import TimeInputError, parse_duration, parse_time
from roadside.errors import ConfigError
from roadside.ids import new_id
from roadside.testing.messages import count, event_pair, health, status
from roadside.wire.messages import CountMsg

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
    assert store.applied == [m.version for m in MIGRATIONS]
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
        versions = conn.execute(sa.select(schema_version.c.version)).scalars().all()
        assert versions == list(range(1, LATEST + 1))
    store.close()


def test_a_version_1_database_is_upgraded_and_keeps_its_events(db_url: str) -> None:
    from roadside.central.store.engine import open_engine
    from roadside.central.store.migrations import MIGRATIONS

    engine = open_engine(db_url)
    with engine.connect() as conn, conn.begin():
        schema_version.create(conn)
        MIGRATIONS[0].upgrade(conn)
        conn.execute(schema_version.insert().values(version=1, description="v1", applied=0.0))
        row = {"id": new_id(), "device": "old-box", "phase": "e", "cls": "car", "score": 0.9,
               "t0": 1.0, "t1": 2.0, "box": [0, 0, 1, 1], "track": 1, "unsynced": False,
               "received": 3.0, "updated": 3.0}  # fmt: skip
        cols = (sa.column(k, sa.JSON) if k == "box" else sa.column(k) for k in row)
        conn.execute(sa.table("events", *cols).insert().values(**row))
    engine.dispose()
    store = Store(db_url)
    assert store.applied == [m.version for m in MIGRATIONS][1:]
    with store.connect() as conn:
        (kept,) = queries.events(conn, queries.EventFilter())
    assert kept["device"] == "old-box" and kept["colour"] is None
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
        assert ended["t1"] == pytest.approx(end.last_seen)
        assert ended["score"] == pytest.approx(end.score)
        assert ended["zones"] == ["left-lanes"] and ended["direction"] == "E"
    assert rows[c_start.id]["phase"] == "s"
    store.close()


def test_counts_health_and_status_dedupe_and_track_the_device(db_url: str) -> None:
    store = Store(db_url)
    c = count(time.time() - 60, {"car": 3, "person": 1})
    h_old, h_new = (
        health(outbox_depth=7, clock_synced=1, load_1m=0.5),
        health(outbox_depth=2, clock_synced=0, load_1m=0.7),
    )
    online = status("online")
    will = status("offline", "lost", at=online.at - 5)  # a last will is made before the online
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
    assert dev["online"] is True and dev["health"]["outbox_depth"] == 2, "newest health by id wins"
    assert dev["last_seen"] == pytest.approx(now + 1)
    _write(store, ("box-b", "status", will), received=now + 2)  # arrives after: it wins
    with store.connect() as conn:
        dev = queries.devices(conn)[0]
    assert dev["online"] is False and dev["status"]["reason"] == "lost"
    store.close()


def test_line_crossings_are_stored_once_and_summed_by_interval(db_url: str) -> None:
    store = Store(db_url)
    t = 1_718_000_000.0  # 2024-06-10 06:13:20 UTC
    first = CountMsg(
        id=new_id(t), t0=t, t1=t + 60, n={"car": 3},
        ln={"mid": {"car": {"S": 2, "N": 1}, "motorcycle": {"S": 1}}},
    )  # fmt: skip
    second = CountMsg(id=new_id(t + 60), t0=t + 60, t1=t + 120, n={}, ln={"mid": {"car": {"S": 4}}})
    _write(store, ("box-a", "count", first), ("box-a", "count", first), ("box-a", "count", second))
    _write(store, ("box-a", "count", second))  # a repeat in a later batch
    with store.connect() as conn:
        rows = queries.line_counts(conn, queries.CountFilter())
        assert queries.table_counts(conn)["line_counts"] == 4
    assert [(r["cls"], r["direction"], r["n"]) for r in rows] == [
        ("car", "N", 1), ("car", "S", 2), ("motorcycle", "S", 1), ("car", "S", 4)
    ]  # fmt: skip
    hourly = views.line_count_rows(rows, 3600.0)
    assert [(r["cls"], r["direction"], r["n"], r["t1"] - r["t0"]) for r in hourly] == [
        ("car", "N", 1, 3600.0), ("car", "S", 6, 3600.0), ("motorcycle", "S", 1, 3600.0)
    ]  # fmt: skip
    with store.connect() as conn:
        only = queries.line_counts(conn, queries.CountFilter(cls="motorcycle", since=t + 30))
        assert [r["n"] for r in only] == [1]
        assert queries.line_counts(conn, queries.CountFilter(since=t + 120)) == []
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


def test_stored_health_and_status_move_to_long_names(
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A database made by version 1 (short keys in the bodies) is rewritten on upgrade."""
    engine = open_engine(db_url)
    old_health = {"ld": 1.46, "tc": 51.0, "ob": 3, "od": {"drop_health": 2}, "ck": 0}
    with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
        schema_version.create(conn)
        v001_initial.upgrade(conn)
        conn.execute(schema_version.insert().values(version=1, description="v1", applied=0.0))
        conn.execute(
            T.health.insert(),
            [
                {
                    "id": new_id(100.0 + i),
                    "device": "box-old",
                    "t": 100.0 + i,
                    "body": {**old_health, "dk": {"free": 2048.0}, "fi": i, "later": "kept"},
                    "received": 101.0 + i,
                }
                for i in range(5)
            ],
        )
        conn.execute(
            T.devices.insert(),
            [
                {
                    "device": "box-old",
                    "first_seen": 1.0,
                    "last_seen": 2.0,
                    "online": False,
                    "status": {"st": "offline", "t": 1.5, "why": "lost", "sw": "0.1.0", "m": "x"},
                    "health": old_health,
                },
                {
                    "device": "box-new",
                    "first_seen": 1.0,
                    "last_seen": 2.0,
                    "online": None,
                    "status": None,
                    "health": None,
                },
            ],
        )
    engine.dispose()
    monkeypatch.setattr(v002_long_names, "BATCH", 2)  # several pages of rows
    store = Store(db_url)
    assert store.applied == [m.version for m in MIGRATIONS][1:]  # from version 1 on
    with store.connect() as conn:
        bodies = conn.execute(sa.select(T.health.c.body).order_by(T.health.c.id)).scalars().all()
        devices = {d["device"]: d for d in queries.devices(conn)}
    assert len(bodies) == 5
    for i, body in enumerate(bodies):
        assert body == {
            "load_1m": 1.46,
            "cpu_temp_c": 51.0,
            "outbox_depth": 3,
            "outbox_losses": {"drop_health": 2},
            "clock_synced": 0,
            "disk_mib": {"free": 2048.0},
            "frames_in": i,
            "later": "kept",
        }
    old = devices["box-old"]
    assert old["status"] == {
        "state": "offline",
        "at": 1.5,
        "reason": "lost",
        "software": "0.1.0",
        "model": "x",
    }
    assert views.health_summary(old["health"]) == "load 1.5 · 51°C"
    assert views.outbox_summary(old["health"]) == "3 (2 lost)"
    assert views.clock_summary(old["health"]) == "NOT synced"
    assert views.device_state(old) == "offline (link lost)"
    assert devices["box-new"]["health"] is None and devices["box-new"]["status"] is None
    store.close()


def test_new_health_and_status_are_stored_under_long_names(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    _write(
        store,
        ("box-d", "health", health(load_1m=0.25, disk_mib={"free": 4096.0}, outbox_depth=0)),
        ("box-d", "status", status("offline", "stop")),
    )
    with store.connect() as conn:
        dev = queries.devices(conn)[0]
    assert dev["health"] == {"load_1m": 0.25, "disk_mib": {"free": 4096.0}, "outbox_depth": 0}
    assert set(dev["status"]) == {"state", "at", "reason", "software", "model"}
    assert views.health_summary(dev["health"]) == "load 0.2 · disk 4.0 GB free"
    assert views.device_state(dev) == "offline (stopped)"
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


def test_a_flooding_box_keeps_its_newest_rejects_and_counts_the_rest(db_url: str) -> None:
    """A box refused 30 times in several transactions keeps its newest 5 rows whole, all 30
    counted; another box's rejects are neither trimmed nor counted with them, and
    `roadside devices` (its query and JSON) shows each box's count."""
    store = Store(db_url)
    writer = store.writer(rejects_per_box=5)
    now = time.time()
    for first in range(0, 30, 8):  # four transactions: 8, 8, 8 and 6 refused messages
        poison = [("box-flood", "event", f'{{"n":{i}}}'.encode()) for i in range(first, first + 8)]
        _write(store, *poison[: 30 - first], received=now + first, writer=writer)
    _write(store, ("box-fine", "event", b"{}"), ("box-fine", "x", b"{}"), writer=writer)
    with store.connect() as conn:
        kept = conn.execute(sa.select(T.rejects).order_by(T.rejects.c.seq)).mappings().all()
        counts = {r.device: r for r in conn.execute(sa.select(T.reject_counts))}
        devices = {d["device"]: d for d in views.devices_json(queries.devices(conn), HCM)}
    flood = [bytes(r["payload"]) for r in kept if r["device"] == "box-flood"]
    assert flood == [f'{{"n":{i}}}'.encode() for i in range(25, 30)]  # the newest, whole
    assert [r["device"] for r in kept].count("box-fine") == 2
    assert counts["box-flood"].total == 30 and counts["box-fine"].total == 2
    assert counts["box-flood"].first_at == now and counts["box-flood"].last_at == now + 24
    assert devices["box-flood"]["rejects"] == 30 and devices["box-fine"]["rejects"] == 2
    store.close()


def test_rejects_stored_before_version_7_get_their_box_and_count(db_url: str) -> None:
    engine = open_engine(db_url)
    columns = ("topic", "payload", "reason", "received")
    old = sa.table("rejects", *(sa.column(k) for k in columns))
    rows = [("roadside/v1/box-old/event", t) for t in (5.0, 3.0, 9.0)]
    rows.append(("roadside/v1/Bad Name/event", 1.0))
    with engine.connect().execution_options(sqlite_immediate=True) as conn, conn.begin():
        schema_version.create(conn)
        for step in MIGRATIONS[:6]:
            step.upgrade(conn)
            conn.execute(
                schema_version.insert().values(version=step.version, description="", applied=0.0)
            )
        conn.execute(
            old.insert(),
            [{"topic": tp, "payload": b"x", "reason": "r", "received": t} for tp, t in rows],
        )
    engine.dispose()
    store = Store(db_url)
    assert store.applied == [7]
    with store.connect() as conn:
        devices = conn.execute(sa.select(T.rejects.c.device).order_by(T.rejects.c.seq)).scalars()
        counts = {r.device: r for r in conn.execute(sa.select(T.reject_counts))}
    assert list(devices) == ["box-old"] * 3 + [""]
    assert (counts["box-old"].total, counts["box-old"].first_at, counts["box-old"].last_at) == (
        3, 3.0, 9.0
    )  # fmt: skip
    assert counts[""].total == 1
    store.close()
