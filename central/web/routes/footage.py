"""Asking a box for an event's clip or picture, following the request, serving the file.

Files are served only through their record in the clips table, by request id and the file
name the box gave, and only from inside the station's clips folder: a name that does not
match the record, or a path that resolves elsewhere, is not found. Videos are served with
HTTP range requests (the browser's player seeks with them) and a ``Repr-Digest`` header
carrying the sha256 the station verified.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from roadside.central.accounts import Role
from roadside.central.i18n import _, show_bytes, speaking
from roadside.central.officer import RequestError
from roadside.central.store import queries
from roadside.central.web.auth import Visit, api, page, stream
from roadside.central.web.footage import Phase, Progress
from roadside.central.web.messages import error_sentence
from roadside.central.web.routes.checks import FILE_NAME, REQUEST_ID, ULID, path_part

STREAM_BEAT_S = 15.0  # a comment line this often keeps proxies from closing the stream
STORE_POLL_S = 2.0  # a request this process does not follow is read from the store this often


def progress_text(p: Progress) -> str:
    """One sentence on how the request stands, for the officer."""
    box = {"box": p.device}
    if p.phase is Phase.SENT:
        return _("Request sent; waiting for box %(box)s to answer.") % box
    if p.phase is Phase.OFFLINE:
        return (
            _(
                "Box %(box)s is offline. The request waits and runs when the box is back on "
                "the link."
            )
            % box
        )
    if p.phase is Phase.WORKING:
        return _("Box %(box)s is preparing the file.") % box
    if p.phase is Phase.UPLOADING:
        if p.size:
            return _("Receiving the file: %(held)s of %(size)s.") % {
                "held": show_bytes(p.held),
                "size": show_bytes(p.size),
            }
        return _("Box %(box)s is sending the file.") % box
    if p.phase is Phase.DONE:
        return _("Done: the file is stored at the station and its sha256 checked.")
    if p.phase is Phase.WAITING:
        return (
            _(
                "No answer from box %(box)s yet. The request stays queued for it; this page "
                "shows the result when it comes."
            )
            % box
        )
    return error_sentence(p.code)


def progress_json(p: Progress) -> dict[str, Any]:
    return {
        "phase": p.phase.value,
        "final": p.phase.final,
        "percent": p.percent,
        "text": progress_text(p),
        "drops": p.drops,
    }


def _event_or_404(v: Visit) -> dict[str, Any]:
    console = v.request.app.state.console
    event_id = path_part(v.request.path_params["event_id"], ULID)
    with console.store.connect() as conn:
        row = queries.event(conn, event_id)
        online = next(
            (d["online"] for d in queries.devices(conn) if row and d["device"] == row["device"]),
            None,
        )
    if row is None:
        raise HTTPException(404)
    row["box_online"] = online
    return row


def _ask(v: Visit, command: str, params: dict[str, Any], event: dict[str, Any]) -> Response:
    console = v.request.app.state.console
    try:
        request_id = console.desk.ask(
            v.officer.name,
            event["device"],
            command,
            params,
            note={"event": event["id"]},
            box_online=event["box_online"],
        )
    except RequestError as exc:
        return console.render(
            v.request,
            "message.html",
            v.session,
            status_code=503,
            title=_("The request could not be sent"),
            text=_("The station could not send the request: %(why)s") % {"why": str(exc)},
        )
    return RedirectResponse(f"/requests/{request_id}", status_code=303)


@api(Role.INVESTIGATOR)
def ask_clip(v: Visit) -> Response:
    event = _event_or_404(v)
    officer = v.request.app.state.console.cfg.officer
    quality = "low" if v.field("quality") == "low" else "original"
    params = {
        "from": round(event["t0"] - officer.default_before_s, 3),
        "to": round(event["t1"] + officer.default_after_s, 3),
        "quality": quality,
    }
    return _ask(v, "clip", params, event)


@api(Role.INVESTIGATOR)
def ask_picture(v: Visit) -> Response:
    event = _event_or_404(v)
    return _ask(v, "snapshot", {"event": event["id"]}, event)


@page(Role.INVESTIGATOR)
def request_page(v: Visit) -> Response:
    console = v.request.app.state.console
    request_id = path_part(v.request.path_params["request_id"], REQUEST_ID)
    progress = console.desk.progress(request_id)
    if progress is None:
        raise HTTPException(404)
    with console.store.connect() as conn:
        (audit_row,) = queries.audit(conn, request_id=request_id, limit=1)
    file = progress.file if progress.phase is Phase.DONE else None
    return console.render(
        v.request,
        "request.html",
        v.session,
        progress=progress,
        text=progress_text(progress),
        audit=audit_row,
        file=file,
        event_id=(audit_row["params"] or {}).get("event"),
    )


@stream(Role.INVESTIGATOR)
async def request_progress(v: Visit) -> Response:
    """Server-sent events: the progress each time it changes, until it is final."""
    console = v.request.app.state.console
    request_id = path_part(v.request.path_params["request_id"], REQUEST_ID)
    first = await run_in_threadpool(console.desk.progress, request_id)
    if first is None:
        raise HTTPException(404)

    async def events():
        p: Progress | None = first
        last: dict[str, Any] | None = None
        while p is not None:
            with speaking(v.lang):
                data = progress_json(p)
            if data != last:
                yield f"event: progress\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
                last = data
            else:
                yield ": still here\n\n"
            if p.phase.final or await v.request.is_disconnected():
                return
            if not console.desk.follows(request_id):
                await asyncio.sleep(STORE_POLL_S)  # followed elsewhere: read the store now and then
            p = await run_in_threadpool(
                console.desk.wait_change, request_id, p.version, STREAM_BEAT_S
            )

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )


def _stored_file(v: Visit) -> tuple[dict[str, Any], Path]:
    console = v.request.app.state.console
    request_id = path_part(v.request.path_params["request_id"], REQUEST_ID)
    name = path_part(v.request.path_params["name"], FILE_NAME)
    row = console.store.clips.for_request(request_id)
    if row is None or row["state"] != "done" or not row.get("path"):
        raise HTTPException(404)
    path = Path(row["path"]).resolve()
    root = console.cfg.clips_path.resolve()
    if path.name != name or not path.is_relative_to(root) or not path.is_file():
        raise HTTPException(404)
    return row, path


@api(Role.VIEWER)
def stored_file(v: Visit) -> Response:
    row, path = _stored_file(v)
    if row["kind"] != "snapshot" and not v.officer.may(Role.INVESTIGATOR):
        return v.request.app.state.console.refuse(v.request, v.session, v.lang)
    headers = {"Cache-Control": "private, max-age=3600"}
    if row.get("sha256"):
        digest = base64.b64encode(bytes.fromhex(row["sha256"])).decode()
        headers["Repr-Digest"] = f"sha-256=:{digest}:"
    download = v.request.query_params.get("download") == "1"
    return FileResponse(
        path,
        media_type="image/jpeg" if row["kind"] == "snapshot" else "video/mp4",
        filename=path.name if download else None,
        content_disposition_type="attachment" if download else "inline",
        headers=headers,
    )


routes = [
    Route("/events/{event_id}/clip", ask_clip, methods=["POST"]),
    Route("/events/{event_id}/picture", ask_picture, methods=["POST"]),
    Route("/requests/{request_id}", request_page, methods=["GET"]),
    Route("/requests/{request_id}/progress", request_progress, methods=["GET"]),
    Route("/files/{request_id}/{name}", stored_file, methods=["GET"]),
]
