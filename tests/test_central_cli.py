"""The officer command line against a real mosquitto: events from the real agent on real
footage, and clip/snapshot requests answered (or not) by a box."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import tomli_w
from click.testing import CliRunner

from roadside.central.accounts import ENV_OFFICER, Accounts, Role
from roadside.central.config import load_central_config
from roadside.central.ingest import IngestWorker
from roadside.central.store import Store, queries
from roadside.cli import main
from roadside.testing.clients import BoxThatAnswers
from roadside.testing.configs import central_config
from roadside.testing.shared import models_dir
from roadside.testing.waiting import wait_until

ROADSIDE = str(Path(sys.executable).parent / "roadside")


OFFICER = "lan"


def _central_file(tmp_path: Path, port: int, **officer: object) -> Path:
    """The station's config, and the investigator account the officer commands run as."""
    path = tmp_path / "central.toml"
    path.write_text(
        tomli_w.dumps(
            {
                "data_dir": str(tmp_path / "central"),
                "broker": {"port": port},
                "officer": dict(officer),
            }
        )
    )
    store = Store(load_central_config(path).database_url)
    accounts = Accounts(store.engine)
    if accounts.get(OFFICER) is None:
        accounts.add(OFFICER, Role.INVESTIGATOR, "investigator-password-1")
        accounts.add("minh", Role.VIEWER, "viewer-password-1")
    store.close()
    return path


def _officer(*args: str, officer: str | None = OFFICER) -> tuple[int, str, str]:
    env = {ENV_OFFICER: officer, "ROADSIDE_LANG": "en"}
    result = CliRunner().invoke(main, list(args), catch_exceptions=False, env=env)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.slow
