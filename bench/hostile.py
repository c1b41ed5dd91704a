"""Hostile-box soak: one box with a valid certificate attacks the station beside honest ones.

One command (``python bench/hostile.py [--duration SECONDS]``, default 300 s):

* the broker as provisioning makes it: a project CA, ``roadside.conf`` and
  ``dynamic-security.json`` written by ``write_broker_dir`` (what ``roadside provision
  broker`` runs), mosquitto on that config as is (TLS with client certificates, dynamic
  security, queue and packet limits); the central service (ingest and clip receiver, SQLite
  store, the device CA and CRL for signed uploads) on the station listener;
* honest box A: ``roadside agent run`` on real footage, events to its outbox and to a
  JSON-lines log, recording continuously; an officer asks it for clips now and then;
* honest box B: the box's real uplink (outbox and sender) publishing synthetic events and
  counts at a steady rate; an officer pings it (B never answers: its audit rows must stay
  ``sent``);
* the hostile box, with its own valid device certificate, in a loop: poison on its own
  topics (NaN, huge integers, long strings, bad JSON, a payload over its kind's limit, now and
  then 8 MiB), ``$share/...`` and other boxes' subscriptions, forged ids (an end carrying an
  honest event id, replies naming honest requests, signed and unsigned uploads naming honest
  requests), publishes on the honest boxes' topics and floods of commands at itself and at A.

"Lost" is counted against what the honest boxes logged (A's JSON-lines file, written after
its outbox) or handed their uplink (B), "dup" are ids stored twice, "hostile_effects" is
every honest row the hostile box changed or added (events, counts, audit rows, clip records),
every message of another box it received and every refused thing the broker let through.
docs/reliability.md, *The hostile-box soak*, has the figures.

Last line: ``RESULT lost=<n> dup=<n> hostile_effects=<n> honest=<n> tried=<n> rejects=<n>
refused=<n>``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import shutil
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import sqlalchemy as sa
from paho.mqtt.enums import CallbackAPIVersion
from rich.console import Console
from rich.table import Table
from soak import Box, ClipAsk, check_clip, write_box_config

from roadside.agent.uplink import Uplink
from roadside.central.config import parse_central_config
from roadside.central.officer import BoxRequest
from roadside.central.service import CentralService
from roadside.central.store import tables as T
from roadside.config.agent import UplinkConfig
from roadside.evidence import ClipManifest, Signer
from roadside.ids import new_id
from roadside.provisioning.ca import STATION_CA, ProjectCA, cert_pem, key_pem, new_key
from roadside.testing.broker import ProvisionedBroker, loopback_broker_dir
from roadside.testing.configs import mqtt_config
from roadside.testing.messages import event_pair
from roadside.testing.shared import footage_dir
from roadside.wire.messages import CountMsg, EventMsg
from roadside.wire.topics import XFER_DATA, XFER_INIT, topic, xfer_topic
from roadside.wire.transfer import XferInit, pack_chunk

ROOT = Path(__file__).resolve().parents[1]
AGENT, UPLINK, HOSTILE = "honest-a", "honest-b", "hostile"
CENTRAL = "central.station"
MARK = "hostile-forgery"  # in every forged reply and upload: found in an honest row, an effect
WARM_UP_S = 14.0  # the agent loads its model and records its first segments
ROUND_S = 1.0  # between the hostile box's rounds
BIG_EVERY = 15  # rounds between two 8 MiB payloads
FLOOD = 50  # commands per flood
PASS = b"hostile soak passphrase"

say = Console(stderr=True).print


# -- the district: CA, certificates, the provisioned broker --------------------------------
@dataclass
class Creds:
    ca: Path
    cert: Path
    key: Path

    def mqtt(self) -> dict[str, str]:
        return {"tls_ca": str(self.ca), "tls_cert": str(self.cert), "tls_key": str(self.key)}


@dataclass
class District:
    creds: dict[str, Creds]
    files_dir: Path
    ports: tuple[int, int, int]  # boxes, station, officers


def provision(work: Path) -> District:
    """A CA, one certificate per box and for the station, and the broker folder."""
    ca = ProjectCA.create(work / "ca", PASS)
    station_ca = ca.cert_pem(STATION_CA)
    creds: dict[str, Creds] = {}
    for name in (AGENT, UPLINK, HOSTILE, CENTRAL):
        key = new_key()
        cert = (
            ca.issue_account(name, key.public_key())
            if "." in name
            else ca.issue_device(name, key.public_key())
        )
        d = work / "pki" / name
        d.mkdir(parents=True)
        c = Creds(d / "ca.crt", d / "client.crt", d / "client.key")
        c.ca.write_bytes(station_ca)
        c.cert.write_bytes(cert_pem(cert))
        c.key.write_bytes(key_pem(key))
        creds[name] = c
    files, ports = loopback_broker_dir(ca, work / "broker-files")
    return District(creds, files.directory, ports)


# -- honest box B: the real uplink, synthetic traffic ---------------------------------------
class SteadyBox:
    """Hands its uplink one event start every tick, its end a few ticks later, and a count
    every ``count_every`` ticks; remembers everything it handed over (then in the outbox)."""

    def __init__(self, uplink: Uplink, tick_s: float = 0.25, count_every: int = 40) -> None:
        self.uplink = uplink
        self.tick_s = tick_s
        self.count_every = count_every
        self.events: dict[str, EventMsg] = {}  # id -> the last message sent
        self.phases: set[tuple[str, str]] = set()
        self.counts: dict[str, CountMsg] = {}
        self._open: list[EventMsg] = []
        self.stop = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> None:
        n = 0
        while not self.stop.wait(self.tick_s):
            n += 1
            start, end = event_pair(time.time(), "car", n % 1000)
            self._send(start)
            self._open.append(end)
            if len(self._open) > 4:
                self._send(self._open.pop(0))
            if n % self.count_every == 0:
                now = time.time()
                c = CountMsg(id=new_id(), start=now - 10, end=now, counts={"car": n % 50})
                self.uplink.sink.publish("count", c)
                with self._lock:
                    self.counts[c.id] = c
        for end in self._open:
            self._send(end)

    def _send(self, msg: EventMsg) -> None:
        self.uplink.sink.publish("event", msg)
        with self._lock:
            self.events[msg.id] = msg
            self.phases.add((msg.id, msg.phase.value))


# -- the hostile box -------------------------------------------------------------------------
def _event(**change: object) -> bytes:
    start, _ = event_pair(time.time())
    body = json.loads(start.encode())
    body.update(change)
    return json.dumps(body).encode()


def poison() -> list[tuple[str, bytes]]:
    """(kind, payload) on the box's own topics, each one the station must refuse."""
    now = time.time()
    count = {"v": 1, "id": new_id(), "t0": now - 60, "t1": now, "n": {"car": 1}}
    health = {"v": 1, "id": new_id(), "t": now}
    return [
        ("event", _event(t0=math.nan)),
        ("event", _event(s=math.inf)),
        ("event", _event(tr=2**64)),
        ("event", _event(c="c" * 40_000)),
        ("event", _event(c="ca\x00r")),
        ("event", _event(z=[f"z{i}" for i in range(5000)])),
        ("event", b'{"pad":"' + b"x" * 100_000 + b'"}'),  # over the event limit, not parsed
        ("event", b'{"v":1,"id":"' + new_id().encode() + b'","k":'),
        ("event", b"\xff\xfe not json"),
        ("count", json.dumps({**count, "n": {"car": 2**64}}).encode()),
        ("count", json.dumps({**count, "t0": math.nan}).encode()),
        ("health", json.dumps({**health, "ld": math.inf}).encode()),
        ("health", json.dumps({**health, "up": 2**64}).encode()),
        ("status", json.dumps({**health, "st": "online", "sw": "1" * 50_000}).encode()),
        ("status", b"[]"),
    ]


