"""Shared fixtures: where the real footage and weights are, and a real broker."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ROADSIDE_SHARED", ROOT.parent / "shared")).resolve()
MODELS = SHARED / "models"
FOOTAGE = SHARED / "footage"

sys.path.insert(0, str(Path(__file__).parent))  # tests/broker.py and other test helpers


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (MODELS.is_dir() and FOOTAGE.is_dir()):
        pytest.fail(f"real models and footage are needed in {SHARED} (set ROADSIDE_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def models_dir(shared: Path) -> Path:
    return shared / "models"


@pytest.fixture(scope="session")
def footage(shared: Path) -> Path:
    return shared / "footage"


@pytest.fixture
def broker(tmp_path: Path):
    """A real mosquitto on a free port, with persistence, stopped after the test."""
    from broker import Mosquitto

    with Mosquitto(tmp_path / "broker") as b:
        yield b


def agent_config(tmp_path: Path, source: Path, **sections: dict) -> dict:
    """A minimal agent config document for tests: a file source played fast, once."""
    doc: dict = {
        "device": "test-box",
        "data_dir": str(tmp_path / "data"),
        "source": {"kind": "file", "path": str(source), "pace": "fast", "loop": False},
        "detector": {"models_dir": str(MODELS)},
        "events": {"sinks": []},
    }
    for name, values in sections.items():
        doc.setdefault(name, {}).update(values)
    return doc


@pytest.fixture(autouse=True)
def no_failed_link_steps(caplog: pytest.LogCaptureFixture):
    """The uplink's sender survives a failing step by logging it; in a test that is a bug."""
    yield
    failed = [
        r
        for r in caplog.get_records("call")
        if r.name == "roadside.agent.uplink.sender" and r.levelname == "ERROR"
    ]
    assert not failed, f"the uplink sender failed: {failed[0].getMessage()} {failed[0].exc_text}"
