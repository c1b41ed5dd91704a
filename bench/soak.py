"""Mountain-link soak: the whole system under scripted chaos, and its reliability figures.

One command (``python bench/soak.py [--duration SECONDS] [--seed N]``, default 600 s):

* a private mosquitto, the central service (ingest and clip receiver, SQLite store) beside it;
* one box, ``roadside agent run`` as a subprocess, on real footage played at its own frame
  rate and looped, recording continuously into a small ring (``--budget``), its events going
  to the durable outbox and to a JSON-lines log; it reaches the broker only through the
  bad-link proxy (``roadside.testing.badlink``: rate cap, latency, a modem's buffer);
* a chaos schedule, seeded and in a fixed order for a seed: broker restarts, link cuts,
  SIGKILLs of the agent (restarted after a pause), officer clip requests (checked by sha256 and
  decoded) and bursts of malformed commands straight onto the box's ``cmd`` topics (each must
  get an error reply). The small budget keeps the ring evicting all along; a watcher measures
  the segment folder on disk several times a second;
* a drain: the link stays up until every event the box logged is in the store, every request
  has its final answer, then the agent is stopped cleanly and what it logged last drains too.

"Lost" is counted against the box's own log, never against the store: an event message
(its ULID ``id`` and its phase ``k``) written to the box's JSON-lines file that the station's
store does not hold after the drain. The outbox is written before that log
(``agent/assembly.py``), so every logged message was durable on the box first.
docs/reliability.md explains it all.

Last line: ``RESULT lost=<n> dup=<n> clips_ok=<n>/<m> crashes=<n> restarts=<n> cuts=<n>
kills=<n>``.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import paho.mqtt.client as mqtt
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from rich.console import Console
from rich.table import Table

from roadside.backoff import Backoff
from roadside.central.config import parse_central_config
from roadside.central.mqtt import ReconnectWaits
from roadside.central.officer import BoxRequest
from roadside.central.service import CentralService
from roadside.central.store import tables as T
from roadside.digest import sha256_file
from roadside.testing.badlink import BadLink, LinkShape
from roadside.testing.broker import LocalBroker
from roadside.testing.pki import DistrictKeys
from roadside.testing.shared import footage_dir, models_dir
from roadside.wire.commands import COMMANDS, ErrorCode, ReplyMsg
from roadside.wire.topics import CMD, REPLY, topic

ROOT = Path(__file__).resolve().parents[1]
DEVICE = "soak-box"
WARM_UP_S = 12.0  # the box loads its model and closes its first segments before any chaos
CLIP_SPAN_S = 8.0  # length of each clip asked for
CLIP_LAG_S = 5.0  # a clip ends this long before the request (its segments must be closed)
CLIP_WARM_S = 10.0  # a box restarted less than this long ago is given the rest first
FINAL_REPLY_CODES = set(ErrorCode)

say = Console(stderr=True).print


# -- the box: one agent process at a time, killed and restarted at will -------------------
class Box:
    """Runs ``roadside agent run``; tells our SIGKILLs from the agent dying on its own."""

    def __init__(self, config: Path, log_path: Path) -> None:
        self.config = config
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.kills = 0
        self.crashes: list[int] = []  # exit codes of exits we did not cause
        self.starts: list[float] = []  # wall time of every start
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            with open(self.log_path, "ab") as log:
                log.write(f"--- soak: agent start at {time.time():.3f}\n".encode())
                self.proc = subprocess.Popen(
                    [
                        str(Path(sys.executable).parent / "roadside"),
                        "agent",
                        "run",
                        "--config",
                        str(self.config),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                )
            self.starts.append(time.time())

    def kill(self) -> None:
        """SIGKILL: a power cut as far as the agent's files are concerned."""
        with self._lock:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None
            self.kills += 1

    def check(self) -> None:
        """Count and restart an agent that exited on its own (a crash, whatever the code)."""
        with self._lock:
            if self.proc is None or self.proc.poll() is None:
                return
            self.crashes.append(self.proc.returncode)
            self.proc = None
        say(f"[red]soak: the agent exited on its own (code {self.crashes[-1]}); restarting")
        self.start()

    def stop(self, timeout: float = 60.0) -> int:
        """A clean stop (SIGTERM); a non-zero exit counts as a crash."""
        with self._lock:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait()
            self.proc = None
            if code != 0:
                self.crashes.append(code)
            return code

    def up_since(self) -> float:
        return self.starts[-1] if self.proc is not None and self.starts else float("inf")


