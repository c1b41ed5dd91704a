"""The officer commands on what a hostile or broken box left in a real SQLite store: every
listing still prints, box strings show as plain text with control characters written out,
and times or numbers no calendar holds show as ``?`` (JSON: null)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import tomli_w
from click.testing import CliRunner

from roadside.central.accounts import ENV_OFFICER, Accounts, Role
from roadside.central.config import load_central_config
from roadside.central.store import Store
from roadside.central.store import tables as T
from roadside.cli import main
from roadside.errors import ExitCode

OFFICER = "lan"
ESC = "\x1b[2J\x1b]0;pwned\x07"  # clear the screen, retitle the terminal, bell
CSI = "\x9b31m"  # the 8-bit form of ESC [


@pytest.fixture
def hostile(tmp_path: Path) -> Path:
    """A station config whose store holds one sane box and one whose records are hostile."""
    path = tmp_path / "central.toml"
    path.write_text(tomli_w.dumps({"data_dir": str(tmp_path / "central"), "broker": {"port": 1}}))
    store = Store(load_central_config(path).database_url)
    Accounts(store.engine).add(OFFICER, Role.INVESTIGATOR, "investigator-password-1")
    now = 1_780_000_000.0
    with store.engine.begin() as conn:
        for device, software, t, health in (
            ("good-box", "roadside 1.2", now, {"load_1m": 0.5, "outbox_depth": 2}),
            (
                "bad-box",
                f"evil{ESC}[/oops][red]x",
                1e400,
                {"load_1m": "high", "memory_mib": "lots", "outbox_depth": math.nan},
            ),
        ):
            conn.execute(
                T.devices.insert(),
                {
                    "device": device,
                    "first_seen": now,
                    "last_seen": t,
                    "online": True,
                    "status": {"software": software, "reason": 7},
                    "health": health,
                    "health_at": t,
                },
            )
        base = {"phase": "e", "box": [0, 0, 1, 1], "track": 1, "zones": None, "unsynced": True}
        base |= {"colour": None}
        base |= {"received": now, "updated": now, "direction": None}
        conn.execute(
            T.events.insert(),
            [
                {**base, "id": "A" * 26, "device": "good-box", "cls": "car", "score": 0.9}
                | {"t0": now, "t1": now + 2.0},
                {**base, "id": "B" * 26, "device": "bad-box", "cls": "[/oops]", "score": math.inf}
                | {"t0": 1e400, "t1": -math.inf, "colour": f"red{CSI}", "zones": [f"z{ESC}"]},
                {**base, "id": "C" * 26, "device": "bad-box", "cls": "[bold red]car"}
                | {"score": 0.5, "t0": 1e300, "t1": -1e300, "direction": "\u202eN"},
            ],
        )
        conn.execute(
            T.line_counts.insert(),
            {"count_id": "D" * 26, "line": f"l[/]{ESC}", "cls": "car", "direction": "N"}
            | {"device": "bad-box", "t0": now - 60, "t1": 1e400, "n": 3},
        )
    store.close()
    return path


def _officer(*args: str) -> tuple[int, str, str]:
    env = {ENV_OFFICER: OFFICER, "ROADSIDE_LANG": "en"}
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def _no_raw_controls(text: str) -> None:
    raw = [ch for ch in text if ch not in "\n" and (ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F)]
    assert not raw, f"raw control characters reach the terminal: {raw!r}"
    assert "\u202e" not in text


@pytest.mark.parametrize("command", ["devices", "events", "counts"])
def test_hostile_box_records_do_not_break_or_spoof_the_tables(hostile: Path, command: str) -> None:
    args = ["--since", "2020-01-01 00:00"] if command == "counts" else []
    code, out, err = _officer(command, "--config", str(hostile), *args)
    assert code == 0, err
    _no_raw_controls(out)
    assert "\\x1b[2J" in out  # written out, so the officer sees what the box sent


def test_events_table_shows_markup_and_bad_times_as_they_are(hostile: Path) -> None:
    code, out, _ = _officer("events", "--config", str(hostile))
    assert code == 0
    assert "[/oops]" in out and "[bold red]car" in out  # the class as stored, not as markup
    assert "red\\x9b31m" in out and "\\u202eN" in out
    assert "good-box" in out and "0.90" in out  # the sane box's row is whole
    assert "? s" in out  # how long it was seen: unknown, not "nan s"


def test_devices_table_shows_a_bad_box_beside_a_good_one(hostile: Path) -> None:
    code, out, _ = _officer("devices", "--config", str(hostile))
    assert code == 0
    assert "evil\\x1b[2J" in out and "[/oops][red]x" in out
    assert "roadside 1.2" in out and "load 0.5" in out
    assert "? (? ago)" in out and "load ?" in out


def test_json_stays_valid_with_bad_stored_numbers(hostile: Path) -> None:
    code, out, _ = _officer("events", "--config", str(hostile), "--json")
    assert code == 0
    _no_raw_controls(out)
    rows = {
        e["id"]: e for e in json.loads(out, parse_constant=_refuse)
    }  # no NaN or Infinity: strict JSON parses it
    bad = rows["B" * 26]
    assert bad["start"] is None and bad["end"] is None and bad["score"] is None
    assert bad["colour"] == f"red{CSI}"  # escaped on the wire, the same string once read
    code, out, _ = _officer("devices", "--config", str(hostile), "--json")
    assert code == 0
    devices = {d["device"]: d for d in json.loads(out, parse_constant=_refuse)}
    assert devices["bad-box"]["last_seen"] is None and devices["bad-box"]["last_seen_ago_s"] is None
    assert devices["good-box"]["software"] == "roadside 1.2"


def _refuse(name: str) -> float:
    raise AssertionError(f"{name} is not JSON")


@pytest.mark.parametrize("device", ["+", "#", "a/b", "Box-1", "box\n", "x" * 64, ""])
def test_a_clip_from_a_box_name_no_box_can_have_is_one_usage_line(
    hostile: Path, broker, device: str
) -> None:
    config = hostile.parent / "live.toml"
    data = tomli_w.dumps(
        {"data_dir": str(hostile.parent / "central"), "broker": {"port": broker.port}}
    )
    config.write_text(data)
    code, out, err = _officer("clip", device, "--config", str(config), "--at", "now")
    assert code == ExitCode.USAGE, err
    assert err.startswith("error: ") and "is not a box name" in err
    assert len(err.strip().splitlines()) == 1 and out == ""
    code, _, err = _officer("snapshot", device, "--config", str(config))
    assert code == ExitCode.USAGE and "is not a box name" in err


def test_fleet_status_shows_box_strings_as_plain_text(hostile: Path, broker) -> None:
    """`roadside fleet status` on the same store: the bad box's version and the error of its
    last config change are shown as stored, not read as rich markup or sent to the terminal."""
    config = hostile.parent / "live.toml"
    data = tomli_w.dumps(
        {"data_dir": str(hostile.parent / "central"), "broker": {"port": broker.port}}
    )
    config.write_text(data)
    store = Store(load_central_config(config).database_url)
    with store.engine.begin() as conn:
        conn.execute(
            T.audit.insert(),
            {"id": "R" * 26, "at": 1.0, "requester": OFFICER, "action": "set_config"}
            | {"device": "bad-box", "params": {}, "state": "error", "finished": 2.0}
            | {"result": {"code": "bad_request"}, "detail": f"refused{ESC}[/oops]"},
        )
        conn.execute(
            T.fleet_config.insert(),
            {"device": "bad-box", "request_id": "R" * 26, "hash": "[bold]0123abcd"}
            | {"doc": {}, "requester": OFFICER, "at": 1.0},
        )
    store.close()
    code, out, err = _officer("fleet", "status", "--config", str(config))
    assert code == 0, err
    _no_raw_controls(out)
    assert "evil\\x1b[2J" in out and "[/oops][red]x" in out  # the version as stored
    assert "refused\\x1b[2J" in out and "[bold]0123abcd" in out  # the error, the hash
    assert "roadside 1.2" in out  # the sane box's row is whole
