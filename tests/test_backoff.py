"""Retry waits: roadside.backoff on its own, and the station's paho clients waiting by it."""

from __future__ import annotations

import itertools
import random
import threading
import time
from pathlib import Path

import pytest

from roadside.backoff import Backoff
from roadside.central.config import BrokerConfig
from roadside.central.mqtt import ReconnectWaits, make_client
from roadside.testing.broker import LocalBroker
from roadside.testing.ports import free_port


def test_waits_double_from_min_to_max_and_each_is_jittered_within_its_step() -> None:
    backoff = Backoff(0.5, 10.0, rng=random.Random(1))
    steps = [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]
    for step in steps:
        wait = backoff.next()
        assert step / 2 <= wait <= step
    assert backoff.attempts == len(steps)


def test_jitter_spreads_a_district_over_the_step() -> None:
    """Boxes that lose the broker together do not come back in the same instant."""
    firsts = [Backoff(2.0, 60.0, rng=random.Random(seed)).next() for seed in range(200)]
    assert min(firsts) >= 1.0 and max(firsts) <= 2.0
    assert max(firsts) - min(firsts) > 0.8  # spread over most of [1, 2]
    assert len({round(w, 3) for w in firsts}) > 150


def test_the_same_seed_gives_the_same_waits() -> None:
    a = Backoff(0.1, 5.0, rng=random.Random(42))
    b = Backoff(0.1, 5.0, rng=random.Random(42))
    assert [a.next() for _ in range(12)] == [b.next() for _ in range(12)]


def test_reset_starts_again_from_min() -> None:
    backoff = Backoff(1.0, 60.0, rng=random.Random(3))
    for _ in range(10):
        backoff.next()
    assert backoff.next() > 30.0
    backoff.reset()
    assert backoff.attempts == 0
    assert 0.5 <= backoff.next() <= 1.0


def test_a_very_long_outage_stays_at_max() -> None:
    backoff = Backoff(0.5, 120.0, rng=random.Random(5))
    backoff.attempts = 10_000  # months of failures: no overflow, still capped
    assert 60.0 <= backoff.next() <= 120.0


@pytest.mark.parametrize(("low", "high"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_bounds_that_make_no_sense_are_refused(low: float, high: float) -> None:
    with pytest.raises(ValueError, match="0 < min_s <= max_s"):
        Backoff(low, high)


def test_a_station_client_reconnects_by_the_backoff_and_resets_once_connected(
    tmp_path: Path,
) -> None:
    """paho's network thread waits what ReconnectWaits sets: the backoff's jittered waits
    while the broker is away, and from the shortest wait again after a connection."""
    port = free_port()
    client = make_client(BrokerConfig(host="127.0.0.1", port=port), "backoff-test")
    waits = ReconnectWaits(client, Backoff(0.2, 0.8, rng=random.Random(9)))
    expected = Backoff(0.2, 0.8, rng=random.Random(9))  # the same draws, in the same order
    failures: list[float] = []
    up = threading.Event()

    def on_connect(_c: object, _u: object, _f: object, reason: object, _p: object) -> None:
        if not getattr(reason, "is_failure", True):
            waits.connected()
            up.set()

    client.on_connect_fail = lambda _c, _u: failures.append(time.monotonic())
    client.on_connect = on_connect
    client.connect_async("127.0.0.1", port)
    client.loop_start()
    try:
        deadline = time.monotonic() + 20
        while len(failures) < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(failures) >= 6
        gaps = [b - a for a, b in itertools.pairwise(failures[:6])]
        for gap in gaps:
            wait = expected.next()
            assert wait - 0.02 <= gap <= wait + 0.5, (gaps, wait)
        with LocalBroker(tmp_path / "broker", port=port):
            assert up.wait(10)
            assert waits.backoff.attempts == 1  # reset, and the first wait set for a loss
    finally:
        client.disconnect()
        client.loop_stop()