def test_events_from_the_agent_on_real_footage_reach_the_officer(
    broker, tmp_path: Path, footage: Path
) -> None:
    config = _central_file(tmp_path, broker.port)
    cfg = central_config(tmp_path, broker.port)
    store = Store(cfg.database_url)
    worker = IngestWorker(cfg, store).start()
    assert worker.wait_connected(10)
    produced = tmp_path / "box-events.jsonl"
    agent_toml = tmp_path / "agent.toml"
    agent_toml.write_text(
        tomli_w.dumps(
            {
                "device": "test-box",
                "data_dir": str(tmp_path / "box"),
                "source": {
                    "kind": "file",
                    "path": str(footage / "motorway_overpass.mp4"),
                    "pace": "fast",
                    "loop": False,
                },
                "detector": {"models_dir": str(models_dir())},
                "events": {
                    "sinks": ["mqtt", "jsonl"],
                    "jsonl_path": str(produced),
                    "count_interval_s": 5.0,
                },
                "mqtt": {"host": "127.0.0.1", "port": broker.port},
            }
        )
        + '[[events.lines]]\nname = "mid"\npoints = [[0.0, 0.5], [1.0, 0.5]]\n'
    )
    box = subprocess.run(
        [ROADSIDE, "agent", "run", "--config", str(agent_toml)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert box.returncode == 0, box.stderr[-2000:]
    lines = [json.loads(line) for line in produced.read_text().splitlines()]
    sent = {m["id"]: m for m in lines if m["type"] == "event" and m["k"] == "e"}
    assert len(sent) >= 3, "the footage has traffic: the box must report it"

    def stored_ended() -> set[str]:
        with store.connect() as conn:
            return {
                e["id"] for e in queries.events(conn, queries.EventFilter()) if e["phase"] == "e"
            }

    wait_until(lambda: stored_ended() >= set(sent), 30, "every ended event at the station")
    worker.stop()

    code, out, _ = _officer("events", "--config", str(config), "--json")
    assert code == 0
    shown = {e["id"]: e for e in json.loads(out)}
    assert set(shown) == set(sent)
    for eid, e in shown.items():
        assert e["class"] == sent[eid]["c"] and e["device"] == "test-box"
        assert e["state"] == "ended" and e["start"].endswith("+07:00")
    cars = [e for e in lines if e["type"] == "event" and e["k"] == "e" and e["c"] == "car"]
    code, out, _ = _officer("events", "--config", str(config), "--json", "--class", "car")
    assert {e["id"] for e in json.loads(out)} == {e["id"] for e in cars}
    # a time window (ISO 8601) holding only the first event's start
    first = min(sent.values(), key=lambda m: m["t0"])
    later = {eid for eid, m in sent.items() if m["t0"] > first["t1"] + 0.001}
    code, out, _ = _officer(
        "events", "--config", str(config), "--json", "--until", shown[first["id"]]["start"]
    )
    ids = {e["id"] for e in json.loads(out)}
    assert first["id"] in ids and not (ids & later)
    code, out, _ = _officer("events", "--config", str(config), "--device", "other-box", "--json")
    assert json.loads(out) == []
    code, out, _ = _officer("events", "--config", str(config))  # the table for people
    assert code == 0 and "test-box" in out and "Events" in out

    colours = {m.get("col") for m in sent.values()} - {None}
    assert colours, "the box names the colour of what it saw"
    colour = sorted(colours)[0]
    code, out, _ = _officer("events", "--config", str(config), "--json", "--colour", colour)
    assert {e["id"] for e in json.loads(out)} == {
        i for i, m in sent.items() if m.get("col") == colour
    }
    assert all(e["colour"] == colour for e in json.loads(out))

    # line crossings: what the box counted in its count messages, per line/class/direction
    crossed: dict[tuple[str, str, str], int] = {}
    for m in lines:
        for line, by_class in (m.get("ln") or {}).items() if m["type"] == "count" else ():
            for cls, by_dir in by_class.items():
                for direction, n in by_dir.items():
                    key = (line, cls, direction)
                    crossed[key] = crossed.get(key, 0) + n
    assert sum(crossed.values()) >= 3, "cars cross the middle of the overpass clip"
    code, out, _ = _officer("counts", "--config", str(config), "--json", "--since", "2h ago")
    assert code == 0
    shown_counts: dict[tuple[str, str, str], int] = {}
    for r in json.loads(out):
        key = (r["line"], r["class"], r["direction"])
        shown_counts[key] = shown_counts.get(key, 0) + r["n"]
        assert r["device"] == "test-box"
    assert shown_counts == crossed
    code, out, _ = _officer("counts", "--config", str(config), "--every", "1d", "--json")
    assert sum(r["n"] for r in json.loads(out)) == sum(crossed.values())
    code, out, _ = _officer("counts", "--config", str(config))
    assert code == 0 and "mid" in out and "Line crossings" in out

    code, out, _ = _officer("devices", "--config", str(config), "--json")
    (dev,) = json.loads(out)
    assert dev["device"] == "test-box" and dev["state"] == "offline (stopped)"
    assert dev["software"] and dev["model"] == "yolox_nano"
    code, out, _ = _officer("devices", "--config", str(config))
    assert "test-box" in out and "offline" in out

    code, out, _ = _officer("audit", "--config", str(config), "--json")
    actions = [r["action"] for r in json.loads(out)]
    assert actions.count("events") == 6 and actions.count("devices") == 2
    assert actions.count("counts") == 3
    store.close()


@pytest.mark.slow
def test_an_officer_gets_a_clip_of_a_recent_event_from_a_recording_box(
    broker, tmp_path: Path, footage: Path, district_keys
) -> None:
    """The whole path: a box records the road as a camera would (footage at its own pace),
    reports events; the officer asks for the seconds around one, just seen; the box waits
    for the segment in progress, cuts it without re-encoding and uploads it in chunks."""
    import av

    from roadside.agent.recording.clipcut import ClipCutter
    from roadside.central.service import CentralService

    config = _central_file(tmp_path, broker.port, clips_dir=str(tmp_path / "clips"))
    service = CentralService(
        central_config(
            tmp_path,
            broker.port,
            officer={"clips_dir": str(tmp_path / "clips")},
            receiver=district_keys.receiver_section(),
        )
    )
    station = threading.Thread(target=service.run, kwargs={"report_s": 3600}, daemon=True)
    station.start()
    assert service.ingest.wait_connected(10)
    produced = tmp_path / "box-events.jsonl"
    agent_toml = tmp_path / "agent.toml"
    agent_toml.write_text(
        tomli_w.dumps(
            {
                "device": "rec-box",
                "data_dir": str(tmp_path / "box"),
                "source": {
                    "kind": "file",
                    "path": str(footage / "motorway_overpass.mp4"),
                    "pace": "native",
                    "loop": True,
                },
                "detector": {"models_dir": str(models_dir())},
                "events": {"sinks": ["mqtt", "jsonl"], "jsonl_path": str(produced)},
                "mqtt": {"host": "127.0.0.1", "port": broker.port},
                "recording": {
                    "mode": "continuous",
                    "segment_s": 4.0,
                    "keyframe_s": 1.0,
                    "budget_bytes": "200MB",
                    "encoder": {"preset": "ultrafast"},
                },
                "transfer": district_keys.transfer_section("rec-box"),
            }
        )
    )
    box = subprocess.Popen(
        [ROADSIDE, "agent", "run", "--config", str(agent_toml)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    recordings = ClipCutter(tmp_path / "box" / "segments")

    def ended_events() -> list[dict]:
        """Events ended since the box began recording at least 2 s before them."""
        ranges = recordings.ranges()
        lines = produced.read_text().splitlines() if produced.exists() and ranges else []
        return [
            m
            for m in map(json.loads, lines)
            if m["type"] == "event" and m["k"] == "e" and m["t0"] - 2 > ranges[0].start
        ]

    try:
        wait_until(lambda: bool(ended_events()), 60, "an event from the box")
        event = ended_events()[-1]
        t_from, t_to = event["t0"] - 2, event["t1"] + 1
        start = datetime.fromtimestamp(t_from, UTC).isoformat()
        end = datetime.fromtimestamp(t_to, UTC).isoformat()
        code, out, err = _officer(
            "clip",
            "rec-box",
            "--config",
            str(config),
            "--from",
            start,
            "--to",
            end,
            "--out",
            str(tmp_path / "got"),
            "--json",
        )
        assert code == 0, (out, err)
        got = json.loads(out)
        assert got["state"] == "done"
        path = Path(got["path"])
        assert hashlib.sha256(path.read_bytes()).hexdigest() == got["sha256"]
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            frames = sum(1 for _ in container.decode(stream))
        result = got["result"]
        # the whole range, though its end was still being recorded when it was asked for
        assert result["actual_from"] <= t_from + 0.2 and result["actual_to"] >= t_to - 0.2
        assert frames >= (t_to - t_from) * 10, result
        # The copy carries the box's signed evidence: anyone with the CA can check it.
        ca, crl = str(district_keys.device_ca), str(district_keys.crl)
        code, out, err = _officer("clip", "verify", str(path), "--ca", ca, "--crl", crl)
        assert code == 0 and "VERIFIED" in out and "rec-box" in out, (out, err)
        code, out, _ = _officer("audit", "--config", str(config), "--json")
        (row,) = [r for r in json.loads(out) if r["action"] == "clip"]
        assert row["state"] == "done" and row["device"] == "rec-box"
    finally:
        box.terminate()
        _, stderr = box.communicate(timeout=60)
        service.stop_event.set()
        station.join(30)
    assert box.returncode == 0, stderr[-2000:]


@pytest.mark.slow
def test_clip_requests_are_sent_followed_and_audited(broker, tmp_path: Path) -> None:
    config = _central_file(tmp_path, broker.port, reply_timeout_s=2.0)
    box = BoxThatAnswers(broker.port, "box-r")
    code, out, err = _officer(
        "clip",
        "box-r",
        "--config",
        str(config),
        "--at",
        "2024-05-01 10:14:30",
        "--before",
        "10s",
        "--after",
        "20s",
        "--quality",
        "low",
    )
    assert code == 1, err
    assert "out_of_range" in out and "no footage from that time" in out
    (cmd,) = box.requests
    assert cmd.params == {"from": 1714533260.0, "to": 1714533290.0, "quality": "low"}
    assert cmd.requester == OFFICER and cmd.expires and cmd.expires > time.time()
    code, out, _ = _officer("clip", "status", cmd.id, "--config", str(config), "--json")
    status = json.loads(out)
    assert status["state"] == "error" and status["requester"] == cmd.requester
    assert status["detail"] == "no footage from that time on this box"

    code, out, _ = _officer(
        "clip",
        "box-r",
        "--config",
        str(config),
        "--from",
        "2024-05-01T10:14:00+07:00",
        "--to",
        "2024-05-01T10:15:00+07:00",
        "--no-wait",
    )
    assert code == 0 and len(out.strip()) == 26
    # --no-wait returns once the broker holds the request; the box hears it a moment later
    deadline = time.monotonic() + 10
    while len(box.requests) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [r.id for r in box.requests][1:] == [out.strip()]
    box.close()

    # nobody answers: the request stays queued, the officer is told how to follow it
    code, out, _ = _officer("snapshot", "box-silent", "--config", str(config))
    assert code == 3 and "roadside clip status" in out
    code, out, _ = _officer("audit", "--config", str(config), "--json")
    rows = {r["action"] + ":" + (r["device"] or ""): r for r in json.loads(out)}
    assert rows["snapshot:box-silent"]["state"] == "timeout"

    # bad input: one line, exit 2, nothing sent
    code, _, err = _officer(
        "clip",
        "box-r",
        "--config",
        str(config),
        "--at",
        "10:14",
        "--from",
        "10:00",
        "--to",
        "10:20",
    )
    assert code == 2 and "either --at" in err
    code, _, err = _officer("clip", "box-r", "--config", str(config), "--at", "half past ten")
    assert code == 2 and err.strip().startswith("error: 'half past ten' is not a time")
    code, _, err = _officer(
        "clip",
        "box-r",
        "--config",
        str(config),
        "--from",
        "2024-05-01 10:20",
        "--to",
        "2024-05-01 10:10",
    )
    assert code == 2 and "must be after" in err


def test_officer_commands_run_as_a_known_account_with_the_role_they_need(
    tmp_path: Path,
) -> None:
    config = _central_file(tmp_path, 1)
    code, _, err = _officer("devices", "--config", str(config), officer=None)
    assert code == 2 and "--officer NAME" in err and len(err.strip().splitlines()) == 1
    code, _, err = _officer("events", "--config", str(config), officer="nobody")
    assert code == 2 and "there is no account 'nobody'" in err
    code, _, err = _officer("snapshot", "box-1", "--config", str(config), officer="minh")
    assert code == 2 and "is a viewer; this needs investigator" in err
    code, _, err = _officer("audit", "--config", str(config), officer="minh")
    assert code == 2 and "needs investigator" in err
    code, out, _ = _officer("devices", "--config", str(config), "--json", officer="minh")
    assert code == 0 and json.loads(out) == []
    code, out, _ = _officer("audit", "--config", str(config), "--json")
    assert [r["requester"] for r in json.loads(out)] == ["minh"]
    # the same command in Vietnamese, from the same catalog as the console
    result = CliRunner().invoke(
        main,
        ["events", "--config", str(config)],
        env={ENV_OFFICER: OFFICER, "ROADSIDE_LANG": "vi"},
    )
    assert result.exit_code == 0 and "Sự kiện (0)" in result.stdout
    result = CliRunner().invoke(
        main,
        ["events", "--config", str(config), "--since", "nửa đêm"],
        env={ENV_OFFICER: OFFICER, "ROADSIDE_LANG": "vi"},
    )
    assert result.exit_code == 2 and "không phải là thời điểm" in result.stderr


@pytest.mark.parametrize("args", [["devices"], ["events"], ["clip", "status", "X"]])
def test_a_missing_config_is_one_clear_line(tmp_path: Path, args: list[str]) -> None:
    code, _, err = _officer(*args, "--config", str(tmp_path / "nope.toml"))
    assert code == 2 and err.startswith("error: ") and "no such config file" in err
