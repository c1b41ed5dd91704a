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
        r"RESULT busy_vs_raw=([\d.]+) quiet_cpu_vs_naive=([\d.]+) peak_rss_mb=(\d+)", last
    )
    assert m, last
    busy, quiet, rss = float(m[1]), float(m[2]), int(m[3])
    assert busy > 0 and rss > 0
    # Behaviour, not speed: on a still scene the gate must skip the detector almost always.
    assert quiet < 0.5
