"""Bad configs give one line that names the field, and never a traceback."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from roadside.agent.config import load_config, parse_config
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
    assert cfg.detector.model == "ssd_mobilenet_v1_coco_quant"
    assert cfg.detector.classes == ["person", "bicycle", "motorcycle", "car", "bus", "truck"]
    assert cfg.motion.enabled and cfg.tracker.confirm_hits == 3


def test_example_config_is_valid() -> None:
    cfg = load_config(ROOT / "examples" / "agent.toml")
    assert cfg.source.loop and cfg.source.path.endswith("motorway_overpass.mp4")
