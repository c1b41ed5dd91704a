"""The boxes page: which boxes are on the link, and how each is doing."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from roadside.central.accounts import Role
from roadside.central.i18n import _
from roadside.central.store import queries
from roadside.central.web.auth import Visit, page


@dataclass(frozen=True, slots=True)
class BoxRow:
    """One box as the page shows it; readings the box did not send are None."""

    device: str
    online: bool | None
    why: str | None
    last_seen: float
    silent: bool
    link_up: bool | None
    outbox: int | None
    outbox_lost: int
    disk_free_mb: float | None
    temperature: float | None
    clock_synced: bool | None
    software: str | None

    @property
    def state(self) -> str:
        if self.online is None:
            return _("unknown")
        if self.online:
            return _("online")
        return {
            "lost": _("offline (link lost)"),
            "stop": _("offline (stopped)"),
        }.get(self.why or "", _("offline"))


def box_row(d: dict[str, Any], silent_after_s: float, now: float) -> BoxRow:
    h = d.get("health") or {}
    status = d.get("status") or {}
    disk = h.get("disk_mib") or {}
    return BoxRow(
        device=d["device"],
        online=d["online"],
        why=status.get("reason"),
        last_seen=d["last_seen"],
        silent=now - d["last_seen"] > silent_after_s,
        link_up=None if "link_up" not in h else bool(h["link_up"]),
        outbox=h.get("outbox_depth"),
        outbox_lost=sum((h.get("outbox_losses") or {}).values()),
        disk_free_mb=disk.get("free"),
        temperature=h.get("cpu_temp_c"),
        clock_synced=None if "clock_synced" not in h else bool(h["clock_synced"]),
        software=status.get("software"),
    )


@page(Role.VIEWER)
def boxes(v: Visit) -> Response:
    console = v.request.app.state.console
    now = time.time()
    with console.store.connect() as conn:
        rows = [box_row(d, console.cfg.web.silent_after_s, now) for d in queries.devices(conn)]
    return console.render(v.request, "boxes.html", v.session, boxes=rows, now=now)


routes = [Route("/boxes", boxes, methods=["GET"])]