# -- the recording ring, measured from outside ----------------------------------------------
@dataclass
class RingWatch:
    """Samples the bytes of the segment files on disk; sees segments come and go."""

    folder: Path
    budget: int
    samples: int = 0
    max_bytes: int = 0
    over_budget: int = 0  # samples above the budget
    seen: set[str] = field(default_factory=set)
    gone: set[str] = field(default_factory=set)

    def sample(self) -> None:
        sizes: dict[str, int] = {}
        for path in self.folder.rglob("*.ts*"):
            if not path.name.endswith((".ts", ".ts.part")):
                continue
            try:
                size = path.stat().st_size
            except FileNotFoundError:
                continue  # renamed or evicted while we looked
            stem = path.name.removesuffix(".part")
            sizes[stem] = max(size, sizes.get(stem, 0))
        total = sum(sizes.values())
        self.samples += 1
        self.max_bytes = max(self.max_bytes, total)
        self.over_budget += total > self.budget
        finished = {s for s in sizes if not s.endswith(".part")}
        self.gone |= {s for s in self.seen if s not in sizes}
        self.seen = (self.seen - self.gone) | finished


# -- malformed commands ----------------------------------------------------------------------
JUNK: list[Any] = [
    None,
    True,
    -1,
    10**30,
    1.5e300,
    "",
    "../../etc/passwd",
    "/dev/sda",
    "+",
    "cmd/#",
    [1, 2],
    {"a": {"b": []}},
    "\u202e\u0000",
    "é" * 40,
]


