"""The mountain-link soak, short: a minute of broker restarts, link cuts, agent kills, clip
requests and malformed commands against the whole system, and nothing lost or doubled.

`python bench/soak.py` is the full one (ten minutes); docs/reliability.md has its figures.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every test here runs the real agent or a benchmark

BENCH = Path(__file__).resolve().parents[1] / "bench" / "soak.py"
RESULT = re.compile(
    r"RESULT lost=(\d+) dup=(\d+) clips_ok=(\d+)/(\d+) crashes=(\d+) "
    r"restarts=(\d+) cuts=(\d+) kills=(\d+)"
)


def test_short_soak_loses_nothing(tmp_path: Path, shared: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--duration", "60", "--work", str(tmp_path / "soak")],
        capture_output=True,
        text=True,
        timeout=400,
        env={**os.environ, "ROADSIDE_SHARED": str(shared)},
    )
    report = f"{proc.stdout}\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, report
    m = RESULT.fullmatch(proc.stdout.strip().splitlines()[-1])
    assert m, report
    lost, dup, ok, asked, crashes, restarts, cuts, kills = map(int, m.groups())
    assert (lost, dup, crashes) == (0, 0, 0), report
    assert asked >= 1 and ok == asked, report
    assert restarts >= 1 and cuts >= 1 and kills >= 1, report  # the chaos did happen
    fuzz = re.search(r"malformed commands sent .*?│\s+(\d+) / (\d+) / (\d+) / (\d+)", proc.stdout)
    assert fuzz, report
    sent, errors, twice, other = map(int, fuzz.groups())
    assert sent > 0 and errors == sent and twice == other == 0, report
    over = re.search(r"samples over budget\s+│\s+(\d+)", proc.stdout)
    assert over and over[1] == "0", report
