"""Counts: objects per hour for one box, as charts and as CSV.

Each chart is one ``HourlySeries``: from ``SERIES``, the box's own per-class counts and the
ended events by class and direction; then one per counting line of the box, crossings by
class and direction across the line. The CSV has every series, its line named in a column.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa
from starlette.responses import Response
from starlette.routing import Route

from roadside.central.accounts import Role
from roadside.central.i18n import N_, _
from roadside.central.store import browse
from roadside.central.times import TimeInputError, parse_time
from roadside.central.web.auth import Visit, page
from roadside.central.web.charts import hourly_bars
from roadside.central.web.messages import class_label, direction_label
from roadside.central.web.routes.checks import DEVICE, optional

Series = Callable[[sa.Connection, str, float, float, str], browse.HourlySeries]
SERIES: list[tuple[str, str, Series]] = [
    (
        "class",
        N_("Vehicles and people per hour, by class (the box's counts)"),
        browse.counts_by_class,
    ),
    (
        "direction",
        N_("Objects per hour by class and direction of travel (ended events)"),
        browse.events_by_direction,
    ),
]
MAX_SPAN_S = 31 * 86400


def key_label(key: str) -> str:
    """``car`` -> ô tô; ``car E`` -> ô tô → đông."""
    cls, _sep, direction = key.partition(" ")
    return class_label(cls) + (f" → {direction_label(direction)}" if direction else "")


def _window(v: Visit) -> tuple[str | None, float, float, dict[str, str], str | None]:
    console = v.request.app.state.console
    qp = v.request.query_params
    values = {k: qp.get(k, "").strip()[:64] for k in ("box", "since", "until")}
    now = time.time()
    since, until, error = now - 86400, now, None
    try:
        if values["since"]:
            since = parse_time(values["since"], console.zone)
        if values["until"]:
            until = parse_time(values["until"], console.zone)
    except TimeInputError as exc:
        error = str(exc)
    if until <= since or until - since > MAX_SPAN_S:
        error = error or _("Choose a time range of up to 31 days, ending after it starts.")
        since, until = now - 86400, now
    return optional(values["box"], DEVICE), since, until, values, error


def _line_title(line: str) -> str:
    return _("Crossings of line %(line)s per hour, by class and direction") % {"line": line}


def _series(
    v: Visit, device: str, since: float, until: float
) -> list[tuple[str, str, browse.HourlySeries]]:
    """(series key, counting line or "", series) for every chart of the page."""
    console = v.request.app.state.console
    with console.store.connect() as conn:
        charts = [(key, "", fn(conn, device, since, until, _(title))) for key, title, fn in SERIES]
        lines = browse.line_counts_by_hour(conn, device, since, until, _line_title)
    return charts + [("line", line, series) for line, series in lines.items()]


@page(Role.VIEWER)
def counts(v: Visit) -> Response:
    console = v.request.app.state.console
    device, since, until, values, error = _window(v)
    with console.store.connect() as conn:
        boxes = browse.known_values(conn)["boxes"]
    device = device or (boxes[0] if boxes else None)
    charts = []
    if device:
        for key, line, series in _series(v, device, since, until):
            svg = hourly_bars(series, console.zone, key_label, _("Nothing counted in this time."))
            chart_id = f"line-{line}" if line else key
            charts.append({"key": chart_id, "series": series, "svg": svg})
    return console.render(
        v.request,
        "counts.html",
        v.session,
        boxes=boxes,
        device=device,
        values=values,
        since=since,
        until=until,
        charts=charts,
        error=error,
    )


@page(Role.VIEWER)
def counts_csv(v: Visit) -> Response:
    console = v.request.app.state.console
    device, since, until, _values, error = _window(v)
    if device is None or error:
        return Response(_("Choose a box and a valid time range."), status_code=400)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["box", "hour", "series", "line", "class", "direction", "count"])
    for key, line, series in _series(v, device, since, until):
        for name, values in series.values.items():
            cls, _sep, direction = name.partition(" ")
            for hour, n in zip(series.hours, values, strict=True):
                if n:
                    stamp = datetime.fromtimestamp(hour, console.zone).strftime("%d/%m/%Y %H:%M")
                    writer.writerow([device, stamp, key, line, cls, direction, n])
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="counts-{device}.csv"'},
    )


routes = [
    Route("/counts", counts, methods=["GET"]),
    Route("/counts.csv", counts_csv, methods=["GET"]),
]