def fuzzed_command(rng: random.Random, rq: str) -> tuple[str, bytes]:
    """(command name, payload) with at least one defect that must earn an error reply."""
    body: dict[str, Any] = {"v": 1, "id": rq, "by": "soak-fuzz"}
    defect = rng.choice(
        [
            "types",
            "reversed",
            "too_long",
            "unknown_param",
            "big",
            "utf8",
            "paths",
            "not_object",
            "envelope",
            "command",
            "truncated",
            "nan",
            "expired",
            "old_range",
            "missing",
        ]
    )
    name = rng.choice(COMMANDS)
    if defect == "types":
        name = rng.choice(["clip", "snapshot", "cancel"])
        body["p"] = rng.choice([[rng.choice(JUNK)], "now", 7, {"from": "yesterday", "to": []}])
    elif defect == "reversed":
        name, body["p"] = "clip", {"from": time.time(), "to": time.time() - rng.uniform(1, 1e6)}
    elif defect == "too_long":
        name, body["p"] = "clip", {"from": time.time() - 1e6, "to": time.time()}
    elif defect == "unknown_param":
        body["p"] = {rng.choice(["form", "til", "path", "x"]): rng.choice(JUNK)}
    elif defect == "big":
        body["p"] = {"pad": "a" * rng.randint(20_000, 60_000)}
    elif defect == "utf8":
        tail = bytes(rng.randrange(256) for _ in range(rng.randint(0, 20)))
        return name, b'{"v":1,"id":"' + rq.encode() + b'","by":"\xff\xfe' + tail + b'"}'
    elif defect == "paths":
        name = rng.choice(["snapshot", "cancel"])
        where = rng.choice(["../../etc/passwd", "/var/lib/roadside/x", "a/../../b"])
        body["p"] = {"event": where} if name == "snapshot" else {"target": where}
    elif defect == "not_object":
        return name, json.dumps([body, rng.choice(JUNK)]).encode()
    elif defect == "envelope":
        body[rng.choice(["by", "exp", "p"])] = [rng.choice(JUNK), rng.choice(JUNK)]
    elif defect == "command":
        name = rng.choice(["reboot", "../../etc", "clip/extra", "shell", "CLIP"])
    elif defect == "truncated":
        text = json.dumps({**body, "p": {"from": 1, "to": 2}})
        return "clip", text[: rng.randint(len(text) // 2, len(text) - 2)].encode()
    elif defect == "nan":
        return "clip", json.dumps({**body, "p": {"from": float("nan"), "to": 1.0}}).encode()
    elif defect == "expired":
        name, body["exp"] = "ping", time.time() - rng.uniform(10, 1e6)
    elif defect == "old_range":
        name, body["p"] = "clip", {"from": 1e9, "to": 1e9 + 60}
    else:  # a parameter the command needs is missing
        name, body["p"] = "cancel", {}
    return name, json.dumps(body).encode()


class Fuzzer:
    """Publishes malformed commands straight to the broker and collects the box's replies.

    Its session is persistent, so replies that arrive while the broker restarts are kept.
    """

    def __init__(self, port: int, seed: int) -> None:
        self.rng = random.Random(seed ^ 0x5EED)
        self.sent: dict[str, tuple[str, bytes]] = {}
        self.finals: dict[str, dict[str, ReplyMsg]] = {}  # request -> reply id -> reply
        self._lock = threading.Lock()
        self._n = 0
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="soak-fuzzer", protocol=mqtt.MQTTv5
        )
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._reconnects = ReconnectWaits(self._client, Backoff(0.2, 2.0))
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self._client.connect_async("127.0.0.1", port, clean_start=False, properties=props)
        self._client.loop_start()

    def _on_connect(self, client: mqtt.Client, *_a: object) -> None:
        self._reconnects.connected()
        client.subscribe(topic(DEVICE, f"{REPLY}/+"), qos=1)

    def _on_message(self, _c: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        try:
            reply = ReplyMsg.decode(m.payload)
        except ValueError:
            return
        if reply.final:
            with self._lock:
                self.finals.setdefault(reply.request_id, {})[reply.id] = reply

    def burst(self, count: int) -> None:
        for _ in range(count):
            self._n += 1
            rq = f"fz{self._n:04d}-{self.rng.getrandbits(40):010x}"
            name, payload = fuzzed_command(self.rng, rq)
            self.sent[rq] = (name, payload)
            info = self._client.publish(topic(DEVICE, f"{CMD}/{name}"), payload, qos=1)
            info.wait_for_publish(15)

    def tally(self) -> dict[str, int]:
        """errors: one error reply each; wrong: a final reply that is not a proper error."""
        with self._lock:
            got = {rq: list(r.values()) for rq, r in self.finals.items() if rq in self.sent}
        errors = sum(
            1
            for r in got.values()
            if len(r) == 1
            and r[0].state == "error"
            and r[0].code in FINAL_REPLY_CODES
            and r[0].detail
        )
        twice = sum(1 for r in got.values() if len(r) > 1)
        return {
            "sent": len(self.sent),
            "answered": len(got),
            "errors": errors,
            "wrong": len(got) - errors - twice,
            "twice": twice,
        }

    def unanswered(self) -> list[str]:
        with self._lock:
            return [rq for rq in self.sent if rq not in self.finals]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


# -- officer clip requests -------------------------------------------------------------------
@dataclass
class ClipAsk:
    request_id: str
    asked: tuple[float, float]
    state: str = "sent"  # sent, then the audit row's final state
    verified: bool = False
    frames: int = 0
    bytes: int = 0
    why: str = ""


def check_clip(store_engine: sa.Engine, ask: ClipAsk) -> None:
    """Audit row final + file stored + sha256 as the box said + decodes: verified."""
    with store_engine.connect() as conn:
        audit = (
            conn.execute(sa.select(T.audit).where(T.audit.c.id == ask.request_id))
            .mappings()
            .first()
        )
        clip = (
            conn.execute(
                sa.select(T.clips)
                .where(T.clips.c.request_id == ask.request_id)
                .order_by(T.clips.c.created.desc())
            )
            .mappings()
            .first()
        )
    if audit is None or audit["state"] not in ("done", "error"):
        return
    ask.state = audit["state"]
    if ask.state == "error":
        ask.why = audit["detail"] or "error"
        return
    if clip is None or clip["state"] != "done":
        return  # the receiver's record may trail the reply by a moment
    said = (audit["result"] or {}).get("sha256")
    path = Path(clip["path"])
    digest = sha256_file(path)
    if digest != said or digest != clip["sha256"]:
        ask.why = f"sha256 {digest[:12]} vs box {str(said)[:12]} vs station {clip['sha256'][:12]}"
        return
    with av.open(clip["path"]) as container:
        ask.frames = sum(1 for _ in container.decode(video=0))
    ask.bytes = path.stat().st_size
    ask.verified = ask.frames > 0
    if not ask.verified:
        ask.why = "no picture decodes"


# -- the rig ---------------------------------------------------------------------------------
@dataclass
class Args:
    duration: float
    seed: int
    footage: Path
    work: Path
    budget: int
    kbps: float
    latency_ms: float
    drain_s: float


def agent_config(args: Args, proxy_port: int, keys: DistrictKeys) -> Path:
    """The box's config, its uploads signed with its device key, reaching the broker through
    the bad-link proxy."""
    mqtt = {
        "host": "127.0.0.1",
        "port": proxy_port,
        "keepalive_s": 10,
        "reconnect_min_s": 0.5,
        "reconnect_max_s": 4.0,
    }
    transfer = {"ack_timeout_s": 5.0, **keys.transfer_section(DEVICE)}
    box = args.work / "box"
    path = args.work / "agent.toml"
    return write_box_config(path, DEVICE, box, args.footage, args.budget, mqtt, transfer)


def write_box_config(
    path: Path,
    device: str,
    box: Path,
    footage: Path,
    budget: str | int,
    mqtt: dict[str, Any],
    transfer: dict[str, Any],
) -> Path:
    """A soak box's config at ``path``: real model, real footage looped at its own pace,
    outbox + JSON-lines log (``box/events.jsonl``), a small ring recording all along."""
    doc: dict[str, dict[str, Any]] = {
        "source": {"kind": "file", "path": str(footage), "pace": "native", "loop": True},
        "detector": {"models_dir": str(models_dir())},
        "events": {
            "sinks": ["mqtt", "jsonl"],
            "jsonl_path": str(box / "events.jsonl"),
            "count_interval_s": 10.0,
        },
        "mqtt": mqtt,
        "uplink": {"health_period_s": 10.0},
        "transfer": transfer,
        "recording": {
            "mode": "continuous",
            "budget_bytes": budget,
            "segment_s": 3.0,
            "keyframe_s": 1.0,
            "keep_free_bytes": "16MiB",
        },
        "recording.encoder": {
            "preset": "ultrafast",
            "bitrate": 250_000,
            "fps": 10.0,
            "width": 480,
            "height": 270,
        },
    }
    lines = [f"device = {json.dumps(device)}", f"data_dir = {json.dumps(str(box / 'data'))}"]
    for section, values in doc.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Chaos:
    """What the schedule did."""

    restarts: int = 0
    cuts: int = 0
    fuzz_bursts: int = 0
    log: list[str] = field(default_factory=list)


def schedule(duration: float, seed: int) -> list[str]:
    """The chaos actions in order: each kind at least once, more in a longer run."""
    slots = max(1, round((duration - WARM_UP_S) / 60.0 * 10))
    scale = max(1.0, slots / 10)
    plan = (
        ["broker_restart"] * round(1 * scale)
        + ["link_cut"] * round(2 * scale)
        + ["agent_kill"] * round(2 * scale)
        + ["clip"] * round(2 * scale)
        + ["fuzz"] * round(2 * scale)
    )
    rng = random.Random(seed)
    rng.shuffle(plan)
    return plan


class Soak:
    """Everything of one run; ``run`` returns the figures."""

    def __init__(self, args: Args) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.chaos = Chaos()
        self.clips: list[ClipAsk] = []
        self.jsonl = args.work / "box" / "events.jsonl"
        self.torn_lines = 0
        self.ring = RingWatch(args.work / "box" / "data" / "segments", args.budget)
        self._stop_watch = threading.Event()

    # -- chaos actions ---------------------------------------------------------------------
    def broker_restart(self) -> None:
        self.broker.stop()
        down = self.rng.uniform(1.0, 4.0)
        time.sleep(down)
        self.broker.start()
        self.chaos.restarts += 1
        self.note(f"broker restarted after {down:.1f} s down")

    def link_cut(self) -> None:
        down = self.rng.uniform(2.0, 8.0)
        self.link.cut(down)
        time.sleep(down)
        self.chaos.cuts += 1
        self.note(f"link cut for {down:.1f} s")

    def agent_kill(self) -> None:
        self.box.kill()
        down = self.rng.uniform(0.5, 3.0)
        time.sleep(down)
        self.box.start()
        self.note(f"agent SIGKILLed, restarted after {down:.1f} s")

    def clip(self) -> None:
        """An officer asks for footage the box recorded since its last start."""
        ready = self.box.up_since() + CLIP_WARM_S
        give_up = time.time() + CLIP_WARM_S
        while time.time() < min(ready, give_up):
            time.sleep(0.5)  # just restarted: let it record something first
        to = time.time() - CLIP_LAG_S
        asked = (to - CLIP_SPAN_S, to)
        req = BoxRequest(
            self.service.cfg,
            self.service.store,
            DEVICE,
            "clip",
            {"from": asked[0], "to": asked[1], "quality": "original"},
            requester="soak@station",
        )
        request_id = req.send()
        req.close()  # followed through the audit log and the clips table, not this session
        self.clips.append(ClipAsk(request_id, asked))
        self.note(f"clip requested {request_id}")

    def fuzz(self) -> None:
        count = self.rng.randint(8, 15)
        self.fuzzer.burst(count)
        self.chaos.fuzz_bursts += 1
        self.note(f"{count} malformed commands sent")

    def note(self, what: str) -> None:
        line = f"{time.monotonic() - self.t0:6.1f} s  {what}"
        self.chaos.log.append(line)
        say(f"soak: {line}")

    # -- watchers --------------------------------------------------------------------------
    def _watch(self) -> None:
        while not self._stop_watch.wait(0.2):
            self.box.check()
            self.ring.sample()

    # -- what the box logged and what the station holds ----------------------------------
    def produced(self) -> tuple[set[tuple[str, str]], set[str]]:
        """(event id, phase) and count ids from the box's JSON-lines log."""
        events: set[tuple[str, str]] = set()
        counts: set[str] = set()
        torn = 0
        with open(self.jsonl, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    msg = json.loads(line)
                except ValueError:
                    torn += 1  # a line cut short by a kill (the outbox has the message)
                    continue
                if msg.get("type") == "event":
                    events.add((msg["id"], msg["k"]))
                elif msg.get("type") == "count":
                    counts.add(msg["id"])
        self.torn_lines = torn
        return events, counts

    def stored(self) -> tuple[dict[str, str], set[str], int]:
        """(event id -> phase, count ids, rows stored twice) from the station's store."""
        engine = self.service.store.engine
        with engine.connect() as conn:
            events = dict(conn.execute(sa.select(T.events.c.id, T.events.c.phase)).all())
            counts = set(conn.execute(sa.select(T.counts.c.id)).scalars())
            dup = 0
            for table in (T.events, T.counts, T.health):
                dup += conn.execute(
                    sa.select(sa.func.count()).select_from(
                        sa.select(table.c.id)
                        .group_by(table.c.id)
                        .having(sa.func.count() > 1)
                        .subquery()
                    )
                ).scalar_one()
        return events, counts, dup

    @staticmethod
    def missing(produced: set[tuple[str, str]], stored: dict[str, str]) -> set[tuple[str, str]]:
        """Logged event messages the store does not reflect: a start needs its row, an end
        needs the row ended."""
        return {
            (i, k) for i, k in produced if stored.get(i) is None or (k == "e" and stored[i] != "e")
        }

    def settled(self) -> bool:
        events, counts = self.produced()
        stored, stored_counts, _ = self.stored()
        for ask in self.clips:
            if not ask.verified and not ask.why:
                check_clip(self.service.store.engine, ask)
        return (
            not self.missing(events, stored)
            and counts <= stored_counts
            and all(a.verified or a.why for a in self.clips)
            and not self.fuzzer.unanswered()
        )

    def drain(self, seconds: float) -> float:
        """Wait until the station has everything the box logged; returns the time it took."""
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            if self.settled():
                break
            time.sleep(0.5)
        return time.monotonic() - start

    # -- the run ---------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        a = self.args
        shutil.rmtree(a.work, ignore_errors=True)
        (a.work / "box").mkdir(parents=True)
        self.t0 = time.monotonic()
        keys = DistrictKeys(a.work / "keys")
        self.broker = LocalBroker(a.work / "broker").start()
        cfg = parse_central_config(
            {
                "data_dir": str(a.work / "central"),
                "broker": {"port": self.broker.port},
                "officer": {"clips_dir": str(a.work / "central" / "clips")},
                "receiver": keys.receiver_section(),
            },
            "soak",
        )
        self.service = CentralService(cfg)
        station = threading.Thread(
            target=self.service.run, kwargs={"report_s": 3600}, name="central", daemon=True
        )
        station.start()
        if not self.service.ingest.wait_connected(15):
            raise RuntimeError("the central service could not reach the broker")
        self.link = BadLink(
            self.broker.port,
            shape=LinkShape(latency_s=a.latency_ms / 1000, up_kbps=a.kbps, down_kbps=a.kbps),
        ).start()
        self.fuzzer = Fuzzer(self.broker.port, a.seed)
        self.box = Box(agent_config(a, self.link.port, keys), a.work / "agent.log")
        self.box.start()
        watch = threading.Thread(target=self._watch, name="soak-watch", daemon=True)
        watch.start()
        try:
            self._chaos()
            drain_s = self.drain(a.drain_s)
            self.note(f"drained in {drain_s:.1f} s; stopping the agent")
            exit_code = self.box.stop()
            self.note(f"agent stopped (exit {exit_code})")
            final_drain_s = self.drain(min(30.0, a.drain_s))
            self._stop_watch.set()
            watch.join()
            return self._figures(drain_s, final_drain_s)
        finally:
            self._stop_watch.set()
            if self.box.proc is not None:
                self.box.kill()
            self.fuzzer.close()
            self.service.stop_event.set()
            station.join(30)
            self.link.stop()
            self.broker.stop()

    def _chaos(self) -> None:
        plan = schedule(self.args.duration, self.args.seed)
        time.sleep(WARM_UP_S)
        gap = (self.args.duration - WARM_UP_S) / len(plan)
        for i, action in enumerate(plan):
            due = self.t0 + WARM_UP_S + i * gap
            time.sleep(max(0.0, due - time.monotonic()))
            getattr(self, action)()
        time.sleep(max(0.0, self.t0 + self.args.duration - time.monotonic()))

    def _figures(self, drain_s: float, final_drain_s: float) -> dict[str, Any]:
        events, counts = self.produced()
        stored, stored_counts, dup = self.stored()
        lost = self.missing(events, stored)
        if lost:
            say(f"[red]soak: lost {sorted(lost)[:10]}")
        ok = [c for c in self.clips if c.verified]
        for c in self.clips:
            if not c.verified:
                say(f"[red]soak: clip {c.request_id} not delivered: {c.state} {c.why}")
        fz = self.fuzzer.tally()
        if fz["sent"] != fz["errors"]:
            say(
                f"[red]soak: commands without one proper error reply: "
                f"{self.fuzzer.unanswered()[:10]} {fz}"
            )
        with open(self.args.work / "agent.log", encoding="utf-8", errors="replace") as fh:
            tracebacks = sum("Traceback" in line for line in fh)
        return {
            "produced": len(events),
            "ids": len({i for i, _ in events}),
            "stored_ids": len(stored),
            "lost": len(lost),
            "dup": dup,
            "unlogged": len(set(stored) - {i for i, _ in events}),
            "counts": len(counts),
            "counts_lost": len(counts - stored_counts),
            "torn": self.torn_lines,
            "clips": len(self.clips),
            "answered": sum(c.state != "sent" for c in self.clips),
            "completed": sum(c.state == "done" for c in self.clips),
            "clips_ok": len(ok),
            "clip_bytes": sum(c.bytes for c in ok),
            "clip_frames": sum(c.frames for c in ok),
            "fuzz": fz,
            "crashes": len(self.box.crashes),
            "crash_codes": self.box.crashes,
            "tracebacks": tracebacks,
            "restarts": self.chaos.restarts,
            "cuts": self.chaos.cuts,
            "kills": self.box.kills,
            "ring_max": self.ring.max_bytes,
            "ring_over": self.ring.over_budget,
            "ring_samples": self.ring.samples,
            "evicted": len(self.ring.gone),
            "budget": self.args.budget,
            "drain_s": drain_s,
            "final_drain_s": final_drain_s,
            "link": self.link.stats,
            "elapsed": time.monotonic() - self.t0,
        }


def report(f: dict[str, Any], args: Args) -> str:
    """The table on stdout; returns the RESULT line."""
    table = Table(
        title=f"Mountain-link soak: {args.duration:.0f} s of chaos, seed {args.seed}, "
        f"{args.footage.name}, link {args.kbps:.0f} kbit/s, "
        f"{2 * args.latency_ms:.0f} ms round trip"
    )
    table.add_column("what")
    table.add_column("figure", justify="right")
    fz = f["fuzz"]
    rows: list[tuple[str, str]] = [
        ("event messages logged by the box (id, phase)", f"{f['produced']} ({f['ids']} events)"),
        ("events stored at the station (unique ids)", str(f["stored_ids"])),
        ("[bold]lost[/] (logged by the box, not in the store after the drain)", str(f["lost"])),
        ("[bold]stored twice[/] (events, counts, health rows per id)", str(f["dup"])),
        ("stored but not logged (killed between outbox and log)", str(f["unlogged"])),
        ("counts logged / lost", f"{f['counts']} / {f['counts_lost']}"),
        ("log lines cut short by a kill", str(f["torn"])),
        (
            "clip requests answered / completed / verified (sha256, decoded)",
            f"{f['answered']} / {f['completed']} / {f['clips_ok']} of {f['clips']}",
        ),
        ("clip bytes / frames decoded", f"{f['clip_bytes']:,} / {f['clip_frames']}"),
        (
            "malformed commands sent / one error reply each / answered twice / other",
            f"{fz['sent']} / {fz['errors']} / {fz['twice']} / {fz['wrong']}",
        ),
        (
            "[bold]agent crashes[/] (exits we did not cause)",
            f"{f['crashes']} {f['crash_codes'] or ''}",
        ),
        ("tracebacks in the agent's log", str(f["tracebacks"])),
        ("broker restarts survived", str(f["restarts"])),
        ("link cuts survived", str(f["cuts"])),
        ("agent SIGKILLs survived", str(f["kills"])),
        (
            "recording budget / most on disk (sampled)",
            f"{f['budget']:,} / {f['ring_max']:,} B ({f['ring_samples']} samples)",
        ),
        ("samples over budget", str(f["ring_over"])),
        ("segments evicted (seen, then gone)", str(f["evicted"])),
        (
            "drain after the chaos / after the clean stop",
            f"{f['drain_s']:.1f} s / {f['final_drain_s']:.1f} s",
        ),
        ("bytes through the link up / down", f"{f['link'].bytes_up:,} / {f['link'].bytes_down:,}"),
        ("wall time", f"{f['elapsed']:.0f} s"),
    ]
    for what, figure in rows:
        table.add_row(what, figure)
    Console(width=120).print(table)
    return (
        f"RESULT lost={f['lost']} dup={f['dup']} clips_ok={f['clips_ok']}/{f['clips']} "
        f"crashes={f['crashes']} restarts={f['restarts']} cuts={f['cuts']} "
        f"kills={f['kills']}"
    )


def parse_args(argv: list[str] | None = None) -> Args:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=600.0, help="seconds of chaos (≥ 30)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--footage",
        default="motorway_overpass",
        help="a file in $ROADSIDE_SHARED/footage (without .mp4)",
    )
    p.add_argument("--work", type=Path, default=ROOT / "var" / "soak")
    p.add_argument("--budget", type=int, default=1536 * 1024, help="recording budget, bytes")
    p.add_argument("--kbps", type=float, default=512.0, help="link rate each way")
    p.add_argument("--latency-ms", type=float, default=150.0, help="one-way added latency")
    p.add_argument("--drain", type=float, default=None, help="longest drain, s")
    ns = p.parse_args(argv)
    if ns.duration < 30:
        p.error("--duration: at least 30 s")
    return Args(
        duration=ns.duration,
        seed=ns.seed,
        footage=footage_dir() / f"{ns.footage}.mp4",
        work=ns.work.resolve(),
        budget=ns.budget,
        kbps=ns.kbps,
        latency_ms=ns.latency_ms,
        drain_s=ns.drain or max(45.0, ns.duration / 5),
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    args = parse_args(argv)
    figures = Soak(args).run()
    print(report(figures, args), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
