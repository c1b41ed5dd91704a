"""Events page time: the console's events page on a store of a million events.

One command (``python bench/console.py``): for SQLite and a real PostgreSQL, a store is
filled with ``--events`` events (default 1,000,000) from 20 boxes over 30 days, with classes,
directions and zones in road-like proportions; then the console runs (uvicorn, a logged-in
officer over HTTP, as a browser would ask) and each page below is fetched ``--rounds``
times, timing the whole request:
- ``first``: the newest events, no filter;
- ``filtered``: one box, one class, one direction (a rare combination: about 0.03 %);
- ``deep``: the page 20 pages back from the newest (following "older" links);
- ``range``: one class over one day, a week ago.

Last line: ``RESULT sqlite_first_p95_ms=… sqlite_filtered_p95_ms=… postgres_first_p95_ms=…
postgres_filtered_p95_ms=… target_ms=200`` (plus the other pages' p95).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # pg.py: find or start a PostgreSQL server

from roadside.central.accounts import Accounts, Role  # noqa: E402
from roadside.central.config import parse_central_config  # noqa: E402
from roadside.central.local_broker import free_port  # noqa: E402
from roadside.central.store import Store  # noqa: E402
from roadside.central.store import tables as T  # noqa: E402
from roadside.central.web.server import WebServer  # noqa: E402
from roadside.ids import new_id  # noqa: E402

CLASSES = (("car", 60), ("motorcycle", 25), ("person", 8), ("truck", 5), ("bus", 2))
DIRECTIONS = ("N", "NE", "E", "SE", "S", "SW", "W", "NW")
ZONES = ("left-lanes", "right-lanes", "junction", "shoulder")
DAYS = 30
BATCH = 10_000
TARGET_MS = 200
PASSWORD = "bench-password-1"


def fill(store: Store, n: int, seed: int = 7) -> float:
    """``n`` ended events over the last DAYS days; returns seconds taken."""
    rng = random.Random(seed)
    names = [c for c, _w in CLASSES]
    weights = [w for _c, w in CLASSES]
    now = time.time()
    started = time.monotonic()
    rows = []
    with store.engine.begin() as conn:
        conn.execute(
            T.devices.insert(),
            [
                {"device": f"box-{i:02d}", "first_seen": now, "last_seen": now, "online": True}
                for i in range(20)
            ],
        )
    for i in range(n):
        t0 = now - DAYS * 86400 * rng.random()
        rows.append(
            {
                "id": new_id(t0),
                "device": f"box-{rng.randrange(20):02d}",
                "phase": "e",
                "cls": rng.choices(names, weights)[0],
                "score": 0.5 + rng.random() / 2,
                "t0": t0,
                "t1": t0 + 1 + 5 * rng.random(),
                "box": [0.4, 0.4, 0.1, 0.1],
                "track": i % 1000,
                "direction": rng.choice(DIRECTIONS),
                "zones": rng.sample(ZONES, rng.randrange(3)) or None,
                "unsynced": False,
                "received": t0 + 1,
                "updated": t0 + 6,
            }
        )
        if len(rows) == BATCH or i == n - 1:
            with store.engine.begin() as conn:
                conn.execute(T.events.insert(), rows)
            rows.clear()
    with store.engine.begin() as conn:
        if store.engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE events")
        else:
            conn.exec_driver_sql("ANALYZE")
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
    for name, path in pages.items():
        client.get(path)  # warm: templates, statement cache
        samples = []
        for _ in range(rounds):
            t = time.perf_counter()
            r = client.get(path)
            samples.append((time.perf_counter() - t) * 1000)
            assert r.status_code == 200 and 'id="events"' in r.text, (path, r.status_code)
        out[name] = p95(samples)
        print(
            f"  {name:<9} p95 {out[name]:7.1f} ms  median {statistics.median(samples):7.1f} ms"
            f"  ({path})",
            flush=True,
        )
    client.close()
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
            import pg

            admin, server, why = pg.find_or_start()
            if admin is None:
                print(f"postgres: skipped ({why})", flush=True)
            else:
                try:
                    with pg.scratch_database(admin) as url:
                        results["postgres"] = run_case(
                            "postgres", url, workdir, args.events, args.rounds
                        )
                finally:
                    if server is not None:
                        server.stop()
    fields = [
        f"{backend}_{page}_p95_ms={value:.0f}"
        for backend, pages in results.items()
        for page, value in pages.items()
    ]
    print("RESULT " + " ".join(fields) + f" target_ms={TARGET_MS}")


if __name__ == "__main__":
    os.environ.setdefault("ROADSIDE_LANG", "vi")
    main()