@dataclass
class Tally:
    """What the hostile box tried, and what the broker and the station answered."""

    tried: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)  # PUBACK/SUBACK "not authorised"
    let_through: Counter[str] = field(default_factory=Counter)  # refused things accepted
    stolen: int = 0  # messages of another box delivered to it
    closed: int = 0  # 8 MiB payloads that made the broker close the connection
    unanswered: int = 0  # publishes or subscriptions without any answer in time


class HostileBox:
    """A box with a valid certificate, doing everything it should not."""

    def __init__(self, port: int, creds: Creds, honest: list[str], store: Any) -> None:
        self.port = port
        self.creds = creds
        self.honest = honest
        self.store = store
        self.tally = Tally()
        self.requests: list[str] = []  # honest requests it forges answers and files for
        self.signer = Signer.load(creds.cert, creds.key)
        self.stop = threading.Event()
        self._acks: dict[int, int] = {}
        self._subacks: dict[int, list[int]] = {}
        self._cond = threading.Condition()
        self.client = self._client(mqtt.MQTTv5)
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=30)
        self.client.loop_start()

    def _client(self, protocol: mqtt.MQTTProtocolVersion) -> mqtt.Client:
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=HOSTILE, protocol=protocol)
        c.tls_set(
            ca_certs=str(self.creds.ca), certfile=str(self.creds.cert), keyfile=str(self.creds.key)
        )
        c.max_inflight_messages_set(1000)
        return c

    def _on_publish(self, _c: object, _u: object, mid: int, rc: Any, _p: object) -> None:
        with self._cond:
            self._acks[mid] = rc.value
            self._cond.notify_all()

    def _on_subscribe(self, _c: object, _u: object, mid: int, rcs: list, _p: object) -> None:
        with self._cond:
            self._subacks[mid] = [rc.value for rc in rcs]
            self._cond.notify_all()

    def _on_message(self, _c: object, _u: object, m: mqtt.MQTTMessage) -> None:
        if not m.topic.startswith(topic(HOSTILE, "")):
            self.tally.stolen += 1

    # -- sending, and reading the broker's answer -------------------------------------------
    def _publish(self, what: str, topic_name: str, payload: bytes, refused: bool) -> None:
        self._publish_many(what, [(topic_name, payload)], refused)

    def _publish_many(self, what: str, msgs: list[tuple[str, bytes]], refused: bool) -> None:
        """QoS 1; ``refused``: the broker must answer "not authorised" to every one."""
        mids = [self.client.publish(t, p, qos=1).mid for t, p in msgs]
        self.tally.tried[what] += len(mids)
        with self._cond:
            self._cond.wait_for(lambda: all(m in self._acks for m in mids), 15)
            codes = [self._acks.pop(m, None) for m in mids]
        self.tally.unanswered += sum(c is None for c in codes)
        if refused:
            self.tally.refused[what] += sum(c is not None and c >= 0x80 for c in codes)
            self.tally.let_through[what] += sum(c is not None and c < 0x80 for c in codes)

    def _subscribe(self, what: str, filters: list[str]) -> None:
        self.tally.tried[what] += len(filters)
        for f in filters:
            codes = self._suback(self.client.subscribe(f, qos=1)[1] or 0)
            if codes is None:
                self.tally.unanswered += 1
            elif codes[0] >= 0x80:
                self.tally.refused[what] += 1
            else:
                self.tally.let_through[what] += 1

    def _suback(self, mid: int) -> list[int] | None:
        with self._cond:
            self._cond.wait_for(lambda: mid in self._subacks, 15)
            return self._subacks.pop(mid, None)

    # -- the attacks ------------------------------------------------------------------------
    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            self.round(big=n % BIG_EVERY == 1)
            self.stop.wait(ROUND_S)

    def round(self, big: bool = False) -> None:
        self._publish_many("poison", [(topic(HOSTILE, k), p) for k, p in poison()], False)
        if big:
            self.oversized()
        self._subscribe(
            "steal",
            [
                "$share/central/roadside/v1/+/event",
                f"$share/x/roadside/v1/{self.honest[0]}/#",
                "$share/central/roadside/v1/#",
                f"roadside/v1/{self.honest[1]}/event",
                "roadside/v1/+/reply/#",
            ],
        )
        self.forge()
        self.trespass()
        self._publish_many(
            "flood",
            [(topic(HOSTILE, "cmd/ping"), b'{"v":1,"id":"f%d"}' % i) for i in range(FLOOD)]
            + [(topic(self.honest[0], "cmd/clip"), b'{"v":1,"id":"g%d"}' % i) for i in range(10)],
            True,
        )

    def oversized(self) -> None:
        """8 MiB on an MQTT 3.1.1 connection (an MQTT 5 client holds it back itself, told
        the limit in the CONNACK): the broker closes the connection."""
        self.tally.tried["8 MiB"] += 1
        gone = threading.Event()
        c = self._client(mqtt.MQTTv311)
        c.on_disconnect = lambda *_a: gone.set()
        try:
            c.connect("127.0.0.1", self.port, keepalive=30)
            c.loop_start()
            c.publish(topic(HOSTILE, "event"), b'{"pad":"' + b"x" * (8 << 20) + b'"}', qos=1)
            self.tally.closed += gone.wait(15)
        finally:
            c.loop_stop()

    def _honest_event(self) -> tuple[str, str] | None:
        with self.store.engine.connect() as conn:
            row = conn.execute(
                sa.select(T.events.c.id, T.events.c.device)
                .where(T.events.c.device.in_(self.honest))
                .order_by(T.events.c.received.desc())
                .limit(1)
            ).first()
        return None if row is None else (row[0], row[1])

    def forge(self) -> None:
        """Honest ids on its own topics: an end for an honest event, replies and uploads for
        honest requests."""
        got = self._honest_event()
        if got is not None:
            _start, end = event_pair(time.time() - 5, MARK[:30], 7)
            forged = end.model_copy(update={"id": got[0], "score": 1.0})
            self._publish("forged end", topic(HOSTILE, "event"), forged.encode(), False)
        for rq in self.requests[-3:]:
            reply = {"v": 1, "id": new_id(), "rq": rq, "st": "done", "r": {"by": MARK}}
            self._publish(
                "forged reply", topic(HOSTILE, f"reply/{rq}"), json.dumps(reply).encode(), False
            )
            self.upload(rq, signed=True)
            self.upload(rq, signed=False)

    def upload(self, rq: str, signed: bool) -> None:
        data = f"{MARK} footage for {rq}".encode() * 200
        xid = new_id()
        sha = hashlib.sha256(data).hexdigest()
        name = f"{HOSTILE}-{xid[-8:]}.mp4"
        evidence = None
        if signed:
            evidence = self.signer.sign(
                ClipManifest(
                    device=HOSTILE,
                    xid=xid,
                    request_id=rq,
                    kind="clip",
                    name=name,
                    size=len(data),
                    sha256=sha,
                    software="0.0.0",
                    signed_at=time.time(),
                )
            )
        init = XferInit(
            id=xid,
            kind="clip",
            request_id=rq,
            requester=MARK,
            name=name,
            size=len(data),
            sha256=sha,
            chunk_size=4096,
            at=time.time(),
            evidence=evidence,
        )
        what = "forged upload, signed" if signed else "forged upload, unsigned"
        msgs = [(xfer_topic(HOSTILE, xid, XFER_INIT), init.encode())]
        msgs += [
            (xfer_topic(HOSTILE, xid, XFER_DATA), pack_chunk(o, data[o : o + 4096]))
            for o in range(0, len(data), 4096)
        ]
        self._publish_many(what, msgs[:1], False)
        for t, p in msgs[1:]:
            self.client.publish(t, p, qos=0)

    def trespass(self) -> None:
        """Publishes on the honest boxes' own topics: every one must be refused."""
        a, b = self.honest
        got = self._honest_event()
        start, end = event_pair(time.time(), MARK[:30], 9)
        if got is not None:
            end = end.model_copy(update={"id": got[0]})
        rq = self.requests[-1] if self.requests else new_id()
        reply = {"v": 1, "id": new_id(), "rq": rq, "st": "done", "r": {"by": MARK}}
        self._publish_many(
            "other boxes' topics",
            [
                (topic(a, "event"), end.encode()),
                (topic(b, "event"), start.encode()),
                (topic(a, f"reply/{rq}"), json.dumps(reply).encode()),
                (topic(b, "status"), b'{"v":1,"id":"x","st":"offline","t":1}'),
                (xfer_topic(a, new_id(), XFER_INIT), b"{}"),
            ],
            True,
        )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# -- the rig ---------------------------------------------------------------------------------
