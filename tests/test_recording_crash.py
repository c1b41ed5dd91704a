"""A recording agent killed with SIGKILL mid-segment: what survives, and the next start."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tomli_w

from roadside.agent.recording.index import INDEX_FILE, open_index
from roadside.testing.configs import agent_config
from roadside.testing.recordings import decoded_frames, indexed

pytestmark = pytest.mark.slow  # every test here runs the real agent or a benchmark


def wait_for(condition, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the agent exited early: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the recording")
        time.sleep(0.05)


def test_sigkill_mid_segment_loses_at_most_that_segment(tmp_path: Path, footage: Path) -> None:
    doc = agent_config(
        tmp_path,
        footage / "motorway_overpass.mp4",
        recording={
            "mode": "continuous",
            "segment_s": 2.0,
            "keyframe_s": 0.5,
            "encoder": {"width": 480, "preset": "ultrafast"},
        },
    )
    doc["source"].update(pace="native", loop=True)  # like a camera: it never ends
    cfg = tmp_path / "agent.toml"
    cfg.write_text(tomli_w.dumps(doc))
    root = Path(doc["data_dir"]) / "segments"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from roadside.cli import main; main()",
            "agent",
            "run",
            "--config",
            str(cfg),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:

        def mid_segment() -> bool:
            if not (root / INDEX_FILE).exists():
                return False
            parts = list(root.glob("*/*.ts.part"))
            return len(indexed(root)) >= 2 and bool(parts) and parts[0].stat().st_size > 150_000

        wait_for(mid_segment, 60.0, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stderr.close()

    # What the kill left: the index opens as it is, every indexed segment decodes whole.
    before = indexed(root)
    assert len(before) >= 2
    for seg in before:
        assert decoded_frames(root / seg.path) == seg.packets
    parts = list(root.glob("*/*.ts.part"))
    assert len(parts) == 1  # the segment being written

    # The next start: the partial segment is kept up to where it was cut, or dropped.
    index = open_index(root, writer=True)
    after = index.all()
    index.close()
    assert not list(root.glob("*/*.ts.part"))
    assert [s.path for s in after[: len(before)]] == [s.path for s in before]
    assert len(after) == len(before) + 1  # 150 KB in, it holds whole pictures
    salvaged = after[-1]
    assert salvaged.start == pytest.approx(before[-1].end, abs=0.1)
    assert decoded_frames(root / salvaged.path) == salvaged.packets >= 2
    on_disk = sorted(p.relative_to(root).as_posix() for p in root.glob("*/*.ts"))
    assert on_disk == sorted(s.path for s in after)

    # And an index lost with the card's last writes is rebuilt to the same.
    for extra in ("", "-wal", "-shm"):
        (root / (INDEX_FILE + extra)).unlink(missing_ok=True)
    rebuilt = indexed(root)
    assert [(s.path, s.packets, s.keyframes) for s in rebuilt] == [
        (s.path, s.packets, s.keyframes) for s in after
    ]
