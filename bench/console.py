"""Events page time: the console's events page on a store of a million events.

One command (``python bench/console.py``): for SQLite and a real PostgreSQL, a store is
filled with ``--events`` events (default 1,000,000) from 20 boxes over 30 days, with classes,
directions and zones in road-like proportions; then the console runs (uvicorn, a logged-in
officer over HTTP, as a browser would ask) and each page below is fetched ``--rounds``
times, timing the whole request:
- ``first``: the newest events, no filter;
- ``filtered``: one box, one class, one direction (a rare combination: about 0.03 %);
- ``deep``: the page 20 pages back from the newest (following "older" links);
- ``range``: one class over one day, a week ago;
- ``baseline``: the login page (no session, no query): what the same machine takes to answer
  any page at all, to read the others against on a busy machine.

Last line: ``RESULT sqlite_first_p95_ms=… sqlite_filtered_p95_ms=… postgres_first_p95_ms=…
postgres_filtered_p95_ms=… target_ms=200`` (plus the other pages' p95).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

from roadside.central.accounts import Accounts, Role
from roadside.central.config import parse_central_config
from roadside.central.store import Store
from roadside.central.store import tables as T
from roadside.central.web.server import WebServer
from roadside.testing import postgres
from roadside.testing.ports import free_port

CLASSES = (("car", 60), ("motorcycle", 25), ("person", 8), ("truck", 5), ("bus", 2))
DIRECTIONS = ("N", "NE", "E", "SE", "S", "SW", "W", "NW")
ZONES = ("left-lanes", "right-lanes", "junction", "shoulder")
DAYS = 30
TARGET_MS = 200
PASSWORD = "bench-password-1"


# One statement fills the table on the database server itself: random classes (by weight),
# boxes, directions, zone lists and start times over DAYS days.
_CLASS_CASE = (
    "CASE "
    + " ".join(
        f"WHEN rc < {sum(w for _c, w in CLASSES[: i + 1])} THEN '{c}'"
        for i, (c, _w) in enumerate(CLASSES)
    )
    + " END"
)
_ROWS = """
SELECT 'EV' || {pad} AS id, {device} AS device, 'e' AS phase, {cls} AS cls,
       0.5 + rs / 2.0 AS score, t0, t0 + 1 + 5 * rs AS t1, '[0.4,0.4,0.1,0.1]' AS box,
       i % 1000 AS track, {direction} AS direction,
       CASE rz WHEN 0 THEN NULL WHEN 1 THEN '["left-lanes"]' ELSE '["junction","shoulder"]' END
         AS zones,
       {false} AS unsynced, t0 + 1 AS received, t0 + 6 AS updated
