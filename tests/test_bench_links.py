"""The uplink and transfer benchmarks run end to end (short versions; `make bench` runs the
full ones)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every test here runs the real agent or a benchmark

BENCH = Path(__file__).resolve().parents[1] / "bench"


def run_bench(name: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(BENCH / name), *args], capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()[-1]


def test_uplink_bench_short_run() -> None:
    last = run_bench("uplink.py", "--seconds", "6", "--backlog", "500", "--rounds", "1")
    m = re.fullmatch(
        r"RESULT event_bytes=(\d+) drain_eps=(\d+) drain_vs_bare=([\d.]+) "
        r"latency_p99_ms=(\d+)",
        last,
    )
    assert m, last
    # behaviour, not speed: compact events, and the whole backlog drained
    assert 0 < int(m[1]) <= 200 and int(m[2]) > 0 and float(m[3]) > 0


def test_transfer_bench_short_run(footage: Path) -> None:
    last = run_bench(
        "transfer.py",
        "--file",
        str(footage / "traffic_frames.mp4"),
        "--kbps",
        "1024",
        "--latency-ms",
        "50",
        "--cut-every",
        "3",
        "--down",
        "0.5",
        "--reconnect-min",
        "0.2",
        "--baseline-extra",
        "2",
        "--timeout",
        "120",
    )
    m = re.fullmatch(r"RESULT goodput_ratio=([\d.]+) baseline_done=(\d)", last)
    assert m, last
    assert float(m[1]) > 0  # the chunked transfer arrived intact across the cuts
