"""How the officer commands show things: rich tables for people, JSON for programs.

Everything in the store that a box sent (names, classes, software, details) is the box's
word: tables show it as plain text (``Text`` cells, never rich markup) with control and
format characters written out (``\\x1b``), and numbers or times no box could mean (inf, NaN,
the year 10000) as ``?``, so one box's bad record never breaks or spoofs a listing.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
import unicodedata
from datetime import tzinfo
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from roadside.central.i18n import _
from roadside.central.times import UNSHOWABLE, is_time, iso_time, show_age, show_time
from roadside.wire.messages import EventPhase, OfflineReason


def out_console() -> Console:
    """stdout; when it is not a terminal (a pipe, a file), wide enough for whole rows."""
    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else 200)


# Characters that move the cursor, recolour the terminal or reorder text rather than show.
_HIDDEN = frozenset(("Cc", "Cf", "Cs", "Co", "Zl", "Zp"))
# The ones JSON leaves raw with ensure_ascii off (it escapes U+0000-U+001F itself).
_JSON_RAW = re.compile("[\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]")


def _written_out(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(value: object) -> str:
    """``value`` as text that shows as what it is: control and format characters written
    out as escapes (ESC is ``\\x1b``), so a terminal never acts on them."""
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(_written_out(ch) if unicodedata.category(ch) in _HIDDEN else ch for ch in text)


def cell(value: object, style: str = "") -> Text:
    """A table cell holding ``value`` as plain text: ``[red]`` stays those five characters."""
    return Text("-" if value is None or value == "" else visible(value), style=style)


def in_markup(value: object) -> str:
    """``value`` for a place that reads rich markup (a progress bar's description)."""
    return escape(visible(value))


def finite(value: object) -> float | None:
    """A stored number that is a number: None for text, bools, inf and NaN."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _number(value: object, spec: str) -> str:
    number = finite(value)
    return UNSHOWABLE if number is None else format(number, spec)


def _json_ready(data: Any) -> Any:
    """Non-finite numbers as null: JSON has no inf or NaN, and programs choke on them."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: _json_ready(v) for k, v in data.items()}
    if isinstance(data, list | tuple):
        return [_json_ready(v) for v in data]
    return data


def print_json(data: Any) -> None:
    """Valid JSON whatever was stored: no NaN, and no character left raw that a terminal
    acts on (escaped as ``\\u009b`` and so on, which reads back as the same string)."""
    text = json.dumps(_json_ready(data), indent=2, ensure_ascii=False, default=str)
    sys.stdout.write(_JSON_RAW.sub(lambda m: f"\\u{ord(m.group()):04x}", text) + "\n")


def _mib(value: object) -> str:
    number = finite(value)
    if number is None:
        return UNSHOWABLE
    return f"{number / 1024:.1f} GB" if number >= 1024 else f"{number:.0f} MB"


def _age(now: float, then: object) -> float | None:
    number = finite(then)
    return None if number is None else now - number


def health_summary(h: dict[str, Any] | None) -> str:
    """``load 0.8 · 52°C · mem 41% · disk 3.2 GB free`` from a stored health body (the
    HealthMsg fields by their long names)."""
    if not h or not isinstance(h, dict):
        return "-"
    parts = []
    if "load_1m" in h:
        parts.append(f"load {_number(h['load_1m'], '.1f')}")
    if "cpu_temp_c" in h:
        parts.append(f"{_number(h['cpu_temp_c'], '.0f')}°C")
    memory = h.get("memory_mib")
    if memory:
        used, total = (*memory, None, None)[:2] if isinstance(memory, list) else (memory, None)
        used_mib, total_mib = finite(used), finite(total)
        if used_mib is not None and total_mib:
            parts.append(f"mem {100 * used_mib / total_mib:.0f}%")
        else:
            parts.append(f"mem {_mib(used)}")
    disk = h.get("disk_mib")
    if isinstance(disk, dict) and "free" in disk:
        parts.append(f"disk {_mib(disk['free'])} free")
    throttled = h.get("throttled")
    if throttled:
        shown = f"0x{throttled:x}" if isinstance(throttled, int) and throttled > 0 else "?"
        parts.append(f"throttled {shown}")
    return " · ".join(parts) or "-"


def outbox_summary(h: dict[str, Any] | None) -> str:
    if not h or not isinstance(h, dict) or "outbox_depth" not in h:
        return "-"
    losses = h.get("outbox_losses")
    counted = [finite(n) for n in losses.values()] if isinstance(losses, dict) else []
    lost = sum(n for n in counted if n)
    return _number(h["outbox_depth"], ".0f") + (f" ({lost:.0f} lost)" if lost else "")


def clock_summary(h: dict[str, Any] | None) -> str:
    if not h or not isinstance(h, dict) or "clock_synced" not in h:
        return "?"
    return _("synced") if h["clock_synced"] else _("NOT synced")


_OFFLINE: dict[str, str] = {
    OfflineReason.LOST: "offline (link lost)",
    OfflineReason.STOP: "offline (stopped)",
}


def device_state(d: dict[str, Any]) -> str:
    """The state as JSON has it (English words, stable for programs)."""
    if d["online"] is None:
        return "unknown"
    if d["online"]:
        return "online"
    reason = _field(d.get("status"), "reason")
    return _OFFLINE.get(reason, "offline") if isinstance(reason, str) else "offline"


def _field(body: object, name: str) -> Any:
    """One field of a stored JSON body (status, health), None when the body is not one."""
    return body.get(name) if isinstance(body, dict) else None


def _device_state_shown(state: str) -> str:
    return {
        "unknown": _("unknown"),
        "online": _("online"),
        "offline (link lost)": _("offline (link lost)"),
        "offline (stopped)": _("offline (stopped)"),
        "offline": _("offline"),
    }[state]


def devices_json(rows: list[dict[str, Any]], zone: tzinfo) -> list[dict[str, Any]]:
    now = time.time()
    return [
        {
            "device": d["device"],
            "state": device_state(d),
            "last_seen": iso_time(d["last_seen"], zone),
            "last_seen_ago_s": None if ago is None else round(ago, 1),
            "software": _field(d.get("status"), "software"),
            "model": _field(d.get("status"), "model"),
            "health": d.get("health"),
            "health_at": iso_time(d.get("health_at"), zone),
            "outbox": _field(d.get("health"), "outbox_depth"),
            "clock_synced": None
            if _field(d.get("health"), "clock_synced") is None
            else bool(d["health"]["clock_synced"]),
            "rejects": d.get("rejects") or 0,
            "last_reject": iso_time(d.get("last_reject"), zone),
        }
        for d in rows
        for ago in (_age(now, d["last_seen"]),)
    ]


def devices_table(rows: list[dict[str, Any]], zone: tzinfo) -> Table:
    now = time.time()
    table = Table(
        title=_("Boxes (%(n)d)") % {"n": len(rows)},
        caption=_("times in %(zone)s") % {"zone": zone},
    )
    for col in (
        _("box"),
        _("state"),
        _("last seen"),
        _("health"),
        _("outbox"),
        _("clock"),
        _("software"),
        _("rejects"),
    ):
        table.add_column(col)
    for d in rows:
        state = device_state(d)
        style = "green" if state == "online" else ("red" if "offline" in state else "yellow")
        h = d.get("health")
        ago = _age(now, d["last_seen"])
        table.add_row(
            cell(d["device"]),
            cell(_device_state_shown(state), style),
            cell(
                _("%(when)s (%(age)s ago)")
                % {
                    "when": show_time(d["last_seen"], zone),
                    "age": UNSHOWABLE if ago is None else show_age(ago),
                }
            ),
            cell(health_summary(h)),
            cell(outbox_summary(h)),
            cell(clock_summary(h)),
            cell(_field(d.get("status"), "software")),
            cell(d.get("rejects"), "red"),
        )
    return table


def events_json(rows: list[dict[str, Any]], zone: tzinfo) -> list[dict[str, Any]]:
    return [
        {
            "id": e["id"],
            "device": e["device"],
            "class": e["cls"],
            "state": "ended" if e["phase"] == EventPhase.END else "ongoing",
            "start": iso_time(e["t0"], zone),
            "end": iso_time(e["t1"], zone),
            "score": None if finite(e["score"]) is None else round(e["score"], 3),
            "box": e["box"],
            "direction": e["direction"],
            "zones": e["zones"],
            "colour": e.get("colour"),
            "clock_unsynced": bool(e["unsynced"]),
        }
        for e in rows
    ]


def events_table(rows: list[dict[str, Any]], zone: tzinfo, limit: int) -> Table:
    title = _("Events (%(n)d, the newest %(limit)d)") if len(rows) >= limit else _("Events (%(n)d)")
    table = Table(
        title=title % {"n": len(rows), "limit": limit},
        caption=_("times in %(zone)s") % {"zone": zone},
    )
    columns = (_("time"), _("box"), _("class"), _("colour"), _("seen for"), _("score"))
    for i, col in enumerate((*columns, _("direction"), _("zones"), "id")):
        table.add_column(col, no_wrap=i in (0, 8))
    for e in rows:
        ongoing = _(" (ongoing)") if e["phase"] == EventPhase.START else ""
        when = cell(show_time(e["t0"], zone))
        if e["unsynced"]:
            when.append(" " + _("clock?"), style="yellow")
        known = is_time(e["t0"]) and is_time(e["t1"])
        seen = f"{e['t1'] - e['t0']:.1f}" if known else UNSHOWABLE
        zones = e["zones"]
        table.add_row(
            when,
            cell(e["device"]),
            cell(e["cls"]),
            cell(e.get("colour")),
            cell(f"{seen} s{ongoing}"),
            cell(_number(e["score"], ".2f")),
            cell(e["direction"]),
            cell(", ".join(map(visible, zones)) if isinstance(zones, list) else zones),
            cell(e["id"]),
        )
    return table


def line_count_rows(rows: list[dict[str, Any]], every: float | None) -> list[dict[str, Any]]:
    """Crossings per box, line, class, direction and interval: the intervals the boxes sent,
    or, with ``every`` seconds, buckets of that length (aligned to the epoch) summed."""
    if not every:
        return [dict(r) for r in rows]
    buckets: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        start = (r["t0"] // every) * every
        key = (start, r["device"], r["line"], r["cls"], r["direction"])
        held = buckets.get(key)
        if held is None:
            buckets[key] = {**r, "t0": start, "t1": start + every}
        else:
            held["n"] += r["n"]
    return [buckets[k] for k in sorted(buckets)]


def counts_json(rows: list[dict[str, Any]], zone: tzinfo) -> list[dict[str, Any]]:
    return [
        {
            "device": r["device"],
            "line": r["line"],
            "class": r["cls"],
            "direction": r["direction"],
            "from": iso_time(r["t0"], zone),
            "to": iso_time(r["t1"], zone),
            "n": r["n"],
        }
        for r in rows
    ]


def counts_table(rows: list[dict[str, Any]], zone: tzinfo) -> Table:
    total = sum(r["n"] for r in rows)
    table = Table(title=f"Line crossings ({total})", caption=f"times in {zone}")
    for col in ("from", "to", "box", "line", "class", "direction", "n"):
        table.add_column(
            col, no_wrap=col in ("from", "to"), justify="right" if col == "n" else "left"
        )
    for r in rows:
        table.add_row(
            cell(show_time(r["t0"], zone)),
            cell(show_time(r["t1"], zone)),
            cell(r["device"]),
            cell(r["line"]),
            cell(r["cls"]),
            cell(r["direction"]),
            cell(r["n"]),
        )
    return table


def audit_json(rows: list[dict[str, Any]], zone: tzinfo) -> list[dict[str, Any]]:
    return [
        {**r, "at": iso_time(r["at"], zone), "finished": iso_time(r["finished"], zone)}
        for r in rows
    ]


def audit_table(rows: list[dict[str, Any]], zone: tzinfo) -> Table:
    table = Table(
        title=_("Officer requests (%(n)d)") % {"n": len(rows)},
        caption=_("times in %(zone)s") % {"zone": zone},
    )
    columns = (_("when"), _("who"), _("what"), _("box"), _("parameters"), _("result"), "id")
    for i, col in enumerate(columns):
        table.add_column(col, no_wrap=i in (0, 6))
    for r in rows:
        params = (
            ", ".join(
                f"{k}={show_time(v, zone) if k in ('from', 'to') and isinstance(v, float) else v}"
                for k, v in (r["params"] or {}).items()
            )
            or "-"
        )
        result = r["state"] + (f": {r['detail']}" if r.get("detail") else "")
        table.add_row(
            cell(show_time(r["at"], zone)),
            cell(r["requester"]),
            cell(r["action"]),
            cell(r["device"]),
            cell(params),
            cell(result),
            cell(r["id"]),
        )
    return table


def request_status(
    audit_row: dict[str, Any], clip: dict[str, Any] | None, zone: tzinfo
) -> dict[str, Any]:
    """One request as `roadside clip status` shows it."""
    out: dict[str, Any] = {
        "id": audit_row["id"],
        "action": audit_row["action"],
        "box": audit_row["device"],
        "requester": audit_row["requester"],
        "asked": iso_time(audit_row["at"], zone),
        "state": audit_row["state"],
        "detail": audit_row["detail"],
        "finished": iso_time(audit_row["finished"], zone),
        "params": audit_row["params"],
        "result": audit_row["result"],
    }
    if clip:
        out["file"] = {
            "state": clip["state"],
            "path": clip["path"],
            "bytes": clip["bytes"],
            "sha256": clip["sha256"],
            "transfer": clip["id"],
            "actual_from": iso_time(clip["actual_from"], zone),
            "actual_to": iso_time(clip["actual_to"], zone),
            "detail": clip.get("detail"),
        }
    return out
