"""The command channel: requests from the station on ``cmd/<name>``, answers on ``reply/<id>``.

Every message is taken apart defensively, in this order, and any problem becomes an error
reply rather than an exception:

1. the request id: from the JSON object, or (when the JSON is broken) found in the raw bytes;
   without one there is nobody to answer: the message is counted and dropped;
2. the request log: a repeated id starts nothing (its stored final reply is sent again);
3. size, JSON shape, the command name, the envelope (``by``, ``exp``), the parameters;
4. quick commands (ping, status, cancel, get_config) are answered at once; clip and snapshot
   become jobs; set_config goes to the config service (``agent.fleet``), which answers after
   the new config's health check, in a later run of the agent.

Threads: the uplink's link thread calls ``_on_message``, which only stores the message in the
command inbox (on disk, before the broker gets its PUBACK: see ``inbox.py``) and queues it
(payloads over the size limit are cut to their first bytes, enough to find the id); the
command thread (``_run``) does everything else. A command the inbox cannot take (full, or the
card full) is answered ``busy`` on the link thread; a retained command is ignored (logged and
counted): the broker would replay it at every reconnect. The inbox, the request log and
``_arrivals`` are all they share.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from roadside import __version__
from roadside.agent.commands.inbox import Arrived, CommandInbox
from roadside.agent.commands.jobs import ClipMaker, Job, JobRunner, finish
from roadside.agent.commands.replies import Replies
from roadside.agent.commands.requests import Request, RequestLog
from roadside.agent.commands.snapshots import BestFrames
from roadside.agent.frames import LatestFrame
from roadside.agent.transfer.sender import TransferSender
from roadside.agent.uplink.client import Inbound
from roadside.agent.uplink.link import Uplink
from roadside.config.agent import CommandsConfig
from roadside.wire.commands import (
    COMMANDS,
    PARAMS,
    CancelParams,
    ClipParams,
    CommandMsg,
    ErrorCode,
    Params,
    SetConfigParams,
    SnapshotParams,
)
from roadside.wire.topics import CMD, REQUEST_ID_PATTERN, kind_of

if TYPE_CHECKING:
    from roadside.agent.fleet.service import ConfigService

log = logging.getLogger(__name__)

REQUESTS_FILE = "requests.db"
INBOX_FILE = "command-inbox.db"
HEAD_BYTES = 4096  # of an oversized payload, kept to find its request id
_ID_IN_BYTES = re.compile(rb'"id"\s*:\s*"([0-9A-Za-z_-]{1,64})"')
_REQUEST_ID = re.compile(REQUEST_ID_PATTERN)


@dataclass
class ChannelStats:
    """Counters (written by the command thread unless noted; read anywhere)."""

    received: int = 0
    unaddressed: int = 0  # no usable request id: nobody to answer
    repeats: int = 0
    rejected: int = 0  # answered with an error before any work
    # Written by the link thread:
    busy: int = 0  # the inbox was full (or could not be written): answered busy at once
    retained: int = 0  # retained commands, ignored
    recovered: int = 0  # commands an earlier run had received but not yet handled


class CommandChannel:
    """Listens on ``cmd/#`` through ``uplink``; runs jobs through ``jobs`` and ``sender``."""

    def __init__(
        self,
        uplink: Uplink,
        sender: TransferSender,
        cfg: CommandsConfig,
        data_dir: str | Path,
        clips: ClipMaker | None = None,
        latest: LatestFrame | None = None,
        best: BestFrames | None = None,
        config: ConfigService | None = None,
    ) -> None:
        self.uplink = uplink
        self.config = config
        self.sender = sender
        self.cfg = cfg
        self.requests = RequestLog(Path(data_dir) / REQUESTS_FILE)
        self.replies = Replies(uplink, self.requests)
        self.jobs = JobRunner(
            cfg, uplink.device, sender, self.replies, self.requests, clips, latest, best
        )
        self.clips = clips
        self.stats = ChannelStats()
        self.started = time.time()
        self.inbox = CommandInbox(Path(data_dir) / INBOX_FILE, cfg.inbox_size)
        self._arrivals: queue.Queue[Arrived | None] = queue.Queue()  # bounded by the inbox
        self._thread: threading.Thread | None = None

    # -- life cycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Finish what a restart interrupted, then listen."""
        self.requests.prune(self.cfg.remember_days * 86400)
        self.jobs.start()
        if self.config is not None:
            self.config.resume(self.replies)  # a config change an earlier run left
        self._recover()
        for arrived in self.inbox.waiting():  # received, acknowledged, not yet handled
            self.stats.recovered += 1
            self._arrivals.put(arrived)
        self._thread = threading.Thread(target=self._run, name="commands", daemon=True)
        self._thread.start()
        self.uplink.subscribe(f"{CMD}/#", self._on_message)

    def stop(self) -> None:
        self._arrivals.put(None)
        if self._thread is not None:
            self._thread.join(10)
        if self.config is not None:
            self.config.stop()
        self.jobs.stop()
        self.requests.close()
        self.inbox.close()

    # -- the link thread -----------------------------------------------------------------
    def _on_message(self, inbound: Inbound) -> None:
        """Store the command before paho sends its PUBACK; one that does not fit is answered
        busy here and now, so no acknowledged command goes unanswered."""
        if inbound.retain:
            # The broker replays a retained message at every subscribe: running it would
            # repeat an old order at each reconnect.
            self.stats.retained += 1
            log.warning("retained command on %s ignored: not run", inbound.topic[:120])
            return
        size = len(inbound.payload)
        payload = (
            inbound.payload if size <= self.cfg.max_request_bytes else inbound.payload[:HEAD_BYTES]
        )
        try:
            arrived = self.inbox.put(inbound.topic, payload, size)
        except sqlite3.Error as exc:  # e.g. the card is full
            log.error("command inbox cannot store a command: %s", exc)
            arrived = None
        if arrived is None:
            self._refuse_busy(inbound.topic, payload, size)
            return
        self._arrivals.put(arrived)

    def _refuse_busy(self, topic: str, payload: bytes, size: int) -> None:
        """One busy reply for a command the inbox cannot take (link thread). Not recorded in
        the request log: asking again with the same id runs it."""
        self.stats.busy += 1
        _body, rq = self._parse(payload, size)
        if rq is None:
            log.warning("command on %s without a usable request id: dropped", topic[:120])
            return
        earlier = self.requests.get(rq)
        if earlier is not None:
            self.replies.repeat(earlier)
            return
        self.replies.refuse(
            rq,
            ErrorCode.BUSY,
            f"{self.cfg.inbox_size} commands are already waiting on this box: ask again later",
        )

    # -- the command thread --------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._arrivals.get()
            if item is None:
                return
            self.stats.received += 1
            try:
                self._handle(item.topic, item.payload, item.size)
            except Exception:  # nothing a station sends may stop the channel
                log.exception("command on %s failed", item.topic[:120])
            finally:
                self.inbox.done(item.row)

    def _handle(self, topic: str, payload: bytes, size: int) -> None:
        name = (kind_of(topic) or "").removeprefix(f"{CMD}/")
        body, rq = self._parse(payload, size)
        if rq is None:
            self.stats.unaddressed += 1
            log.warning("command on %s without a usable request id: dropped", topic[:120])
            return
        requester = body.get("by") if body is not None else None
        params = body.get("p") if body is not None else None
        try:
            earlier = self.requests.claim(
                rq,
                name,
                requester if isinstance(requester, str) else None,
                params if isinstance(params, dict) else None,
            )
        except sqlite3.OperationalError as exc:  # e.g. the card is full: not taken in
            log.error("request log cannot record request %s: %s", rq, exc)
            self.stats.rejected += 1
            self.replies.refuse(rq, ErrorCode.BUSY, f"the box cannot take requests now: {exc}")
            return
        if earlier is not None:
            self.stats.repeats += 1
            self.replies.repeat(earlier)
            return
        try:
            self._answer(name, rq, body, size)
        except Exception as exc:
            log.exception("request %s (%s) failed", rq, name[:40])
            self.replies.error(rq, ErrorCode.FAILED, f"the box failed on this request: {exc}")

    def _parse(self, payload: bytes, size: int) -> tuple[dict[str, Any] | None, str | None]:
        """The JSON object (None when it is not one, or too large) and its request id."""
        body: Any = None
        if size <= self.cfg.max_request_bytes:
            try:
                body = json.loads(payload)
                # JSON escapes may spell lone surrogates ("\\ud800"), which are no text: such a
                # request is refused whole, as invalid UTF-8 is.
                json.dumps(body, ensure_ascii=False).encode()
            except (ValueError, UnicodeError, RecursionError):
                body = None
        if isinstance(body, dict):
            rq = body.get("id")
            if isinstance(rq, str) and _REQUEST_ID.match(rq):
                return body, rq
            return body, None
        found = _ID_IN_BYTES.search(payload)
        return None, found.group(1).decode() if found else None

    def _answer(self, name: str, rq: str, body: dict[str, Any] | None, size: int) -> None:
        problem = self._problem(name, body, size)
        if problem is not None:
            self.stats.rejected += 1
            self.replies.error(rq, *problem)
            return
        assert body is not None
        cmd = CommandMsg.from_wire(body)
        params = PARAMS[name].model_validate(cmd.params)
        if name == "ping":
            self.replies.done(rq, {"t": round(time.time(), 3)})
        elif name == "status":
            self.replies.done(rq, self._status())
        elif name == "cancel":
            assert isinstance(params, CancelParams)
            self._cancel(rq, params.target)
        elif name in ("get_config", "set_config"):
            self._config(name, rq, cmd, params)
        else:
            self._start_job(name, rq, cmd, params)

    def _problem(self, name: str, body: dict[str, Any] | None, size: int) -> tuple[str, str] | None:
        """(code, sentence) when the request cannot be run as it is."""
        if size > self.cfg.max_request_bytes:
            return (
                ErrorCode.TOO_LARGE,
                f"the request is {size} bytes; the box takes {self.cfg.max_request_bytes} at most",
            )
        if body is None:
            return (ErrorCode.BAD_REQUEST, "the request is not a JSON object in UTF-8")
        if name not in COMMANDS:
            return (
                ErrorCode.UNKNOWN_COMMAND,
                f"no command {name[:40]!r}: this box knows {', '.join(COMMANDS)}",
            )
        try:
            cmd = CommandMsg.from_wire(body)
        except ValidationError as exc:
            return ErrorCode.BAD_REQUEST, _field_error(exc, "")
        if cmd.expires is not None and cmd.expires < time.time():
            return ErrorCode.EXPIRED, "the request expired before the box received it"
        try:
            params = PARAMS[name].model_validate(cmd.params)
        except ValidationError as exc:
            return ErrorCode.BAD_PARAMS, _field_error(exc, "p.")
        if isinstance(params, ClipParams):
            return self._clip_problem(params)
        return None

    def _clip_problem(self, p: ClipParams) -> tuple[str, str] | None:
        if p.end - p.start > self.cfg.max_clip_s:
            return (
                ErrorCode.TOO_LARGE,
                f"the range is {p.end - p.start:.0f} s; the box cuts "
                f"{self.cfg.max_clip_s:.0f} s at most per request",
            )
        if p.start > time.time() + 60:
            return ErrorCode.OUT_OF_RANGE, "'from' is in the future"
        return None

    def _start_job(self, name: str, rq: str, cmd: CommandMsg, params: Params) -> None:
        if name == "clip" and self.clips is None:
            self.replies.error(
                rq, ErrorCode.UNAVAILABLE, "this box keeps no recordings to cut clips from"
            )
            return
        assert isinstance(params, ClipParams | SnapshotParams)
        if not self.jobs.submit(Job(rq, name, cmd.requester, params)):
            self.replies.error(
                rq,
                ErrorCode.BUSY,
                f"{self.cfg.max_jobs} requests are already waiting on this box: ask again later",
            )
            return
        self.replies.progress(rq, 0.0, "queued")

    def _config(self, name: str, rq: str, cmd: CommandMsg, params: Params) -> None:
        if self.config is None:
            self.replies.error(rq, ErrorCode.UNAVAILABLE, "this box takes no config changes")
        elif name == "get_config":
            self.config.get(rq, self.replies)
        else:
            assert isinstance(params, SetConfigParams)
            self.config.set(rq, cmd.requester, params, self.replies)

    def _cancel(self, rq: str, target: str) -> None:
        if self.jobs.cancel(target):
            self.replies.done(rq, {"cancelled": target})
            return
        rec = self.sender.cancel(target)
        if rec is not None:
            self.replies.done(rq, {"cancelled": rec.rq or target, "xid": rec.xid})
            return
        earlier = self.requests.get(target)
        if earlier is not None and earlier.state == "final":
            self.replies.error(rq, ErrorCode.NOT_FOUND, f"request {target} has already ended")
        else:
            self.replies.error(
                rq,
                ErrorCode.NOT_FOUND,
                f"no clip or snapshot request or transfer {target} is running",
            )

    def _status(self) -> dict[str, Any]:
        status: dict[str, Any] = {
            "t": round(time.time(), 3),
            "sw": __version__,
            "up": round(time.time() - self.started, 1),
            "jobs": self.jobs.waiting,
            "transfers": self.sender.active(),
            "link": int(self.uplink.connected),
        }
        retained = getattr(self.clips, "retained", None)
        if callable(retained):
            try:
                status["rec"] = retained()
            except Exception as exc:  # a status must answer even when the recorder cannot
                status["rec"] = {"error": str(exc)[:200]}
        damaged = self._damaged_state_files()
        if damaged:
            status["damaged"] = damaged
        return status

    def _damaged_state_files(self) -> list[dict[str, Any]]:
        """State files found damaged at this start, moved aside and started empty."""
        reports = (
            self.uplink.outbox.moved_aside,
            self.inbox.moved_aside,
            self.requests.moved_aside,
            self.sender.store.moved_aside,
        )
        return [
            {"file": r.path.name, "aside": r.aside.name, "t": round(r.at, 3), "why": r.reason[:200]}
            for r in reports
            if r is not None
        ]

    # -- after a restart -----------------------------------------------------------------
    def _recover(self) -> None:
        """Requests a restart interrupted: resume their jobs, or answer them."""
        for req in self.requests.unfinished():
            try:
                self._recover_one(req)
            except Exception as exc:
                log.exception("cannot resume request %s", req.rq)
                self.replies.error(
                    req.rq, ErrorCode.FAILED, f"interrupted by a restart and not resumed: {exc}"
                )

    def _recover_one(self, req: Request) -> None:
        if self.config is not None and self.config.owns(req.rq):
            return  # a config change on trial: the config service answers it
        if req.xid is not None:
            rec = self.sender.find(req.xid)
            if rec is None:
                self.replies.error(req.rq, ErrorCode.FAILED, "the upload was lost in a restart")
            elif rec.state != "sending":
                finish(self.replies, rec)
            return  # still sending: the transfer sender resumes it and answers at its end
        if req.name in ("clip", "snapshot") and req.params is not None:
            params = PARAMS[req.name].model_validate(req.params)
            assert isinstance(params, ClipParams | SnapshotParams)
            if self.jobs.submit(Job(req.rq, req.name, req.requester, params)):
                log.info("request %s (%s) resumed after a restart", req.rq, req.name)
                return
        self.replies.error(req.rq, ErrorCode.FAILED, "interrupted by a restart of the box")


def _field_error(exc: ValidationError, prefix: str) -> str:
    """One sentence naming the first bad field, e.g. ``p.from: Input should be a number``."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    where = f"{prefix}{loc}" if loc else (prefix.rstrip(".") or "the request")
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown field: remove it or check its spelling"
    elif err["type"] == "missing":
        msg = "required but missing"
    return f"{where}: {msg}"[:300]
