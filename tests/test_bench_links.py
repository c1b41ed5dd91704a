"""The uplink, transfer and update benchmarks run end to end (short versions; `make bench` runs the
full ones)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every test here runs the real agent or a benchmark

BENCH = Path(__file__).resolve().parents[1] / "bench"


def bench_lines(name: str, *args: str) -> list[str]:
    proc = subprocess.run(
        [sys.executable, str(BENCH / name), *args], capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout.strip().splitlines()


def run_bench(name: str, *args: str) -> str:
    return bench_lines(name, *args)[-1]


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


def test_update_bench_short_run() -> None:
    """Three boxes (one a full agent) take a 1 MB release over links cut every 3 s."""
    lines = bench_lines(
        "update.py",
        "--boxes",
        "3",
        "--mb",
        "1",
        "--kbps",
        "1024",
        "--latency-ms",
        "50",
        "--cut-every",
        "3",
        "--down",
        "0.5",
        "--settle",
        "2",
        "--timeout",
        "150",
    )
    m = re.fullmatch(r"RESULT update_goodput=([\d.]+) rolled_back=(\d+) failed=(\d+)", lines[-1])
    assert m, lines[-1]
    assert float(m[1]) > 0 and (m[2], m[3]) == ("0", "0"), "\n".join(lines)
    boxes = [line for line in lines if line.startswith("  box-")]
    assert len(boxes) == 3 and "agent restarted into it (exit 75)" in boxes[0]
    cuts = [int(c) for c in re.findall(r"across (\d+) cuts", "\n".join(boxes))]
    assert sum(cuts) >= 2, "\n".join(boxes)  # the downloads went through cuts
