"""The console benchmark runs end to end (a short version; `make bench` runs the full one)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "console.py"


@pytest.mark.slow
def test_console_bench_short_run() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--events", "3000", "--rounds", "3"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.strip().splitlines()[-1]
    fields = dict(re.findall(r"(\w+)=(\d+)", last))
    assert last.startswith("RESULT ") and fields["target_ms"] == "200", last
    for page in ("first", "filtered", "deep", "range"):
        assert int(fields[f"sqlite_{page}_p95_ms"]) > 0, last
