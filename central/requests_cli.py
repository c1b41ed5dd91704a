"""The officer's side of clip and snapshot requests: ranges, the progress bar, the result.

Progress goes to stderr (a rich bar with the bytes the station holds, link drops and
resumes); the last line on stdout is the file's path and sha256, or the request id with
``--no-wait``. Exit codes: 0 done, 1 the box answered with an error, 3 no final answer yet
(the request stays queued for the box; ``roadside clip status ID`` follows it).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

from roadside.central import views
from roadside.central.config import CentralConfig
from roadside.central.i18n import _, ngettext
from roadside.central.officer import BoxRequest, RequestError, deliver, wait_for_file
from roadside.central.store import Store, queries
from roadside.central.times import parse_time, show_time
from roadside.errors import ExitCode
from roadside.wire.commands import ReplyMsg, ReplyState
from roadside.wire.messages import OfflineReason, Presence, StatusMsg
from roadside.wire.transfer import XferAck, XferAckState, XferInit

FILE_RECORD_WAIT_S = 30.0  # the receiver's record may trail the box's final reply


def clip_range(
    cfg: CentralConfig,
    at: str | None,
    before: float | None,
    after: float | None,
    start: str | None,
    end: str | None,
) -> tuple[float, float]:
    """(from, to) in epoch seconds from either --at/--before/--after or --from/--to."""
    if at is not None and (start is not None or end is not None):
        raise click.UsageError("give either --at (with --before/--after) or --from and --to")
    if at is not None:
        centre = parse_time(at, cfg.zone)
        b = cfg.officer.default_before_s if before is None else before
        a = cfg.officer.default_after_s if after is None else after
        if a + b <= 0:
            raise click.UsageError("--before plus --after must be more than 0 s")
        return centre - b, centre + a
    if start is None or end is None:
        raise click.UsageError("say which footage: --at TIME, or --from TIME --to TIME")
    if before is not None or after is not None:
        raise click.UsageError("--before and --after go with --at, not with --from/--to")
    t_from, t_to = parse_time(start, cfg.zone), parse_time(end, cfg.zone)
    if t_to <= t_from:
        raise click.UsageError(f"--to ({end}) must be after --from ({start})")
    return t_from, t_to


class TransferBar:
    """The rich progress bar of one request; knows about drops and resumes."""

    def __init__(self, progress: Progress, device: str) -> None:
        self.progress = progress
        self.device = device
        self.task: TaskID = progress.add_task(
            _("waiting for %(box)s") % {"box": device}, total=None
        )
        self.size: int | None = None
        self.chunk: int = 1
        self.xid: str | None = None
        self.drops = 0
        self.offline = False
        self.note = ""

    def _say(self, text: str) -> None:
        drops = (
            " [dim]("
            + ngettext("%(n)d drop", "%(n)d drops", self.drops) % {"n": self.drops}
            + ")[/]"
            if self.drops
            else ""
        )
        self.progress.update(self.task, description=text + drops)

    def status(self, msg: StatusMsg) -> None:
        if msg.state == Presence.OFFLINE and not self.offline:
            self.offline = True
            self.drops += 1
            reason = msg.reason or OfflineReason.LOST
            self._say(
                "[red]"
                + _("%(box)s offline (%(why)s): waiting to resume")
                % {"box": self.device, "why": reason}
            )
        elif msg.state == Presence.ONLINE and self.offline:
            self.offline = False
            self._say("[green]" + _("%(box)s back online: resuming") % {"box": self.device})

    def init(self, msg: XferInit) -> None:
        self.xid, self.size, self.chunk = msg.id, msg.size, msg.chunk_size
        self.progress.update(self.task, total=msg.size)
        self._say(_("receiving %(name)s") % {"name": views.in_markup(msg.name)})

    def ack(self, msg: XferAck) -> None:
        if self.size is None or msg.transfer_id != self.xid:
            return
        chunks = msg.held + sum(b - a for a, b in msg.ranges)
        held = self.size if msg.state == XferAckState.DONE else min(self.size, chunks * self.chunk)
        self.progress.update(self.task, completed=held)

    def reply(self, msg: ReplyMsg) -> None:
        if msg.state == ReplyState.PROGRESS:
            if msg.transfer_id:
                self.xid = self.xid or msg.transfer_id
            if self.size is None and msg.progress is not None:
                self.progress.update(self.task, total=1.0, completed=msg.progress)
            if msg.detail and not self.offline:
                self._say(views.in_markup(msg.detail))
        elif msg.state == ReplyState.DONE:
            self._say("[green]" + _("done"))
            if self.size is not None:
                self.progress.update(self.task, completed=self.size)


def _follow(req: BoxRequest, cfg: CentralConfig, console: Console) -> ReplyMsg | None:
    """Show updates until the final reply, or None when it does not come in time."""
    columns = [
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
    ]
    started = time.monotonic()
    heard = False
    with Progress(*columns, console=console, transient=False) as progress:
        bar = TransferBar(progress, req.device)
        while req.final is None:
            update = req.next_update(timeout=0.5)
            elapsed = time.monotonic() - started
            if update is None:
                if not heard and elapsed > cfg.officer.reply_timeout_s:
                    return None
                if elapsed > cfg.officer.clip_timeout_s:
                    return None
                continue
            msg = update.msg
            if update.kind == "status":
                assert isinstance(msg, StatusMsg)
                bar.status(msg)
            elif update.kind == "init":
                assert isinstance(msg, XferInit)
                if msg.request_id in (None, req.request_id):
                    bar.init(msg)
            elif update.kind == "ack":
                assert isinstance(msg, XferAck)
                bar.ack(msg)
            elif update.kind == "reply":
                assert isinstance(msg, ReplyMsg)
                heard = True
                bar.reply(msg)
    return req.final


def follow_request(
    cfg: CentralConfig,
    store: Store,
    device: str,
    command: str,
    params: dict[str, Any],
    out: Path | None,
    no_wait: bool,
    as_json: bool,
    requester: str,
) -> int:
    """Send one clip or snapshot request and see it through; returns the exit code."""
    console = Console(stderr=True)
    req = BoxRequest(cfg, store, device, command, params, requester=requester)
    request_id = req.send()
    try:
        if no_wait:
            _emit(as_json, {"id": request_id, "state": "sent"}, request_id)
            return ExitCode.OK
        console.print(
            f"request {request_id}: {command} from {device}" + _describe_params(cfg, params)
        )
        final = _follow(req, cfg, console)
    finally:
        req.close()
    if final is None:
        why = _(
            "no final answer from %(box)s yet; the request stays queued for it: "
            "roadside clip status %(id)s"
        ) % {"box": device, "id": request_id}
        req.give_up(why)
        _emit(as_json, {"id": request_id, "state": "pending", "detail": why}, why)
        return ExitCode.PENDING
    if final.state == ReplyState.ERROR:
        text = _("%(box)s refused or failed: %(msg)s (%(code)s)") % {
            "box": device,
            "msg": views.visible(final.detail),
            "code": views.visible(final.code),
        }
        _emit(
            as_json,
            {"id": request_id, "state": "error", "code": final.code, "detail": final.detail},
            text,
        )
        return ExitCode.FAILED
    row = wait_for_file(store, request_id, FILE_RECORD_WAIT_S)
    if row is None or row["state"] != "done" or not row.get("path"):
        raise RequestError(
            f"{device} says the {command} is sent, but the station has no stored file for "
            f"request {request_id} (is `roadside central run` running?)"
        )
    path, digest = deliver(row, out)
    _emit(
        as_json,
        {
            "id": request_id,
            "state": "done",
            "path": str(path),
            "sha256": digest,
            "bytes": path.stat().st_size,
            "result": final.result,
        },
        f"{path}  sha256 {digest}",
    )
    return ExitCode.OK


def _describe_params(cfg: CentralConfig, params: dict[str, Any]) -> str:
    if "from" in params:
        return (
            f", {show_time(params['from'], cfg.zone)} to "
            f"{show_time(params['to'], cfg.zone, with_date=False)} ({cfg.time_zone}), "
            f"quality {params.get('quality', 'original')}"
        )
    if params.get("event"):
        return f", event {params['event']}"
    return ", now"


def _emit(as_json: bool, data: dict[str, Any], text: str) -> None:
    if as_json:
        views.print_json(data)
    else:
        sys.stdout.write(text + "\n")


def show_status(cfg: CentralConfig, store: Store, request_id: str, as_json: bool) -> None:
    with store.connect() as conn:
        rows = queries.audit(conn, request_id=request_id, limit=1)
    if not rows:
        raise RequestError(f"no request {request_id} in the audit log")
    status = views.request_status(rows[0], store.clips.for_request(request_id), cfg.zone)
    if as_json:
        views.print_json(status)
        return
    console = views.out_console()
    asked = views.cell(status["action"], "bold")
    asked.append(
        views.visible(
            f" {status['id']} from {status['box']}, asked by {status['requester']} at "
            f"{status['asked']}"
        )
    )
    console.print(asked)
    detail = f" ({status['detail']})" if status["detail"] else ""
    console.print(views.cell(f"state: {status['state']}{detail}"))
    if "file" in status:
        f = status["file"]
        console.print(
            views.cell(
                f"file: {f['state']} {f['path'] or ''} {f['bytes'] or ''} bytes "
                f"sha256 {f['sha256'] or '?'}"
            )
        )
