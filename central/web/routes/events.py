"""The events page (filters, keyset pages, best-frame pictures) and one event's page."""

from __future__ import annotations

from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Route

from roadside.central.accounts import Role
from roadside.central.i18n import _
from roadside.central.store import browse, queries
from roadside.central.store import tables as T
from roadside.central.times import TimeInputError, parse_time
from roadside.central.web.auth import Visit, page
from roadside.central.web.messages import DIRECTIONS
from roadside.central.web.routes.checks import DEVICE, ULID, WORD, optional, path_part


def _query(v: Visit) -> tuple[browse.EventQuery, dict[str, str], str | None]:
    """The filters from the query string, the form's values, and a sentence on bad input."""
    console = v.request.app.state.console
    qp = v.request.query_params
    values = {k: qp.get(k, "").strip()[:64] for k in ("box", "cls", "dir", "zone", "colour")}
    values.update({k: qp.get(k, "").strip()[:64] for k in ("since", "until")})
    error = None
    times: dict[str, float | None] = {"since": None, "until": None}
    for key in times:
        if values[key]:
            try:
                times[key] = parse_time(values[key], console.zone)
            except TimeInputError as exc:
                error = str(exc)
    q = browse.EventQuery(
        device=optional(values["box"], DEVICE),
        cls=optional(values["cls"], WORD),
        direction=values["dir"] if values["dir"] in DIRECTIONS else None,
        zone=optional(values["zone"], WORD),
        colour=optional(values["colour"], WORD),
        since=times["since"],
        until=times["until"],
    )
    return q, values, error


@page(Role.VIEWER)
def events(v: Visit) -> Response:
    console = v.request.app.state.console
    q, values, error = _query(v)
    qp = v.request.query_params
    before = browse.Cursor.decode(qp.get("before"))
    after = None if before else browse.Cursor.decode(qp.get("after"))
    with console.store.connect() as conn:
        result = browse.event_page(conn, q, console.cfg.web.page_size, before, after)
        result.pictures = browse.pictures_for(conn, [r["id"] for r in result.rows])
        known = browse.known_values(conn)
    filters = urlencode({k: val for k, val in values.items() if val})
    return console.render(
        v.request,
        "events.html",
        v.session,
        page=result,
        values=values,
        error=error,
        known=known,
        directions=DIRECTIONS,
        has_colour=browse.optional_column(T.events, "colour") is not None,
        filters=filters,
    )


@page(Role.VIEWER)
def event(v: Visit) -> Response:
    console = v.request.app.state.console
    event_id = path_part(v.request.path_params["event_id"], ULID)
    with console.store.connect() as conn:
        row = queries.event(conn, event_id)
        if row is None:
            raise HTTPException(404)
        picture = browse.pictures_for(conn, [event_id]).get(event_id)
        requests = browse.footage_for_event(conn, event_id)
        device = next((d for d in queries.devices(conn) if d["device"] == row["device"]), None)
    officer = console.cfg.officer
    return console.render(
        v.request,
        "event.html",
        v.session,
        event=row,
        picture=picture,
        requests=requests,
        box_online=None if device is None else device["online"],
        clip_from=row["t0"] - officer.default_before_s,
        clip_to=row["t1"] + officer.default_after_s,
        may_ask=v.officer.may(Role.INVESTIGATOR),
        title=_("Event"),
    )


routes = [
    Route("/events", events, methods=["GET"]),
    Route("/events/{event_id}", event, methods=["GET"]),
]
