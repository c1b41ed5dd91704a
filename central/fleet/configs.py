"""A box's config from the station: read what it runs, compose what it should run, send it.

``set`` asks the box for its running config first (so the change is a diff against what the
box really runs, and secrets stay on the box), composes the desired document from a file
and/or ``key=value`` assignments, validates it with the agent's own model (the same one-line
errors the box would give), refuses what the box would refuse, then sends it and follows the
box through its restart and health check to the final answer. The audit row keeps who, which
box, the diff (secrets redacted) and, once the box answers, the result.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roadside.central.config import CentralConfig
from roadside.central.fleet import desired
from roadside.central.officer import BoxRequest, RequestError
from roadside.central.store import Store
from roadside.config.agent import AgentConfig, parse_config
from roadside.config.base import read_toml
from roadside.config.document import (
    DESIRED,
    Change,
    Document,
    assign,
    config_hash,
    cutting_changes,
    diff,
    document,
    fixed_key_changes,
    redact,
    redact_change,
)
from roadside.errors import ConfigError, ExitCode, UsageError
from roadside.wire.commands import ReplyMsg, ReplyState
from roadside.wire.messages import Presence, StatusMsg

log = logging.getLogger(__name__)

# Beyond the box's health check: its restart (model load, camera, reconnect), and a margin.
RESTART_ALLOWANCE_S = 120.0


@dataclass(frozen=True)
class Running:
    """What a box said it runs (``get_config``)."""

    device: str
    doc: Document  # redacted
    hash: str
    trial: dict[str, Any] | None

    @property
    def config(self) -> AgentConfig:
        return parse_config(self.doc, f"{self.device}'s running config")


@dataclass(frozen=True)
class Outcome:
    """How a change ended, as the command line reports it."""

    exit_code: ExitCode
    request_id: str
    text: str
    data: dict[str, Any]


def ask_running(cfg: CentralConfig, store: Store, device: str, who: str) -> Running:
    """The box's running config; raises RequestError when it does not answer in time."""
    req = BoxRequest(cfg, store, device, "get_config", {}, requester=who)
    req.send()
    try:
        deadline = time.monotonic() + cfg.officer.reply_timeout_s
        while req.final is None and time.monotonic() < deadline:
            req.next_update(timeout=0.5)
    finally:
        req.close()
    final = req.final
    if final is None:
        req.give_up(f"{device} did not answer in {cfg.officer.reply_timeout_s:.0f} s")
        raise RequestError(
            f"{device} did not answer in {cfg.officer.reply_timeout_s:.0f} s: is it online? "
            "(roadside fleet status)"
        )
    if final.state == ReplyState.ERROR:
        raise RequestError(f"{device} refused: {final.detail} ({final.code})")
    result = final.result or {}
    if not isinstance(result.get("cfg"), dict) or not isinstance(result.get("h"), str):
        raise RequestError(f"{device} answered without a config: an older box?")
    trial = result.get("trial")
    return Running(device, result["cfg"], result["h"], trial if isinstance(trial, dict) else None)


def compose(running: Running, file: Path | None, assignments: list[str]) -> Document:
    """The desired document: ``file`` (else the running config) with ``assignments`` set."""
    base = read_toml(file) if file is not None else running.doc
    return assign(base, assignments)


@dataclass(frozen=True)
class Plan:
    """A validated change, ready to send."""

    device: str
    doc: Document  # as sent: secrets the box redacted stay so (the box keeps its own)
    hash: str
    previous: str
    changes: list[Change]  # secrets redacted
    cutting: list[str]
    health_s: float