@dataclass
class Args:
    duration: float
    footage: Path
    work: Path
    drain_s: float
    clip_every_s: float


def agent_config(args: Args, port: int, creds: Creds) -> Path:
    """Box A: the soak's box, on the provisioned broker with its device certificate (which
    also signs its uploads)."""
    mqtt = {"host": "127.0.0.1", "port": port, "keepalive_s": 10, **creds.mqtt()}
    box = args.work / "box-a"
    path = args.work / "agent.toml"
    return write_box_config(path, AGENT, box, args.footage, 4 << 20, mqtt, {})


class HostileSoak:
    """Everything of one run; ``run`` returns the figures."""

    def __init__(self, args: Args) -> None:
        self.args = args
        self.clips: list[ClipAsk] = []
        self.pings: list[str] = []  # requests to box B, which never answers
        self.jsonl = args.work / "box-a" / "events.jsonl"

    def run(self) -> dict[str, Any]:
        a = self.args
        shutil.rmtree(a.work, ignore_errors=True)
        (a.work / "box-a").mkdir(parents=True)
        self.t0 = time.monotonic()
        d = provision(a.work)
        conf = (d.files_dir / "roadside.conf").read_text()
        self.broker = ProvisionedBroker(a.work / "broker", conf, d.ports).start()
        box_port, station_port, _ = d.ports
        cfg = parse_central_config(
            {
                "data_dir": str(a.work / "central"),
                "broker": {"host": "127.0.0.1", "port": station_port, **d.creds[CENTRAL].mqtt()},
                "receiver": {
                    "device_ca": str(d.files_dir / "device-ca.pem"),
                    "crl": str(d.files_dir / "crl.pem"),
                },
                "officer": {"clips_dir": str(a.work / "central" / "clips")},
            },
            "hostile",
        )
        self.service = CentralService(cfg)
        station = threading.Thread(
            target=self.service.run, kwargs={"report_s": 3600}, name="central", daemon=True
        )
        station.start()
        if not self.service.ingest.wait_connected(15):
            raise RuntimeError("the central service could not reach the broker")
        self.box = Box(agent_config(a, box_port, d.creds[AGENT]), a.work / "agent.log")
        self.box.start()
        uplink = Uplink(
            UPLINK,
            mqtt_config(box_port, **d.creds[UPLINK].mqtt()),
            UplinkConfig(),
            a.work / "box-b",
            heartbeat=False,
        )
        uplink.start()
        self.steady = SteadyBox(uplink)
        steady = threading.Thread(target=self.steady.run, name="box-b", daemon=True)
        steady.start()
        self.hostile = HostileBox(box_port, d.creds[HOSTILE], [AGENT, UPLINK], self.service.store)
        hostile = threading.Thread(target=self.hostile.run, name="hostile", daemon=True)
        hostile.start()
        try:
            self._officer()
            self.hostile.stop.set()
            hostile.join(60)
            self.steady.stop.set()
            steady.join(10)
            drain_s = self.drain(a.drain_s)
            self.note(f"drained in {drain_s:.1f} s; stopping the agent")
            exit_code = self.box.stop()
            self.note(f"agent stopped (exit {exit_code})")
            self.drain(min(30.0, a.drain_s))
            return self._figures(drain_s, exit_code)
        finally:
            self.hostile.stop.set()
            self.steady.stop.set()
            if self.box.proc is not None:
                self.box.kill()
            self.hostile.close()
            uplink.stop()
            self.service.stop_event.set()
            station.join(30)
            self.broker.stop()

    def _officer(self) -> None:
        """Clip requests to A and pings to B, for the hostile box to forge answers to."""
        end = self.t0 + self.args.duration
        due = self.t0 + WARM_UP_S
        while True:
            time.sleep(max(0.0, min(due, end) - time.monotonic()))
            if time.monotonic() >= end:
                return
            self.box.check()  # an exit we did not cause is counted and restarted
            to = time.time() - 5.0
            params: dict[str, Any] = {"from": to - 6.0, "to": to, "quality": "original"}
            for device, command, p in ((AGENT, "clip", params), (UPLINK, "ping", {})):
                req = BoxRequest(
                    self.service.cfg, self.service.store, device, command, p, "officer@station"
                )
                rq = req.send()
                req.close()
                self.hostile.requests.append(rq)
                if command == "clip":
                    self.clips.append(ClipAsk(rq, (params["from"], params["to"])))
                else:
                    self.pings.append(rq)
            self.note(f"clip asked of {AGENT}, ping sent to {UPLINK}")
            due += self.args.clip_every_s

    def note(self, what: str) -> None:
        say(f"hostile: {time.monotonic() - self.t0:6.1f} s  {what}")

    # -- what the honest boxes sent and what the station holds ------------------------------
    def sent(self) -> tuple[dict[str, dict[str, Any]], set[tuple[str, str]], dict[str, Any]]:
        """(event id -> last message, (id, phase) pairs, count id -> message), both boxes."""
        events: dict[str, dict[str, Any]] = {}
        phases: set[tuple[str, str]] = set()
        counts: dict[str, dict[str, Any]] = {}
        with open(self.jsonl, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if msg.get("type") == "event":
                    events[msg["id"]] = msg
                    phases.add((msg["id"], msg["k"]))
                elif msg.get("type") == "count":
                    counts[msg["id"]] = msg
        with self.steady._lock:
            for e in self.steady.events.values():
                events[e.id] = {"dev": UPLINK, **json.loads(e.encode())}
            phases |= self.steady.phases
            for c in self.steady.counts.values():
                counts[c.id] = {"dev": UPLINK, **json.loads(c.encode())}
        return events, phases, counts

    def _rows(self, table: sa.Table) -> list[dict[str, Any]]:
        with self.service.store.engine.connect() as conn:
            return [dict(r) for r in conn.execute(sa.select(table)).mappings()]

    def settled(self) -> bool:
        _events, phases, counts = self.sent()
        stored = {r["id"]: r["phase"] for r in self._rows(T.events)}
        stored_counts = {r["id"] for r in self._rows(T.counts)}
        for ask in self.clips:
            if not ask.verified and not ask.why:
                check_clip(self.service.store.engine, ask)
        return (
            not missing(phases, stored)
            and set(counts) <= stored_counts
            and all(c.verified or c.why for c in self.clips)
        )

    def drain(self, seconds: float) -> float:
        start = time.monotonic()
        while time.monotonic() - start < seconds and not self.settled():
            time.sleep(0.5)
        return time.monotonic() - start

    def _figures(self, drain_s: float, exit_code: int) -> dict[str, Any]:
        events, phases, counts = self.sent()
        rows = self._rows(T.events)
        stored = {r["id"]: r["phase"] for r in rows}
        lost = missing(phases, stored) | {
            ("count", i) for i in set(counts) - {r["id"] for r in self._rows(T.counts)}
        }
        effects: Counter[str] = Counter()
        for r in rows:
            sent = events.get(r["id"])
            if sent is None:
                effects["event rows of an honest box it never sent"] += r["device"] != HOSTILE
            elif (r["device"], r["phase"], r["cls"], r["track"], r["t0"], r["t1"]) != (
                sent["dev"],
                sent["k"],
                sent["c"],
                sent["tr"],
                sent["t0"],
                sent["t1"],
            ):
                effects["honest event rows changed"] += 1
        for r in self._rows(T.counts):
            sent = counts.get(r["id"])
            if sent is None:
                effects["count rows of an honest box it never sent"] += r["device"] != HOSTILE
            elif (r["device"], r["n"]) != (sent["dev"], sent["n"]):
                effects["honest count rows changed"] += 1
        audit = {r["id"]: r for r in self._rows(T.audit)}
        for rq in self.pings:
            r = audit[rq]
            if (r["device"], r["state"], r["result"], r["finished"]) != (
                UPLINK,
                "sent",
                None,
                None,
            ):
                effects["audit rows of B's requests changed"] += 1
        for ask in self.clips:
            r = audit[ask.request_id]
            clip = self.service.store.clips.for_request(ask.request_id)
            if r["device"] != AGENT or MARK in json.dumps(r["result"]) + str(r["detail"]):
                effects["audit rows of A's requests changed"] += 1
            if clip is not None and (clip["device"] != AGENT or MARK in str(clip["requester"])):
                effects["clip records of A's requests changed"] += 1
        honest_rq = set(self.pings) | {c.request_id for c in self.clips}
        for c in self._rows(T.clips):
            if c["request_id"] in honest_rq and c["device"] != audit[c["request_id"]]["device"]:
                effects["clip records for honest requests from another box"] += 1
        t = self.hostile.tally
        effects["messages of another box it received"] += t.stolen
        effects["refused things the broker let through"] += sum(t.let_through.values())
        by_box = Counter({r["device"]: r["total"] for r in self._rows(T.reject_counts)})
        dup = 0
        with self.service.store.engine.connect() as conn:
            for table in (T.events, T.counts, T.health):
                dup += conn.execute(
                    sa.select(sa.func.count()).select_from(
                        sa.select(table.c.id)
                        .group_by(table.c.id)
                        .having(sa.func.count() > 1)
                        .subquery()
                    )
                ).scalar_one()
        policy = self.service.receiver.receiver.landing.policy if self.service.receiver else None
        with open(self.args.work / "agent.log", encoding="utf-8", errors="replace") as fh:
            tracebacks = sum("Traceback" in line for line in fh)
        if lost:
            say(f"[red]hostile: lost {sorted(lost)[:10]}")
        for what, n in effects.items():
            if n:
                say(f"[red]hostile: {what}: {n}")
        return {
            "honest": len(phases) + len(counts),
            "a_events": len({i for i, _ in phases if events[i]["dev"] == AGENT}),
            "b_events": len(self.steady.events),
            "counts": len(counts),
            "lost": len(lost),
            "dup": dup,
            "effects": effects,
            "hostile_effects": sum(effects.values()),
            "tally": t,
            "tried": sum(t.tried.values()),
            "refused": sum(t.refused.values()),
            "rejects": by_box.get(HOSTILE, 0),
            "honest_rejects": sum(n for box, n in by_box.items() if box != HOSTILE),
            "uploads_refused": dict(policy.refused) if policy else {},
            "ingest_rejected": self.service.ingest.stats.rejected,
            "clips": len(self.clips),
            "clips_ok": sum(c.verified for c in self.clips),
            "pings": len(self.pings),
            "crashes": len(self.box.crashes) + (exit_code != 0),
            "tracebacks": tracebacks,
            "drain_s": drain_s,
            "elapsed": time.monotonic() - self.t0,
        }


def missing(sent: set[tuple[str, str]], stored: dict[str, str]) -> set[tuple[str, str]]:
    """Sent event messages the store does not reflect: a start needs its row, an end needs
    the row ended."""
    return {(i, k) for i, k in sent if stored.get(i) is None or (k == "e" and stored[i] != "e")}


def report(f: dict[str, Any], args: Args) -> str:
    """The table on stdout; returns the RESULT line."""
    t: Tally = f["tally"]
    table = Table(title=f"Hostile-box soak: {args.duration:.0f} s, {args.footage.name}")
    table.add_column("what")
    table.add_column("figure", justify="right")
    rows: list[tuple[str, str]] = [
        (
            "honest messages sent (event messages + counts)",
            f"{f['honest']} (A {f['a_events']} events, B {f['b_events']} events, "
            f"{f['counts']} counts)",
        ),
        ("[bold]lost[/] (sent by an honest box, not in the store)", str(f["lost"])),
        ("[bold]stored twice[/] (events, counts, health rows per id)", str(f["dup"])),
        (
            "[bold]hostile effects[/] (honest rows changed, stolen, let through)",
            str(f["hostile_effects"]),
        ),
        *((f"  {what}", str(n)) for what, n in sorted(f["effects"].items()) if n),
        ("clip requests to A verified (sha256, decoded)", f"{f['clips_ok']} / {f['clips']}"),
        ("pings to B (never answered) left untouched", f"{f['pings']}"),
        ("hostile attempts, all kinds", str(f["tried"])),
        *(
            (
                f"  {what}",
                f"{n}"
                + (f" ({t.refused[what]} refused by the broker)" if what in t.refused else ""),
            )
            for what, n in sorted(t.tried.items())
        ),
        ("8 MiB payloads that closed the hostile connection", str(t.closed)),
        (
            "rejects recorded for the hostile box / for honest boxes",
            f"{f['rejects']} / {f['honest_rejects']}",
        ),
        ("uploads refused by the receiver", json.dumps(f["uploads_refused"])),
        (
            "publishes or subscriptions without an answer (the 8 MiB connection takes over "
            "its own session)",
            str(t.unanswered),
        ),
        ("agent crashes / tracebacks", f"{f['crashes']} / {f['tracebacks']}"),
        ("drain after the attack", f"{f['drain_s']:.1f} s"),
        ("wall time", f"{f['elapsed']:.0f} s"),
    ]
    for what, figure in rows:
        table.add_row(what, figure)
    Console(width=130).print(table)
    return (
        f"RESULT lost={f['lost']} dup={f['dup']} hostile_effects={f['hostile_effects']} "
        f"honest={f['honest']} tried={f['tried']} rejects={f['rejects']} "
        f"refused={f['refused']} crashes={f['crashes']}"
    )


def parse_args(argv: list[str] | None = None) -> Args:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=300.0, help="seconds of attack (≥ 20)")
    p.add_argument("--footage", default="motorway_overpass", help="a file in footage/ (no .mp4)")
    p.add_argument("--work", type=Path, default=ROOT / "var" / "hostile")
    p.add_argument("--drain", type=float, default=45.0, help="longest drain, s")
    p.add_argument("--clip-every", type=float, default=20.0, help="s between clip requests")
    ns = p.parse_args(argv)
    if ns.duration < 20:
        p.error("--duration: at least 20 s")
    return Args(
        duration=ns.duration,
        footage=footage_dir() / f"{ns.footage}.mp4",
        work=ns.work.resolve(),
        drain_s=ns.drain,
        clip_every_s=ns.clip_every,
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    # every refused upload is one warning there; the table counts them
    logging.getLogger("roadside.transfer.receiver").setLevel(logging.ERROR)
    args = parse_args(argv)
    figures = HostileSoak(args).run()
    print(report(figures, args), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
