"""The live view: while an officer watches, the box sends a fresh snapshot every few seconds.

One ``LiveFeed`` per open live page. It asks for one snapshot at a time and waits for the
picture to be stored; the next ask goes no sooner than ``web.live_interval_s`` after the
previous one, so on a slow 3G link the pictures come further apart and never pile up. Each
ask expires on the box after ``ASK_EXPIRY_S``: a box back from an outage does not replay a
backlog of them. The feed ends after ``web.live_max_s``, or as soon as the page closes (the
event stream's end calls ``stop``). One audit row covers the whole feed: who watched which
box, for how long, how many pictures came.

Threading: ``run`` is the feed's own thread; ``frames`` is the queue the event stream reads;
``stop`` may be called from any thread.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
import time
from dataclasses import dataclass

from roadside.central.config import CentralConfig
from roadside.central.officer import BoxRequest, wait_for_file
from roadside.central.store import Store
from roadside.errors import RoadsideError
from roadside.ids import new_id
from roadside.wire.commands import ReplyState

log = logging.getLogger(__name__)

ASK_EXPIRY_S = 30.0
FILE_WAIT_S = 15.0


class FeedEvent(enum.Enum):
    FRAME = "frame"  # a new picture is stored
    SILENT = "silent"  # the box did not answer an ask in time
    REFUSED = "refused"  # the box answered an ask with an error
    END = "end"  # the feed is over (time limit, page closed, broker gone)


@dataclass(frozen=True, slots=True)
class FeedItem:
    kind: FeedEvent
    request_id: str | None = None
    name: str | None = None
    at: float | None = None
    code: str | None = None


class LiveFeed:
    """Snapshots of one box for one officer, one after another, bounded in rate and time."""

    def __init__(self, cfg: CentralConfig, store: Store, device: str, officer: str) -> None:
        self.cfg = cfg
        self.store = store
        self.device = device
        self.officer = officer
        self.feed_id = new_id()
        self.frames: queue.Queue[FeedItem] = queue.Queue()
        self.asked = 0
        self.received = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.run, name=f"live-{device}", daemon=True)

    def start(self) -> LiveFeed:
        web = self.cfg.web
        self.store.audit.open(
            self.feed_id,
            self.officer,
            "live",
            self.device,
            {"interval_s": web.live_interval_s, "max_s": web.live_max_s},
            state="working",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def run(self) -> None:
        why = "closed"
        try:
            why = self._loop()
        except RoadsideError as exc:
            log.warning("live view of %s: %s", self.device, exc)
            why = str(exc)
        finally:
            self.frames.put(FeedItem(FeedEvent.END, code=why))
            self.store.audit.update(
                self.feed_id,
                "done",
                result={"asked": self.asked, "pictures": self.received},
                detail=why,
            )

    def _loop(self) -> str:
        web = self.cfg.web
        ends = time.monotonic() + web.live_max_s
        while not self._stop.is_set():
            asked = time.monotonic()
            if asked >= ends:
                return "time limit"
            self._ask_once(min(ends, asked + max(ASK_EXPIRY_S, 3 * web.live_interval_s)))
            if self._stop.wait(max(0.0, asked + web.live_interval_s - time.monotonic())):
                break
        return "closed"

    def _ask_once(self, give_up_at: float) -> None:
        self.asked += 1
        req = BoxRequest(
            self.cfg,
            self.store,
            self.device,
            "snapshot",
            {},
            requester=self.officer,
            audited=False,
            expiry_s=ASK_EXPIRY_S,
        )
        req.send()
        try:
            while req.final is None and not self._stop.is_set():
                if time.monotonic() >= give_up_at:
                    self.frames.put(FeedItem(FeedEvent.SILENT, req.request_id))
                    return
                req.next_update(timeout=0.25)
        finally:
            req.close()
        final = req.final
        if final is None:
            return
        if final.state == ReplyState.ERROR:
            self.frames.put(FeedItem(FeedEvent.REFUSED, req.request_id, code=final.code))
            return
        row = wait_for_file(self.store, req.request_id, FILE_WAIT_S)
        if row and row["state"] == "done" and row.get("name"):
            self.received += 1
            at = (row.get("meta") or {}).get("t")
            self.frames.put(FeedItem(FeedEvent.FRAME, req.request_id, row["name"], at))
        else:
            self.frames.put(FeedItem(FeedEvent.SILENT, req.request_id))