def plan(running: Running, doc: Document, allow_disconnect: bool) -> Plan:
    """Check the desired document as the box will; raises UsageError (ConfigError) saying why
    it would be refused."""
    if doc.get("device", running.device) != running.device:
        raise UsageError(
            f"{DESIRED}: device = {doc.get('device')!r}, but it is sent to {running.device}: "
            "a box's name is not changed from the station"
        )
    new = parse_config(doc, DESIRED)
    changes = diff(running.doc, document(new))
    fixed = fixed_key_changes(changes)
    if fixed:
        raise ConfigError(
            f"{DESIRED}: {', '.join(fixed)} cannot be changed from the station (the box's "
            "name and its state folder)"
        )
    cutting = cutting_changes(running.config, new, changes)
    if cutting and not allow_disconnect:
        raise UsageError(
            f"this change of {', '.join(cutting)} may cut {running.device} off from the "
            "station: add --allow-disconnect (the box rolls it back by itself when it cannot "
            "reach the broker within its health check)"
        )
    return Plan(
        running.device,
        document(new),
        config_hash(new),
        running.hash,
        [redact_change(c) for c in changes],
        cutting,
        new.fleet.health_s,
    )


def send(
    cfg: CentralConfig,
    store: Store,
    plan: Plan,
    who: str,
    allow_disconnect: bool,
    health_s: float | None,
    say: Any,
) -> Outcome:
    """Send the change, record it as the box's desired config, follow it to the end.

    ``say`` gets a line for each step the box reports (stderr)."""
    params: dict[str, Any] = {"cfg": plan.doc, "ad": allow_disconnect}
    if health_s is not None:
        params["hs"] = health_s
    audited = {
        "cfg": plan.hash,
        "prev": plan.previous,
        "diff": [c.as_json() for c in plan.changes],
        "ad": allow_disconnect,
    }
    req = BoxRequest(
        cfg, store, plan.device, "set_config", params, requester=who, audit_params=audited
    )
    rq = req.send()
    desired.record(store.engine, plan.device, rq, plan.hash, redact(plan.doc), who)
    wait_s = (health_s or plan.health_s) + cfg.officer.reply_timeout_s + RESTART_ALLOWANCE_S
    started = time.monotonic()
    try:
        say(f"request {rq}: config {plan.hash} to {plan.device} (was {plan.previous})")
        while req.final is None and time.monotonic() - started < wait_s:
            update = req.next_update(timeout=0.5)
            if update is not None:
                _tell(update.kind, update.msg, plan, say)
    finally:
        req.close()
    took = round(time.monotonic() - started, 1)
    return _outcome(plan, rq, req.final, took)


def _tell(kind: str, msg: Any, plan: Plan, say: Any) -> None:
    if kind == "reply" and isinstance(msg, ReplyMsg) and msg.state == ReplyState.PROGRESS:
        say(f"{plan.device}: {msg.detail}")
    elif kind == "status" and isinstance(msg, StatusMsg):
        if msg.state == Presence.OFFLINE:
            say(f"{plan.device}: offline ({msg.reason or 'lost'})")
        elif msg.config_trial:
            say(f"{plan.device}: online, config {msg.config_trial} on trial")
        else:
            say(f"{plan.device}: online, config {msg.config_hash}")


def _outcome(plan: Plan, rq: str, final: ReplyMsg | None, took: float) -> Outcome:
    if final is None:
        text = (
            f"no final answer from {plan.device} yet; its answer is recorded when it comes "
            f"(roadside fleet status)"
        )
        return Outcome(ExitCode.PENDING, rq, text, {"id": rq, "state": "pending"})
    if final.state == ReplyState.ERROR:
        text = f"{plan.device}: {final.detail} ({final.code})"
        data = {"id": rq, "state": "error", "code": final.code, "detail": final.detail}
        return Outcome(ExitCode.FAILED, rq, text, data)
    result = final.result or {}
    if not result.get("changed"):
        text = f"{plan.device} already runs config {plan.hash}: nothing changed"
    else:
        text = f"{plan.device} runs config {plan.hash} (was {plan.previous}), {took:.0f} s"
    return Outcome(ExitCode.OK, rq, text, {"id": rq, "state": "done", "took_s": took, **result})
