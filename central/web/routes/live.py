"""The live view page and its event stream (one ``LiveFeed`` per open page)."""

from __future__ import annotations

import json
import queue

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from roadside.central.accounts import Role
from roadside.central.i18n import _, show_datetime, speaking
from roadside.central.store import queries
from roadside.central.web.auth import Visit, page, stream
from roadside.central.web.live import FeedEvent, FeedItem, LiveFeed
from roadside.central.web.messages import error_sentence
from roadside.central.web.routes.checks import DEVICE, path_part

WAIT_S = 1.0


def _known_box(v: Visit) -> dict:
    console = v.request.app.state.console
    device = path_part(v.request.path_params["device"], DEVICE)
    with console.store.connect() as conn:
        row = next((d for d in queries.devices(conn) if d["device"] == device), None)
    if row is None:
        raise HTTPException(404)
    return row


@page(Role.INVESTIGATOR)
def live_page(v: Visit) -> Response:
    console = v.request.app.state.console
    box = _known_box(v)
    return console.render(
        v.request,
        "live.html",
        v.session,
        box=box,
        interval_s=console.cfg.web.live_interval_s,
        max_s=console.cfg.web.live_max_s,
    )


def _item_json(item: FeedItem, zone) -> dict:
    if item.kind is FeedEvent.FRAME:
        return {
            "url": f"/files/{item.request_id}/{item.name}",
            "at": show_datetime(item.at, zone, seconds=True) if item.at else "",
            "text": _("Picture of %(at)s.") % {"at": show_datetime(item.at, zone, seconds=True)}
            if item.at
            else "",
        }
    if item.kind is FeedEvent.SILENT:
        return {"text": _("The box did not answer in time; asking again.")}
    if item.kind is FeedEvent.REFUSED:
        return {"text": error_sentence(item.code)}
    if item.code == "time limit":
        return {"text": _("Live view paused after its time limit. Press Resume to go on.")}
    return {"text": _("Live view stopped.")}


@stream(Role.INVESTIGATOR)
async def live_feed(v: Visit) -> Response:
    """Pictures as they come; the feed stops when the browser closes the stream."""
    console = v.request.app.state.console
    box = await run_in_threadpool(_known_box, v)
    feed = LiveFeed(console.cfg, console.store, box["device"], v.officer.name)
    await run_in_threadpool(feed.start)

    async def events():
        try:
            while True:
                try:
                    item = await run_in_threadpool(feed.frames.get, True, WAIT_S)
                except queue.Empty:
                    if await v.request.is_disconnected():
                        return
                    yield ": waiting\n\n"
                    continue
                with speaking(v.lang):
                    data = json.dumps(_item_json(item, console.zone), ensure_ascii=False)
                yield f"event: {item.kind.value}\ndata: {data}\n\n"
                if item.kind is FeedEvent.END:
                    return
        finally:
            feed.stop()

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )


routes = [
    Route("/live/{device}", live_page, methods=["GET"]),
    Route("/live/{device}/feed", live_feed, methods=["GET"]),
]