FROM r
"""
_SQLITE = (
    "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < :n - 1), "
    "r AS MATERIALIZED (SELECT i, abs(random()) % 100 AS rc, abs(random()) % 20 AS rd, "
    "abs(random()) % 8 AS rdir, abs(random()) % 3 AS rz, "
    "(abs(random()) % 1000000) / 1000000.0 AS rs, "
    ":now - :span * ((abs(random()) % 1000000000) / 1000000000.0) AS t0 FROM n) "
    "INSERT INTO events (id, device, phase, cls, score, t0, t1, box, track, direction, zones, "
    "unsynced, received, updated) "
    + _ROWS.format(
        pad="printf('%024d', i)",
        device="printf('box-%02d', rd)",
        cls=_CLASS_CASE,
        direction="substr('N NE E SE S SW W NW ', 1 + 3 * rdir, 2)",
        false="0",
    ).replace(
        "substr('N NE E SE S SW W NW ', 1 + 3 * rdir, 2)",
        "trim(substr('N  NE E  SE S  SW W  NW ', 1 + 3 * rdir, 2))",
    )
)
_POSTGRES = (
    "WITH r AS MATERIALIZED (SELECT i, floor(random() * 100)::int AS rc, "
    "floor(random() * 20)::int AS rd, floor(random() * 8)::int AS rdir, "
    "floor(random() * 3)::int AS rz, random() AS rs, "
    ":now - :span * random() AS t0 FROM generate_series(0, :n - 1) AS i) "
    "INSERT INTO events (id, device, phase, cls, score, t0, t1, box, track, direction, zones, "
    "unsynced, received, updated) "
    + _ROWS.format(
        pad="lpad(i::text, 24, '0')",
        device="'box-' || lpad(rd::text, 2, '0')",
        cls=_CLASS_CASE,
        direction="(ARRAY['N','NE','E','SE','S','SW','W','NW'])[rdir + 1]",
        false="false",
    )
    .replace("'[0.4,0.4,0.1,0.1]' AS box", "'[0.4,0.4,0.1,0.1]'::json AS box")
    .replace("END\n         AS zones", "END::json\n         AS zones")
)


def fill(store: Store, n: int) -> float:
    """``n`` ended events over the last DAYS days from 20 boxes; returns seconds taken."""
    now = time.time()
    started = time.monotonic()
    with store.engine.begin() as conn:
        conn.execute(
            T.devices.insert(),
            [
                {"device": f"box-{i:02d}", "first_seen": now, "last_seen": now, "online": True}
                for i in range(20)
            ],
        )
    postgres = store.engine.dialect.name == "postgresql"
    with store.engine.begin() as conn:
        conn.execute(
            sa.text(_POSTGRES if postgres else _SQLITE),
            {"n": n, "now": now, "span": DAYS * 86400.0},
        )
        conn.exec_driver_sql("ANALYZE events" if postgres else "ANALYZE")
    return time.monotonic() - started


def login(url: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=60)
    client.cookies.set("roadside_lang", "vi")
    token = re.search(r'name="csrf" value="([^"]+)"', client.get("/login").text).group(1)  # type: ignore[union-attr]
    r = client.post(
        "/login",
        data={"csrf": token, "name": "bench", "password": PASSWORD, "next": "/events"},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    return client


def deep_link(client: httpx.Client, pages: int) -> str:
    """The URL of the page ``pages`` "older" links back from the newest."""
    url = "/events"
    for _ in range(pages):
        found = re.search(r'href="(/events\?[^"]*before=[^"]+)" rel="next"', client.get(url).text)
        if not found:
            break
        url = found.group(1).replace("&amp;", "&")
    return url


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1] if len(samples) >= 2 else samples[0]


def time_pages(url: str, rounds: int) -> dict[str, float]:
    client = login(url)
    week_ago = time.strftime("%d/%m/%Y", time.localtime(time.time() - 7 * 86400))
    day_after = time.strftime("%d/%m/%Y", time.localtime(time.time() - 6 * 86400))
    pages = {
        "first": "/events",
        "filtered": "/events?box=box-07&cls=truck&dir=E",
        "deep": deep_link(client, 20),
        "range": f"/events?cls=bus&since={week_ago}&until={day_after}",
    }
    out = {}
    anonymous = httpx.Client(base_url=url, timeout=60)
    for name, path in [("baseline", "/login"), *pages.items()]:
        c = anonymous if name == "baseline" else client
        c.get(path)  # warm: templates, statement cache
        samples = []
        for _ in range(rounds):
            t = time.perf_counter()
            r = c.get(path)
            samples.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200, (path, r.status_code)
            assert name == "baseline" or 'class="filters"' in r.text, path
        out[name] = p95(samples)
        print(
            f"  {name:<9} p95 {out[name]:7.1f} ms  median {statistics.median(samples):7.1f} ms"
            f"  ({path})",
            flush=True,
        )
    client.close()
    anonymous.close()
    return out


def run_case(name: str, db_url: str, workdir: Path, events: int, rounds: int) -> dict[str, float]:
    cfg = parse_central_config(
        {
            "data_dir": str(workdir / name),
            "database": {"url": db_url},
            "web": {"host": "127.0.0.1", "port": free_port()},
        },
        "bench",
    )
    store = Store(cfg.database_url)
    Accounts(store.engine).add("bench", Role.VIEWER, PASSWORD)
    took = fill(store, events)
    print(f"{name}: {events:,} events stored in {took:.0f} s", flush=True)
    server = WebServer(cfg, store).start()
    url = f"http://127.0.0.1:{cfg.web.effective_port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url + "/login", timeout=2)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        return time_pages(url, rounds)
    finally:
        server.stop()
        store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--no-postgres", action="store_true", help="SQLite only.")
    args = ap.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="roadside-console-bench-") as tmp:
        workdir = Path(tmp)
        results["sqlite"] = run_case(
            "sqlite", f"sqlite:///{workdir / 'central.db'}", workdir, args.events, args.rounds
        )
        if not args.no_postgres:
            try:
                with postgres.server_for_tests() as admin, postgres.scratch_database(admin) as url:
                    results["postgres"] = run_case(
                        "postgres", url, workdir, args.events, args.rounds
                    )
            except postgres.PostgresNotAvailable as exc:
                print(f"postgres: skipped ({exc})", flush=True)
    fields = [
        f"{backend}_{page}_p95_ms={value:.0f}"
        for backend, pages in results.items()
        for page, value in pages.items()
    ]
    print("RESULT " + " ".join(fields) + f" target_ms={TARGET_MS}")


if __name__ == "__main__":
    os.environ.setdefault("ROADSIDE_LANG", "vi")
    main()
