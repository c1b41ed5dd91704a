"""Config documents (redaction, hash, diff, --set) and the files a change leaves on the box,
with a real process killed at random moments while it writes a change."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tomli_w

from roadside.agent.fleet.local import LocalConfig, Trial, TrialState, file_hash
from roadside.config.agent import parse_config
from roadside.config.document import (
    REDACTED,
    Change,
    assign,
    config_hash,
    cutting_changes,
    diff,
    document,
    keep_secrets,
    redact,
    redact_change,
)
from roadside.errors import ConfigError


def _doc(**mqtt: object) -> dict:
    return {
        "device": "box-1",
        "data_dir": "/tmp/box-1",
        "source": {"kind": "rtsp", "url": "rtsp://cam:s3cret@10.0.0.9:554/main"},
        "events": {"sinks": ["mqtt"]},
        "mqtt": {"host": "station", "username": "box-1", "password": "pw-1", **mqtt},
        "recording": {"budget_bytes": "200MB"},
    }


def test_secrets_never_leave_in_a_document_and_the_box_keeps_its_own() -> None:
    running = document(parse_config(_doc()))
    assert running["recording"]["budget_bytes"] == 200_000_000  # normalised
    assert "motion" not in running  # defaults are not written
    shown = redact(running)
    assert shown["mqtt"]["password"] == REDACTED
    assert shown["source"]["url"] == f"rtsp://cam:{REDACTED}@10.0.0.9:554/main"
    assert "s3cret" not in str(shown) and "pw-1" not in str(shown)
    assert running["mqtt"]["password"] == "pw-1"  # redact copies
    back = keep_secrets(shown, running)
    assert back == running
    # the hash is over the redacted document: the station computes it without the secrets
    assert config_hash(parse_config(shown)) == config_hash(parse_config(running))
    assert config_hash(parse_config(_doc(password="other"))) == config_hash(parse_config(_doc()))
    # a new secret is taken as given; a redacted one the box does not have is an error
    assert (
        keep_secrets({**shown, "mqtt": {**shown["mqtt"], "password": "new"}}, running)["mqtt"][
            "password"
        ]
        == "new"
    )
    bare = {k: v for k, v in running.items() if k != "source"} | {
        "source": {"kind": "rtsp", "url": "rtsp://cam@h/x"}
    }
    with pytest.raises(ConfigError, match="no such secret to keep"):
        keep_secrets(shown, bare)


def test_a_diff_lists_each_key_and_tells_what_may_cut_the_box_off() -> None:
    before = parse_config(_doc())
    after = parse_config(
        assign(document(before), ["detector.score=0.3", "mqtt.port=8884", "mqtt.keepalive_s=60"])
    )
    changes = diff(document(before), document(after))
    assert [c.key for c in changes] == ["detector.score", "mqtt.keepalive_s", "mqtt.port"]
    assert str(changes[0]) == "+ detector.score = 0.3"
    assert cutting_changes(before, after, changes) == ["mqtt.port"]  # keepalive only tunes
    off = parse_config(assign(document(before), ['events.sinks=["console"]']))
    assert cutting_changes(before, off, diff(document(before), document(off))) == ["events.sinks"]
    pw = parse_config(assign(document(before), ["mqtt.password=pw-2"]))
    pw_changes = diff(document(before), document(pw))
    assert cutting_changes(before, pw, pw_changes) == ["mqtt.password"]
    assert redact_change(pw_changes[0]) == Change("mqtt.password", REDACTED, REDACTED)


def test_set_reads_toml_values_and_says_what_is_wrong_in_one_line() -> None:
    doc = assign({}, ["a.b=0.5", "a.c=true", 'a.d=["x", "y"]', "a.e=plain text", 'f="q"'])
    assert doc == {"a": {"b": 0.5, "c": True, "d": ["x", "y"], "e": "plain text"}, "f": "q"}
    for bad in ("novalue", "=3", "a..b=1"):
        with pytest.raises(ConfigError, match="write KEY=VALUE"):
            assign({}, [bad])
    with pytest.raises(ConfigError, match="'a' is a value, not a table"):
        assign({"a": 1}, ["a.b=2"])


def _files(tmp_path: Path) -> tuple[Path, str, bytes, str]:
    path = tmp_path / "agent.toml"
    old = {**_doc(), "data_dir": str(tmp_path / "data")}
    path.write_text(tomli_w.dumps(old))
    new = assign(old, ["detector.score=0.3"])
    # padded with comments, so that writing it takes long enough to be killed half-way
    text = ("# padding\n" * 200_000 + tomli_w.dumps(new)).encode()
    return path, config_hash(parse_config(old)), text, config_hash(parse_config(new))


def _trial(old: str, new: str) -> Trial:
    return Trial("rq-1", "an@test", new, old, 10.0, 3, False, 0.0)


def test_a_trial_counts_starts_and_rolls_back_after_a_crash_loop(tmp_path: Path) -> None:
    path, old, text, new = _files(tmp_path)
    before = path.read_bytes()
    local = LocalConfig(path)
    local.begin(_trial(old, new), text)
    assert file_hash(path) == new and local.previous_path.read_bytes() == before
    for n in (1, 2, 3):
        local = LocalConfig(path)
        local.at_start()
        assert local.trial is not None and local.trial.starts == n and local.trying
    local = LocalConfig(path)
    local.at_start()  # the fourth start: the trial had its three
    assert local.trial is not None and local.trial.state == TrialState.ROLLED_BACK
    assert "crash loop" in local.trial.reason and path.read_bytes() == before
    local.finished()
    assert not local.trial_path.exists()


@pytest.mark.slow
def test_a_process_killed_while_writing_a_change_leaves_one_whole_config(tmp_path: Path) -> None:
    path, old, text, new = _files(tmp_path)
    (tmp_path / "new.bin").write_bytes(text)
    child = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from roadside.agent.fleet.local import LocalConfig, Trial
        trial = Trial("rq-1", "an@test", {new!r}, {old!r}, 10.0, 3, False, 0.0)
        text = Path({str(tmp_path / "new.bin")!r}).read_bytes()
        print("go", flush=True)
        LocalConfig(Path({str(path)!r})).begin(trial, text)
        print("done", flush=True)
        """
    )
    original = path.read_bytes()
    rng = random.Random(16)
    seen: set[str | None] = set()
    for _ in range(12):
        path.write_bytes(original)
        for extra in (".trial", ".previous", ".new", ".previous.new", ".trial.new"):
            path.with_name(path.name + extra).unlink(missing_ok=True)
        proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline() == "go\n"
        try:
            proc.wait(rng.uniform(0.0, 0.06))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        local = LocalConfig(path)
        local.at_start()  # what the next start of the agent does first
        now = file_hash(path)
        assert now in (old, new)  # one whole config, never a mix
        trial = local.trial
        if trial is None:
            assert now == old  # killed before the trial record: nothing happened
        elif trial.state == TrialState.TRYING:
            assert now == new and trial.starts == 1
        else:
            assert trial.state == TrialState.ROLLED_BACK and now == old
            assert "interrupted before the new config was in place" in trial.reason
        seen.add(None if trial is None else trial.state)
    assert len(seen) >= 2, seen  # the kills landed at different steps
