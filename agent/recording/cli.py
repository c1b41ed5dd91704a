"""``roadside agent recordings`` and ``roadside agent clip``: the ring, seen from the box."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from roadside.agent.cli_options import config_option
from roadside.agent.recording.clipcut import QUALITIES, ClipCutter
from roadside.agent.recording.errors import BadRangeError, RecordingError, when
from roadside.agent.recording.index import Range, open_index
from roadside.config.agent import AgentConfig, load_config

MODE_NAMES = {"cont": "continuous", "event": "events"}


def parse_time(text: str, option: str) -> float:
    """Epoch seconds from ISO 8601 (local time unless it has an offset) or a plain number."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadRangeError(
            f"{option} {text!r} is not a time: use ISO 8601 such as 2026-05-12T10:14:00 "
            "(local time; add +02:00 or Z for another zone) or epoch seconds"
        ) from None
    if t.tzinfo is None:
        t = t.astimezone()  # a naive time is the box's local time
    return t.timestamp()


def _folder(cfg: AgentConfig) -> Path:
    return cfg.recording.folder(cfg.data_dir)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _length(s: float) -> str:
    s = round(s)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}"


def _clock(r: Range) -> str:
    if "nosync" in r.clocks:
        return "NOT synchronised"
    return "retimed" if "retimed" in r.clocks else "synchronised"


@click.command()
@config_option
@click.option("--all", "show_all", is_flag=True, help="List every range (default: last 50).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def recordings(config_path: Path, show_all: bool, as_json: bool) -> None:
    """Retained footage: its ranges, bytes used against the budget, per recording mode."""
    cfg = load_config(config_path)
    folder = _folder(cfg)
    if not folder.is_dir():
        raise RecordingError(
            f"no recordings folder at {folder} (recording.mode is "
            f"{cfg.recording.mode!r}; the agent creates it when it records)"
        )
    with open_index(folder) as index:
        records = index.all()
        ranges = index.ranges()
    used = sum(r.bytes for r in records)
    modes: dict[str, dict[str, float]] = {}
    for rec in records:
        m = modes.setdefault(
            MODE_NAMES.get(rec.mode, rec.mode), {"segments": 0, "seconds": 0.0, "bytes": 0}
        )
        m["segments"] += 1
        m["seconds"] += rec.duration
        m["bytes"] += rec.bytes
    if as_json:
        click.echo(
            json.dumps(
                {
                    "folder": str(folder),
                    "mode": cfg.recording.mode,
                    "bytes": used,
                    "budget_bytes": int(cfg.recording.budget_bytes),
                    "ranges": [
                        {
                            "from": r.start,
                            "to": r.end,
                            "bytes": r.bytes,
                            "segments": r.segments,
                            "modes": sorted(MODE_NAMES.get(m, m) for m in r.modes),
                            "clock": _clock(r),
                        }
                        for r in ranges
                    ],
                    "per_mode": modes,
                },
                indent=1,
            )
        )
        return
    console = Console(file=sys.stdout, width=110)
    budget = int(cfg.recording.budget_bytes)
    console.print(
        f"recordings in {folder}: {_size(used)} of {_size(budget)} "
        f"({100 * used / budget:.0f} %), {len(records)} segments, "
        f"recording.mode = {cfg.recording.mode}"
    )
    if not ranges:
        console.print("no footage retained")
        return
    shown = ranges if show_all else ranges[-50:]
    table = Table(title="retained ranges (local time)")
    for col in ("from", "to", "length", "size", "mode", "clock"):
        table.add_column(col)
    for r in shown:
        table.add_row(
            when(r.start),
            when(r.end),
            _length(r.duration),
            _size(r.bytes),
            ", ".join(sorted(MODE_NAMES.get(m, m) for m in r.modes)),
            _clock(r),
        )
    console.print(table)
    if len(shown) < len(ranges):
        console.print(f"({len(ranges) - len(shown)} earlier ranges not shown: --all)")
    per_mode = Table(title="per mode")
    for col in ("mode", "segments", "footage", "size", "per hour of footage"):
        per_mode.add_column(col)
    for name, m in sorted(modes.items()):
        rate = m["bytes"] / m["seconds"] * 3600 if m["seconds"] else 0.0
        per_mode.add_row(
            name, str(int(m["segments"])), _length(m["seconds"]), _size(m["bytes"]), _size(rate)
        )
    console.print(per_mode)


@click.command()
@config_option
@click.option(
    "--from",
    "from_",
    required=True,
    metavar="TIME",
    help="Start: ISO 8601 (local time unless an offset is given) or epoch seconds.",
)
@click.option("--to", "to", required=True, metavar="TIME", help="End, in the same forms.")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The MP4 file to write.",
)
@click.option(
    "--quality",
    type=click.Choice(QUALITIES),
    default="original",
    show_default=True,
    help="original: stream copy; low: smaller (640 px, 10 fps) for slow links.",
)
def clip(config_path: Path, from_: str, to: str, out: Path, quality: str) -> None:
    """Cut footage from --from to --to into one MP4, without re-encoding."""
    cfg = load_config(config_path)
    start, end = parse_time(from_, "--from"), parse_time(to, "--to")
    if end <= start:
        raise BadRangeError(f"--to ({to}) must be after --from ({from_})")
    folder = _folder(cfg)
    if not folder.is_dir():
        raise RecordingError(f"no recordings folder at {folder}: this box holds no recordings")
    result = ClipCutter(folder).cut(start, end, out, quality)
    click.echo(
        f"{result.path}: {when(result.start)} to {when(result.end)} "
        f"({result.end - result.start:.1f} s, {_size(result.bytes)}, "
        f"{result.segments} segments, {quality})"
    )
    for a, b in result.gaps:
        click.echo(f"gap: {when(a)} to {when(b)} ({b - a:.1f} s without footage)")
    if not result.clock_synced:
        click.echo(
            "note: some of this footage was recorded before the clock was "
            "synchronised; its times may be wrong",
            err=True,
        )
