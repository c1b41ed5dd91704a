"""The hostile-box soak, short: one box with a valid certificate sends poison, subscribes to
``$share/...``, forges ids, trespasses on other boxes' topics and floods commands, beside a
real agent and a real uplink; the honest boxes lose nothing and keep every row as they sent it.

`python bench/hostile.py` is the full one (five minutes); docs/reliability.md has its figures.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # the real agent, mosquitto with TLS, the central service

BENCH = Path(__file__).resolve().parents[1] / "bench" / "hostile.py"
RESULT = re.compile(
    r"RESULT lost=(\d+) dup=(\d+) hostile_effects=(\d+) honest=(\d+) tried=(\d+) "
    r"rejects=(\d+) refused=(\d+) crashes=(\d+)"
)


def test_a_hostile_box_changes_nothing_of_the_honest_ones(tmp_path: Path, shared: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--duration",
            "25",
            "--drain",
            "20",
            "--work",
            str(tmp_path / "hostile"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "ROADSIDE_SHARED": str(shared)},
    )
    report = f"{proc.stdout}\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, report
    m = RESULT.fullmatch(proc.stdout.strip().splitlines()[-1])
    assert m, report
    lost, dup, effects, honest, tried, rejects, refused, crashes = map(int, m.groups())
    assert (lost, dup, effects, crashes) == (0, 0, 0, 0), report
    assert honest > 100 and tried > 500, report  # both sides did run
    assert rejects > 0 and refused > 0, report
    clips = re.search(r"clip requests to A verified .*?│\s+(\d+) / (\d+)", proc.stdout)
    assert clips and int(clips[2]) >= 1 and clips[1] == clips[2], report
    closed = re.search(
        r"8 MiB payloads that closed the hostile connection\s+│\s+(\d+)", proc.stdout
    )
    assert closed and int(closed[1]) >= 1, report
