"""The audit log: who asked for what, when, and how it ended; and its CSV export."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from roadside.central.accounts import Role
from roadside.central.store import tables as T
from roadside.central.times import TimeInputError, parse_time
from roadside.central.web.auth import Visit, page
from roadside.central.web.routes.checks import DEVICE, WORD, optional

PAGE = 200
CSV_BATCH = 1000


def _filters(v: Visit) -> tuple[sa.Select, dict[str, str], str | None]:
    console = v.request.app.state.console
    qp = v.request.query_params
    values = {k: qp.get(k, "").strip()[:64] for k in ("since", "who", "box", "what")}
    a = T.audit.c
    stmt = sa.select(T.audit)
    error = None
    since = time.time() - 7 * 86400
    if values["since"]:
        try:
            since = parse_time(values["since"], console.zone)
        except TimeInputError as exc:
            error = str(exc)
    stmt = stmt.where(a.at >= since)
    if who := optional(values["who"], WORD):
        stmt = stmt.where(a.requester == who)
    if box := optional(values["box"], DEVICE):
        stmt = stmt.where(a.device == box)
    if what := optional(values["what"], WORD):
        stmt = stmt.where(a.action == what)
    return stmt, values, error


def _before(v: Visit) -> float | None:
    try:
        return float(v.request.query_params.get("before", ""))
    except ValueError:
        return None


@page(Role.INVESTIGATOR)
def audit(v: Visit) -> Response:
    console = v.request.app.state.console
    stmt, values, error = _filters(v)
    before = _before(v)
    if before is not None:
        stmt = stmt.where(T.audit.c.at < before)
    with console.store.connect() as conn:
        rows = [
            dict(r)
            for r in conn.execute(stmt.order_by(T.audit.c.at.desc()).limit(PAGE + 1)).mappings()
        ]
    older = rows[PAGE - 1]["at"] if len(rows) > PAGE else None
    return console.render(
        v.request,
        "audit.html",
        v.session,
        rows=rows[:PAGE],
        values=values,
        error=error,
        older=older,
    )


def _csv_rows(v: Visit, stmt: sa.Select) -> Iterator[str]:
    console = v.request.app.state.console
    buf = io.StringIO()
    writer = csv.writer(buf)
    header = ["when", "officer", "action", "box", "parameters", "state", "detail", "finished"]
    writer.writerow(header)
    a = T.audit.c
    last: tuple[float, str] | None = None

    def stamp(t: float | None) -> str:
        return (
            "" if t is None else datetime.fromtimestamp(t, console.zone).isoformat("T", "seconds")
        )

    while True:
        q = stmt.order_by(a.at.desc(), a.id.desc()).limit(CSV_BATCH)
        if last is not None:
            q = q.where((a.at < last[0]) | ((a.at == last[0]) & (a.id < last[1])))
        with console.store.connect() as conn:
            batch: list[dict[str, Any]] = [dict(r) for r in conn.execute(q).mappings()]
        for r in batch:
            writer.writerow(
                [
                    stamp(r["at"]),
                    r["requester"],
                    r["action"],
                    r["device"] or "",
                    " ".join(f"{k}={val}" for k, val in (r["params"] or {}).items()),
                    r["state"],
                    r["detail"] or "",
                    stamp(r["finished"]),
                ]
            )
        yield buf.getvalue()
        buf.seek(0)
        buf.truncate()
        if len(batch) < CSV_BATCH:
            return
        last = (batch[-1]["at"], batch[-1]["id"])


@page(Role.INVESTIGATOR)
def audit_csv(v: Visit) -> Response:
    stmt, _values, error = _filters(v)
    if error:
        return Response(error, status_code=400)
    return StreamingResponse(
        _csv_rows(v, stmt),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="audit.csv"'},
    )


routes = [
    Route("/audit", audit, methods=["GET"]),
    Route("/audit.csv", audit_csv, methods=["GET"]),
]
