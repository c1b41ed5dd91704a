"""The clips benchmark runs end to end (a short version; `python bench/clips.py` is the full one).

The ffmpeg command is optional here: without it the comparison reads nan.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every test here runs the real agent or a benchmark

BENCH = Path(__file__).resolve().parents[1] / "bench" / "clips.py"


def test_clips_bench_short_run() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    last = proc.stdout.strip().splitlines()[-1]
    m = re.fullmatch(
        r"RESULT cut_vs_ffmpeg=([\d.]+|nan) encode_cpu_per_s=([\d.]+) "
        r"events_mode_write_ratio=([\d.]+)",
        last,
    )
    assert m, last
    cut, cpu, ratio = float(m[1]), float(m[2]), float(m[3])
    assert math.isnan(cut) or cut > 0
    assert cpu > 0
    # Behaviour, not speed: two 8 s events in 5 minutes keep well under half the bytes.
    assert 0.05 < ratio < 0.5
