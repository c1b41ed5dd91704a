"""Log lines: the journal's form under systemd, a readable one elsewhere, and ``[logging]``.

The agent runs as a real process here (``roadside agent run`` on real footage and weights);
the unit's own command line under a journal stream is in tests/test_systemd.py.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from types import TracebackType

import pytest
import tomli_w

from roadside.central.config import parse_central_config
from roadside.config.agent import parse_config
from roadside.errors import ConfigError
from roadside.logs import JournalFormatter, LoggingConfig, is_journal, journal_priority, moved
from roadside.testing.configs import agent_config

ROADSIDE = str(Path(sys.executable).with_name("roadside"))
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def record(level: int, msg: str, exc_info: ExcInfo | None = None) -> logging.LogRecord:
    return logging.LogRecord("roadside.agent.x", level, __file__, 1, msg, None, exc_info)


def test_journal_lines_carry_the_priority_on_every_line() -> None:
    fmt = JournalFormatter()
    assert fmt.format(record(logging.INFO, "box state: online")) == (
        "<6>roadside.agent.x: box state: online"
    )
    assert fmt.format(record(logging.WARNING, "w")).startswith("<4>")
    assert fmt.format(record(logging.DEBUG, "d")).startswith("<7>")
    try:
        raise RuntimeError("camera gone")
    except RuntimeError:
        lines = fmt.format(record(logging.ERROR, "capture failed", sys.exc_info())).splitlines()
    assert len(lines) > 3 and all(ln.startswith("<3>") for ln in lines), lines
    assert lines[-1] == "<3>RuntimeError: camera gone"
    assert [journal_priority(n) for n in (50, 40, 30, 20, 10)] == [2, 3, 4, 6, 7]


def test_the_journal_is_recognised_by_device_and_inode(tmp_path: Path) -> None:
    with open(tmp_path / "journal", "w") as journal, open(tmp_path / "other", "w") as other:
        st = os.fstat(journal.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert is_journal(journal, env)
        assert not is_journal(other, env)  # stderr redirected away from the journal
        assert not is_journal(journal, {})
        assert not is_journal(journal, {"JOURNAL_STREAM": "garbage"})
        assert not is_journal(journal, {"JOURNAL_STREAM": f"{st.st_dev}:"})
    import io

    assert not is_journal(io.StringIO(), env)  # no file behind it


def test_minus_v_and_minus_q_move_the_level_and_stop_at_the_ends() -> None:
    assert moved(logging.INFO, -1) == logging.DEBUG
    assert moved(logging.INFO, -5) == logging.DEBUG
    assert moved(logging.INFO, 1) == logging.WARNING
    assert moved(logging.WARNING, 9) == logging.ERROR
    assert moved(logging.WARNING, -1) == logging.INFO


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ({"level": "loud"}, ["logging.level = 'loud'", "'debug'", "'error'"]),
        ({"modules": {"roadside.agent.uplink": "chatty"}}, ["logging.modules", "'chatty'"]),
        ({"modules": {"roadside agent": "info"}}, ["'roadside agent' is not a module name"]),
        ({"colour": True}, ["unknown key 'logging.colour'"]),
    ],
)
def test_a_bad_logging_table_is_one_line_for_agent_and_station(
    tmp_path: Path, table: dict, words: list[str]
) -> None:
    doc = agent_config(tmp_path, tmp_path / "clip.mp4", logging=table)
    for parse, data in ((parse_config, doc), (parse_central_config, {"logging": table})):
        with pytest.raises(ConfigError) as err:
            parse(data)
        message = str(err.value)
        assert "\n" not in message and all(w in message for w in words), message


def test_levels_are_read_in_any_case() -> None:
    cfg = LoggingConfig.model_validate({"level": "WARNING", "modules": {"a.b": "Debug"}})
    assert cfg.level == "warning" and cfg.modules == {"a.b": "debug"}
    assert (
        parse_config(
            {"device": "a", "source": {"path": "x"}, "logging": {"level": "error"}}
        ).logging.level
        == "error"
    )


def _run_agent(tmp_path: Path, footage: Path, logging_table: dict, *flags: str) -> str:
    doc = agent_config(tmp_path, footage / "traffic_frames.mp4", logging=logging_table)
    doc["source"].update(pace="native", loop=True)
    path = tmp_path / "agent.toml"
    path.write_text(tomli_w.dumps(doc))
    env = {k: v for k, v in os.environ.items() if k not in ("JOURNAL_STREAM", "NOTIFY_SOCKET")}
    proc = subprocess.run(
        [ROADSIDE, *flags, "agent", "run", "--config", str(path), "--duration", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stderr


def test_a_module_level_from_the_config_takes_effect(tmp_path: Path, footage: Path) -> None:
    """Overall warnings only, but the watchdog at info: its lines come, the others do not;
    ``-v`` moves the overall level back to info."""
    table = {"level": "warning", "modules": {"roadside.agent.hardware.watchdog": "info"}}
    quiet = _run_agent(tmp_path, footage, table)
    assert "INFO roadside.agent.hardware.watchdog: pipeline running: ready" in quiet, quiet
    assert "roadside.agent.cli" not in quiet, quiet  # its "starting ..." line is INFO
    assert TIMESTAMP.search(quiet)  # not the journal: readable lines with the time

    verbose = _run_agent(tmp_path, footage, table, "-v")
    assert "INFO roadside.agent.cli: starting test-box: source file" in verbose, verbose


def test_by_default_the_agent_logs_info(tmp_path: Path, footage: Path) -> None:
    out = _run_agent(tmp_path, footage, {})
    assert "INFO roadside.agent.cli: starting test-box" in out, out
    assert "INFO roadside.agent.hardware.watchdog: box state: online" in out, out
    assert "INFO roadside" not in _run_agent(tmp_path, footage, {}, "-q")
