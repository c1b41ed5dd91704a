"""Ingest throughput: event messages per second from the broker into the store.

One run, one command (``python bench/ingest.py``): a private mosquitto, then for SQLite and a
real PostgreSQL (a private server started for the run, or the one ``$ROADSIDE_TEST_POSTGRES``
names), with one and with two ``roadside central run`` workers on one shared subscription. Each
case: the workers' sessions are made, the workers stop, a backlog of event messages (start and
end of each event) is queued at the broker, the workers start again and the clock runs from the
first stored row to the last. Baseline in the same run: a bare paho-mqtt subscriber draining the
same backlog without storing anything (the ceiling).

Last line: ``RESULT sqlite_eps=<x> postgres_eps=<y> two_worker_speedup=<z>`` (one worker
each; the speedup is PostgreSQL's, two workers over one).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from roadside.ids import new_id
from roadside.testing import postgres
from roadside.testing.broker import LocalBroker
from roadside.wire.messages import EventMsg
from roadside.wire.topics import topic

ROADSIDE = str(Path(sys.executable).parent / "roadside")


def backlog(events: int) -> list[tuple[str, bytes]]:
    """Start and end messages of ``events`` events from four boxes, in the order a box sends."""
    t = time.time() - 86400
    out = []
    for i in range(events):
        eid = new_id(t + i)
        for k in ("s", "e"):
            msg = EventMsg(
                id=eid,
                phase=k,
                label=("car", "person", "motorcycle")[i % 3],
                score=0.81,
                first_seen=t + i,
                last_seen=t + i + (3.2 if k == "e" else 0.4),
                box=(0.412, 0.388, 0.061, 0.094),
                track=i % 500,
                direction="NE",
                zones=["left-lanes"],
            )
            out.append((topic(f"box-{i % 4:02d}", "event"), msg.encode()))
    return out


def publish(port: int, messages: list[tuple[str, bytes]]) -> None:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-box", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = [client.publish(t, p, qos=1) for t, p in messages]
    for info in infos:
        info.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()


def bare_drain(port: int, messages: list[tuple[str, bytes]]) -> float:
    """Messages/s a plain subscriber takes the same backlog at (no parsing, no storing)."""
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    got = 0
    first: list[float] = []
    done = threading.Event()

    def on_message(_c: mqtt.Client, _u: object, _m: mqtt.MQTTMessage) -> None:
        nonlocal got
        if not first:
            first.append(time.monotonic())
        got += 1
        if got == len(messages):
            done.set()

    def session() -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-bare", protocol=mqtt.MQTTv5)
        c.on_message = on_message
        c.connect("127.0.0.1", port, clean_start=False, properties=props)
        return c

    c = session()
    c.loop_start()
    c.subscribe("$share/bare/roadside/v1/+/event", qos=1)[1]
    time.sleep(0.5)  # the SUBACK; then leave so the backlog queues in the session
    c.disconnect()
    c.loop_stop()
    publish(port, messages)
    c = session()
    c.loop_start()
    done.wait(300)
    elapsed = time.monotonic() - first[0]
    c.disconnect()
    c.loop_stop()
    return len(messages) / elapsed


class Workers:
    """``n`` ``roadside central run`` processes on one config."""

    def __init__(self, config: Path, n: int, logdir: Path) -> None:
        self.config, self.n, self.logdir = config, n, logdir
        self.procs: list[subprocess.Popen] = []

    def start(self, tag: str) -> None:
        logs = [self.logdir / f"worker{i}-{tag}.log" for i in range(self.n)]
        self.procs = [
            subprocess.Popen(
                [
                    ROADSIDE,
                    "-v",
                    "central",
                    "run",
                    "--config",
                    str(self.config),
                    "--worker",
                    str(i),
                    "--no-receiver",
                ],
                stdout=subprocess.DEVNULL,
                stderr=open(log, "wb"),  # noqa: SIM115
            )
            for i, log in enumerate(logs)
        ]
        deadline = time.monotonic() + 60
        while not all("connected" in log.read_text() for log in logs):
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers did not connect; see {self.logdir}")
            time.sleep(0.05)

    def stop(self) -> None:
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            p.wait(60)


def run_case(
    port: int, url: str, workers: int, messages: list[tuple[str, bytes]], workdir: Path
) -> float:
    """Messages/s stored by ``workers`` workers; each case has its own group (and sessions)."""
    workdir.mkdir(parents=True)
    config = workdir / "central.toml"
    config.write_text(
        f'data_dir = "{workdir}"\n[broker]\nport = {port}\n'
        f'[database]\nurl = "{url}"\n'
        f'[ingest]\ngroup = "{workdir.name}"\nbatch_max = 1000\nreceive_max = 2000\n'
    )
    pool = Workers(config, workers, workdir)
    pool.start("setup")  # sessions and schema
    pool.stop()
    publish(port, messages)
    engine = sa.create_engine(url)
    expected = len(messages) // 2

    def stored() -> int:
        with engine.connect() as conn:
            return conn.scalar(sa.text("SELECT count(*) FROM events WHERE phase = 'e'")) or 0

    pool.start("run")
    try:
        deadline = time.monotonic() + 600
        while stored() == 0:
            if time.monotonic() > deadline:
                raise RuntimeError("nothing was stored within 600 s")
            time.sleep(0.01)
        t0 = time.monotonic()
        while stored() < expected:
            if time.monotonic() > deadline:
                raise RuntimeError("the backlog was not stored within 600 s")
            time.sleep(0.02)
        elapsed = time.monotonic() - t0
    finally:
        pool.stop()
    with engine.connect() as conn:
        total = conn.scalar(sa.text("SELECT count(*) FROM events"))
    engine.dispose()
    if total != expected:
        raise RuntimeError(f"{total} event rows for {expected} events")
    return len(messages) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--events", type=int, default=10_000, help="events in the backlog (each is two messages)"
    )
    args = parser.parse_args()
    messages = backlog(args.events)
    results: dict[tuple[str, int], float] = {}
    with (
        tempfile.TemporaryDirectory(prefix="roadside-bench-ingest-") as tmp,
        LocalBroker(Path(tmp) / "broker") as broker,
    ):
        base = Path(tmp)
        bare = bare_drain(broker.port, messages)
        print(
            f"baseline: bare paho subscriber drains {bare:,.0f} msg/s ({len(messages)} messages)",
            flush=True,
        )
        for workers in (1, 2):
            url = f"sqlite:///{base / f'sqlite-{workers}' / 'central.db'}"
            results["sqlite", workers] = run_case(
                broker.port, url, workers, messages, base / f"sqlite-{workers}"
            )
            print(
                f"sqlite     {workers} worker(s): {results['sqlite', workers]:8,.0f} msg/s "
                f"({results['sqlite', workers] / bare:.2f} of bare)",
                flush=True,
            )
        try:
            with postgres.server_for_tests() as admin:
                for workers in (1, 2):
                    with postgres.scratch_database(admin) as url:
                        results["pg", workers] = run_case(
                            broker.port, url, workers, messages, base / f"pg-{workers}"
                        )
                    print(
                        f"postgresql {workers} worker(s): {results['pg', workers]:8,.0f} "
                        f"msg/s ({results['pg', workers] / bare:.2f} of bare)",
                        flush=True,
                    )
        except postgres.PostgresNotAvailable as exc:
            print(f"postgresql skipped: {exc}")
    sqlite_speedup = results["sqlite", 2] / results["sqlite", 1]
    print(
        f"two workers over one: sqlite {sqlite_speedup:.2f}x"
        + (
            f", postgresql {results['pg', 2] / results['pg', 1]:.2f}x"
            if ("pg", 1) in results
            else ""
        )
    )
    pg_eps = results.get(("pg", 1), 0.0)
    speedup = results["pg", 2] / results["pg", 1] if ("pg", 1) in results else sqlite_speedup
    print(
        f"RESULT sqlite_eps={results['sqlite', 1]:.0f} postgres_eps={pg_eps:.0f} "
        f"two_worker_speedup={speedup:.2f}"
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
