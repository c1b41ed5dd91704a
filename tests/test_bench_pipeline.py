"""The pipeline benchmark runs end to end (a short version; `make bench` runs the full one)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every test here runs the real agent or a benchmark

BENCH = Path(__file__).resolve().parents[1] / "bench" / "pipeline.py"


def test_pipeline_bench_short_run() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--frames", "40"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    m = re.fullmatch(
        r"RESULT busy_cpu_per_invoke_vs_raw=([\d.]+) busy_invokes_per_frame=([\d.]+) "
        r"busy_cpu_ms_per_frame=([\d.]+) quiet_cpu_vs_naive=([\d.]+) peak_rss_mb=(\d+)",
        last,
    )
    assert m, last
    per_invoke, invokes, cpu_ms, quiet, rss = (float(v) for v in m.groups())
    assert per_invoke > 0 and cpu_ms > 0 and rss > 0
    # Behaviour, not speed: five rounds a second of a 30 fps clip, a few crops each, so well
    # under one invoke a frame on average but more than none...
    assert 0.05 < invokes < 1.5
    # ...and on a still scene the gate must skip the detector almost always.
    assert quiet < 0.5
