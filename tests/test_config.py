"""Bad configs give one line that names the field, and never a traceback."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from roadside.central.config import BrokerConfig
from roadside.config.agent import MqttConfig, load_config, parse_config
from roadside.config.base import parse
from roadside.config.broker import BrokerLink
from roadside.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
ROADSIDE = str(Path(sys.executable).with_name("roadside"))

MINIMAL = """
device = "junction-07"
[source]
kind = "file"
path = "clip.mp4"
"""

# (what is wrong, the TOML, words the one-line error must contain)
BAD = [
    ("unknown top-level key", "colour = 'red'\n" + MINIMAL, ["'colour'", "unknown key"]),
    ("typo in a section key", MINIMAL + "[detector]\nmodle = 'x'\n", ["detector.modle"]),
    (
        "device id with spaces",
        MINIMAL.replace("junction-07", "Junction 07"),
        ["device", "'Junction 07'"],
    ),
    ("missing device", MINIMAL.replace('device = "junction-07"', ""), ["device", "required"]),
    (
        "unknown source kind",
        MINIMAL.replace('"file"', '"webcam"'),
        ["source.kind", "'webcam'", "'file'", "'rtsp'"],
    ),
    ("file source without a path", 'device = "a"\n[source]\nkind = "file"\n', ["source.path"]),
    ("rtsp source without url", 'device = "a"\n[source]\nkind = "rtsp"\n', ["source.url"]),
    ("score above one", MINIMAL + "[detector]\nscore = 1.5\n", ["detector.score", "1.5", "1"]),
    ("score as text", MINIMAL + "[detector]\nscore = 'high'\n", ["detector.score", "'high'"]),
    (
        "per-class score too low",
        MINIMAL + "[detector]\nscores = { car = 0.0 }\n",
        ["detector.scores.car", "0.05"],
    ),
    ("negative keepalive", MINIMAL + "[motion]\nkeepalive_s = -1\n", ["motion.keepalive_s", "-1"]),
    (
        "mask point outside the frame",
        MINIMAL + "[motion]\nmasks = [[[0, 0], [2, 0], [0, 1]]]\n",
        ["motion.masks", "2"],
    ),
    (
        "zone with two corners",
        MINIMAL + "[[events.zones]]\nname = 'z'\npolygon = [[0, 0], [1, 1]]\n",
        ["events.zones.0.polygon", "3"],
    ),
    ("unknown sink", MINIMAL + "[events]\nsinks = ['printer']\n", ["events.sinks", "'printer'"]),
    ("jsonl sink without a file", MINIMAL + "[events]\nsinks = ['jsonl']\n", ["jsonl_path"]),
    (
        "pace misspelt",
        MINIMAL.replace('path = "clip.mp4"', 'path = "c.mp4"\npace = "quick"'),
        ["source.pace", "'quick'", "'native'"],
    ),
    ("tracker hits zero", MINIMAL + "[tracker]\nconfirm_hits = 0\n", ["tracker.confirm_hits", "0"]),
    (
        "start below high",
        MINIMAL + "[tracker]\nstart_score = 0.15\n",
        ["tracker.start_score (0.15)", "tracker.high_score (0.2)"],
    ),
    (
        "line with one point",
        MINIMAL + "[[events.lines]]\nname = 'l'\npoints = [[0, 0.5]]\n",
        ["events.lines.0.points"],
    ),
    ("negative rate", MINIMAL + "[detector]\nmax_fps = -1\n", ["detector.max_fps", "-1"]),
    ("regions zero", MINIMAL + "[detector.regions]\nmax_regions = 0\n", ["max_regions", "0"]),
    ("section given as a value", "motion = 3\n" + MINIMAL, ["motion = 3", "must be a table"]),
    ("broken TOML", MINIMAL + "[detector\n", ["not valid TOML", "line"]),
]


@pytest.mark.parametrize(("why", "text", "words"), BAD, ids=[b[0] for b in BAD])
def test_bad_config_is_one_clear_line(
    tmp_path: Path, why: str, text: str, words: list[str]
) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message, f"{why}: {word!r} not in {message!r}"


@pytest.mark.parametrize("case", [BAD[0], BAD[4], BAD[7], BAD[-1]], ids=lambda c: c[0])
@pytest.mark.slow
def test_command_line_prints_no_traceback(tmp_path: Path, case) -> None:
    path = tmp_path / "agent.toml"
    path.write_text(case[1])
    for command in (["agent", "check"], ["agent", "run"]):
        proc = subprocess.run(
            [ROADSIDE, *command, "--config", str(path)], capture_output=True, text=True, timeout=60
        )
        assert proc.returncode != 0
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
        if command[1] == "run":
            assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
        else:  # check shows the failure in its table
            assert "FAIL" in proc.stdout


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.toml")


def test_minimal_config_has_defaults() -> None:
    cfg = parse_config(tomllib.loads(MINIMAL))
    assert cfg.detector.model == "yolox_nano"
    assert cfg.detector.classes == ["person", "bicycle", "motorcycle", "car", "bus", "truck"]
    assert cfg.motion.enabled and cfg.tracker.confirm_hits == 3


def test_example_config_is_valid() -> None:
    cfg = load_config(ROOT / "examples" / "agent.toml")
    assert cfg.source.loop and cfg.source.path.endswith("motorway_overpass.mp4")


@pytest.mark.parametrize(
    ("section", "unreadable"),
    [
        (MqttConfig, r"^mqtt\.password_file = '.*missing': cannot read a password from it \(.+\)$"),
        (BrokerConfig, r"^broker\.password_file: cannot read it: .+$"),
    ],
)
def test_box_and_station_name_the_broker_alike(
    section: type[BrokerLink], unreadable: str, tmp_path: Path
) -> None:
    """The agent's [mqtt] and the station's [broker] are one section, each naming its own keys."""
    name = section.SECTION
    for bad, words in (
        ({"tls_cert": "/c.pem"}, f"{name}.tls_cert and {name}.tls_key go together"),
        ({"username": "u", "password": "x", "password_file": "/p"}, f"{name}.password and"),
        ({"password": "x"}, f"{name}.password needs {name}.username"),
        ({"hots": "x"}, "unknown key 'hots'"),
    ):
        with pytest.raises(ConfigError, match=re.escape(words)):
            parse(section, bad, "test")
    secret = tmp_path / "secret"
    secret.write_text("s3cret\nignored\n")
    link = section(username="u", password_file=str(secret), tls_ca="/ca.pem")
    assert link.read_password() == "s3cret" and link.effective_port == 8883
    assert section(username="u", password="p").read_password() == "p"
    with pytest.raises(ConfigError, match=unreadable):
        section(username="u", password_file=str(tmp_path / "missing")).read_password()
