"""What the console reads from the store, on SQLite and a real PostgreSQL: keyset pages that
visit every event once in order, filters, fetched pictures, hourly counts; accounts and
sessions; and the times officers type."""

from __future__ import annotations

import math
import random
import time
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from roadside.central.accounts import AccountError, Accounts, Role, identify
from roadside.central.store import Store, browse
from roadside.central.store.batch import Batch
from roadside.central.times import TimeInputError, parse_duration, parse_time
from roadside.central.web.sessions import SessionStore
from roadside.ids import new_id
from roadside.testing.messages import count, event_pair

ZONE = ZoneInfo("Asia/Ho_Chi_Minh")


def _events(store: Store, n: int, seed: int = 3) -> list[dict]:
    """``n`` ended events on two boxes, some sharing a start time (ties on t0)."""
    rng = random.Random(seed)
    batch = Batch()
    base = 1_780_000_000.0
    made = []
    for i in range(n):
        t = base + (i // 3) * 10.0  # three events per start time
        cls = rng.choice(["car", "car", "motorcycle", "person"])
        _start, end = event_pair(t, cls, track=i)
        end = end.model_copy(
            update={
                "direction": rng.choice(["E", "W"]),
                "zones": rng.choice([["a"], ["a", "b"], None]),
            }
        )
        device = rng.choice(["box-a", "box-b"])
        batch.add_event(device, end, t + 5)
        made.append(
            {
                "id": end.id,
                "t0": t,
                "device": device,
                "cls": cls,
                "dir": end.direction,
                "z": end.zones,
            }
        )
    store.writer().write(batch)
    return made


def _walk(conn, q: browse.EventQuery, size: int) -> list[str]:
    """Every page from the newest, following the older links; and back again."""
    pages = [browse.event_page(conn, q, size)]
    while pages[-1].older is not None:
        pages.append(browse.event_page(conn, q, size, before=pages[-1].older))
    ids = [r["id"] for p in pages for r in p.rows]
    back = pages[-1]
    seen_back = [r["id"] for r in back.rows]
    while back.newer is not None:
        back = browse.event_page(conn, q, size, after=back.newer)
        seen_back = [r["id"] for r in back.rows] + seen_back
    assert seen_back == ids, "going back visits the same events in the same order"
    return ids


def test_keyset_pages_visit_every_event_once_newest_first(db_url: str) -> None:
    store = Store(db_url)
    made = _events(store, 250)
    order = [m["id"] for m in sorted(made, key=lambda m: (m["t0"], m["id"]), reverse=True)]
    with store.connect() as conn:
        assert _walk(conn, browse.EventQuery(), 7) == order
        cars_east = [m["id"] for m in made if m["cls"] == "car" and m["dir"] == "E"]
        got = _walk(conn, browse.EventQuery(cls="car", direction="E"), 5)
        assert sorted(got) == sorted(cars_east) and len(got) == len(set(got))
        in_b = {m["id"] for m in made if m["z"] and "b" in m["z"] and m["device"] == "box-a"}
        assert set(_walk(conn, browse.EventQuery(device="box-a", zone="b"), 9)) == in_b
        t_mid = made[120]["t0"]
        since = [m["id"] for m in made if m["t0"] >= t_mid]
        assert sorted(_walk(conn, browse.EventQuery(since=t_mid), 50)) == sorted(since)
        assert browse.known_values(conn) == {
            "boxes": ["box-a", "box-b"],
            "classes": sorted({m["cls"] for m in made}),
        }
    assert browse.Cursor.decode("nonsense") is None
    assert browse.Cursor.decode("1e400_ABC") is None
    c = browse.Cursor(12.5, new_id())
    assert browse.Cursor.decode(c.encode()) == c
    store.close()


def test_pictures_and_hourly_counts(db_url: str) -> None:
    store = Store(db_url)
    made = _events(store, 30)
    xid, rq = new_id(), new_id()
    box = made[4]["device"]  # a picture is of an event of its own box
    store.clips.started(
        box, xid, "snapshot", request_id=rq, name="p.jpg", meta={"event": made[4]["id"]}
    )
    with store.connect() as conn:
        assert browse.pictures_for(conn, [made[4]["id"]]) == {}  # not received yet
    store.clips.finished(box, xid, "/x/p.jpg", 10, "0" * 64)
    with store.connect() as conn:
        pics = browse.pictures_for(conn, [m["id"] for m in made])
        assert set(pics) == {made[4]["id"]} and pics[made[4]["id"]]["request_id"] == rq
    hour = math.floor(made[0]["t0"] / 3600) * 3600
    batch = Batch()
    for k, n in enumerate(({"car": 3}, {"car": 2, "bus": 1}, {"person": 4})):
        batch.add_count("box-a", count(hour + 1200 * k + 1, n), hour + 4000)
    batch.add_count("box-a", count(hour + 3600 + 5, {"car": 7}), hour + 4000)
    batch.add_count("box-b", count(hour + 5, {"car": 100}), hour + 4000)
    store.writer().write(batch)
    with store.connect() as conn:
        series = browse.counts_by_class(conn, "box-a", hour, hour + 7200, "t")
        assert series.hours == [hour, hour + 3600]
        assert series.values == {"bus": [1, 0], "car": [5, 7], "person": [4, 0]}
        by_dir = browse.events_by_direction(conn, "box-a", hour - 3600, hour + 7200, "t")
        expected: dict[str, int] = {}
        for m in made:
            if m["device"] == "box-a" and m["t0"] < hour + 7200:
                key = f"{m['cls']} {m['dir']}"
                expected[key] = expected.get(key, 0) + 1
        assert {k: sum(v) for k, v in by_dir.values.items()} == expected
    store.close()


def test_accounts_roles_and_sessions(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    accounts = Accounts(store.engine)
    accounts.add("lan", Role.INVESTIGATOR, "a good long password")
    with pytest.raises(AccountError, match="already an account"):
        accounts.add("lan", Role.VIEWER, "another long password")
    for bad in ("L", "Lan Nguyen", "../x", "x" * 40):
        with pytest.raises(AccountError, match="not an account name"):
            accounts.add(bad, Role.VIEWER, "a good long password")
    with pytest.raises(AccountError, match="at least 10"):
        accounts.add("hung", Role.VIEWER, "short")
    assert accounts.verify("lan", "a good long password").role is Role.INVESTIGATOR
    assert accounts.verify("lan", "wrong") is None and accounts.verify("nobody", "x") is None
    row = store.engine.connect().exec_driver_sql("select password_hash from users").scalar()
    assert row.startswith("$argon2id$") and "a good long password" not in row
    sessions = SessionStore(store.engine, accounts, 3600)
    token, session = sessions.open(accounts.get("lan"))
    assert sessions.get(token).csrf == session.csrf and sessions.get("forged") is None
    stored = store.engine.connect().exec_driver_sql("select id from web_sessions").scalar()
    assert stored != token  # only its digest is kept
    accounts.set_password("lan", "a new long password")
    assert sessions.get(token) is None  # a new password ends the sessions
    token, _ = sessions.open(accounts.get("lan"))
    accounts.set_active("lan", False)
    assert sessions.get(token) is None and accounts.verify("lan", "a new long password") is None
    with pytest.raises(AccountError, match="disabled"):
        identify(accounts, "lan", Role.VIEWER)
    accounts.set_active("lan", True)
    assert identify(accounts, "lan", Role.INVESTIGATOR).name == "lan"
    with pytest.raises(AccountError, match="needs admin"):
        identify(accounts, "lan", Role.ADMIN)
    store.close()


def test_times_as_officers_type_them() -> None:
    now = datetime(2026, 12, 2, 15, 0, tzinfo=ZONE).timestamp()

    def at(text: str) -> datetime:
        return datetime.fromtimestamp(parse_time(text, ZONE, now), ZONE)

    assert at("14:05") == datetime(2026, 12, 2, 14, 5, tzinfo=ZONE)
    assert at("16:30") == datetime(2026, 12, 1, 16, 30, tzinfo=ZONE)  # not in the future
    assert at("hôm qua 14:05") == datetime(2026, 12, 1, 14, 5, tzinfo=ZONE)
    assert at("Hôm nay 09:00") == datetime(2026, 12, 2, 9, 0, tzinfo=ZONE)
    assert at("2 giờ trước") == datetime(2026, 12, 2, 13, 0, tzinfo=ZONE)
    assert at("30 phút trước") == datetime(2026, 12, 2, 14, 30, tzinfo=ZONE)
    assert at("01/12/2026 14:05") == datetime(2026, 12, 1, 14, 5, tzinfo=ZONE)
    assert at("1/12/2026") == datetime(2026, 12, 1, 0, 0, tzinfo=ZONE)
    assert at("bây giờ").timestamp() == now
    assert at("yesterday 10:14") == datetime(2026, 12, 1, 10, 14, tzinfo=ZONE)
    assert at("15m ago") == datetime(2026, 12, 2, 14, 45, tzinfo=ZONE)
    assert at("2026-12-01T14:05") == datetime(2026, 12, 1, 14, 5, tzinfo=ZONE)
    assert at("2026-12-01T07:05:00Z") == datetime(2026, 12, 1, 14, 5, tzinfo=ZONE)
    assert parse_duration("1 giờ 30 phút") == 5400 and parse_duration("1h30m") == 5400
    for bad in ("31/02/2026", "01/12/2026 25:00", "half past ten", "2 tuần trước"):
        with pytest.raises(TimeInputError):
            parse_time(bad, ZONE, now)
    assert time.time() - parse_time("now", ZONE) < 5
