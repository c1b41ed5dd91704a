"""How the officer commands show things: rich tables for people, JSON for programs."""

from __future__ import annotations

import json
import sys
import time
from datetime import tzinfo
from typing import Any

from rich.console import Console
from rich.table import Table

from roadside.central.i18n import _
from roadside.central.times import iso_time, show_age, show_time
from roadside.wire.messages import EventPhase, OfflineReason


def out_console() -> Console:
    """stdout; when it is not a terminal (a pipe, a file), wide enough for whole rows."""
    return Console(file=sys.stdout, width=None if sys.stdout.isatty() else 200)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def _mib(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value / 1024:.1f} GB" if value >= 1024 else f"{value:.0f} MB"


def health_summary(h: dict[str, Any] | None) -> str:
    """``load 0.8 · 52°C · mem 41% · disk 3.2 GB free`` from a stored health body (the
    HealthMsg fields by their long names)."""
    if not h:
        return "-"
    parts = []
    if "load_1m" in h:
        parts.append(f"load {h['load_1m']:.1f}")
    if "cpu_temp_c" in h:
        parts.append(f"{h['cpu_temp_c']:.0f}°C")
    if h.get("memory_mib"):
        used, total = h["memory_mib"]
        parts.append(f"mem {100 * used / total:.0f}%" if total else f"mem {used} MB")
    disk = h.get("disk_mib") or {}
    if "free" in disk:
        parts.append(f"disk {_mib(disk['free'])} free")
    if h.get("throttled"):
        parts.append(f"throttled 0x{h['throttled']:x}")
    return " · ".join(parts) or "-"


def outbox_summary(h: dict[str, Any] | None) -> str:
    if not h or "outbox_depth" not in h:
        return "-"
    lost = sum((h.get("outbox_losses") or {}).values())
    return f"{h['outbox_depth']}" + (f" ({lost} lost)" if lost else "")


def clock_summary(h: dict[str, Any] | None) -> str:
    if not h or "clock_synced" not in h:
        return "?"
    return _("synced") if h["clock_synced"] else _("NOT synced")


_OFFLINE = {OfflineReason.LOST: "offline (link lost)", OfflineReason.STOP: "offline (stopped)"}


def device_state(d: dict[str, Any]) -> str:
    """The state as JSON has it (English words, stable for programs)."""
    if d["online"] is None:
        return "unknown"
    if d["online"]:
        return "online"
    reason = (d.get("status") or {}).get("reason")
    return _OFFLINE.get(reason, "offline") if reason is not None else "offline"


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
            "last_seen_ago_s": round(now - d["last_seen"], 1),
            "software": (d.get("status") or {}).get("software"),
            "model": (d.get("status") or {}).get("model"),
            "health": d.get("health"),
            "health_at": iso_time(d.get("health_at"), zone),
            "outbox": (d.get("health") or {}).get("outbox_depth"),
            "clock_synced": None
            if "clock_synced" not in (d.get("health") or {})
            else bool(d["health"]["clock_synced"]),
        }
        for d in rows
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
    ):
        table.add_column(col)
    for d in rows:
        state = device_state(d)
        style = "green" if state == "online" else ("red" if "offline" in state else "yellow")
        h = d.get("health")
        table.add_row(
            d["device"],
            f"[{style}]{_device_state_shown(state)}[/]",
            _("%(when)s (%(age)s ago)")
            % {"when": show_time(d["last_seen"], zone), "age": show_age(now - d["last_seen"])},
            health_summary(h),
            outbox_summary(h),
            clock_summary(h),
            (d.get("status") or {}).get("software") or "-",
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
            "score": round(e["score"], 3),
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
        clock = " [yellow]" + _("clock?") + "[/]" if e["unsynced"] else ""
        table.add_row(
            show_time(e["t0"], zone) + clock,
            e["device"],
            e["cls"],
            e.get("colour") or "-",
            f"{e['t1'] - e['t0']:.1f} s{ongoing}",
            f"{e['score']:.2f}",
            e["direction"] or "-",
            ", ".join(e["zones"] or []) or "-",
            e["id"],
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
            show_time(r["t0"], zone),
            show_time(r["t1"], zone),
            r["device"],
            r["line"],
            r["cls"],
            r["direction"],
            str(r["n"]),
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
            show_time(r["at"], zone),
            r["requester"],
            r["action"],
            r["device"] or "-",
            params,
            result,
            r["id"],
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
