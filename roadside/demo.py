"""``make demo``: the whole system on this machine, in one command.

1. a private mosquitto on a free port (``roadside.testing.broker``);
2. the central service (ingest worker and clip receiver) on a SQLite store under var/demo;
3. a box: ``roadside agent run`` on the real footage, events over MQTT through its outbox;
4. the officer's view: the boxes and the events, read from the store;
5. an officer's clip request around the longest sighting: the box cuts it from its recording
   ring and uploads it in chunks; the file is written under demo-out/, checked and decoded.

The model and the footage are fetched by their manifests first (``make demo`` does it).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from roadside import assets
from roadside.central import views
from roadside.central.config import parse_central_config
from roadside.central.officer import BoxRequest, deliver, wait_for_file
from roadside.central.service import CentralService
from roadside.central.store import queries
from roadside.evidence import Trust, read_sidecar, sidecar_path, verify_evidence
from roadside.testing.broker import LocalBroker
from roadside.testing.pki import DistrictKeys
from roadside.wire.commands import ReplyMsg, ReplyState

DEVICE = "demo-junction"
WORK = Path("var/demo")
OUT = Path("demo-out")
EVENTS_WANTED = 8
WAIT_EVENTS_S = 90.0
RUN_AT_LEAST_S = 20.0
CLIP_FIRST_ANSWER_S = 20.0
CLIP_DONE_S = 180.0

say = Console(stderr=True).print


def _agent_config(broker_port: int, store: Path, footage: Path, keys: DistrictKeys) -> Path:
    doc: dict[str, Any] = {
        "device": DEVICE,
        "data_dir": str(WORK / "box"),
        "source": {"kind": "file", "path": str(footage), "pace": "native", "loop": True},
        "detector": {"models_dir": str(store)},
        "events": {"sinks": ["mqtt"], "count_interval_s": 10.0},
        "mqtt": {"host": "127.0.0.1", "port": broker_port},
        "uplink": {"health_period_s": 5.0},
        "recording": {"mode": "continuous", "budget_bytes": "500MB"},
        "transfer": keys.transfer_section(DEVICE),  # the box signs its clips
    }
    lines = [f"device = {json.dumps(doc['device'])}", f"data_dir = {json.dumps(doc['data_dir'])}"]
    for section in ("source", "detector", "events", "mqtt", "uplink", "recording", "transfer"):
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in doc[section].items()]
    path = WORK / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _wait_for_events(service: CentralService, box: subprocess.Popen) -> list[dict]:
    """Events as stored, once ``EVENTS_WANTED`` have ended and the box has run a while
    (its first recording segments are closed by then)."""
    started = time.monotonic()
    deadline = started + WAIT_EVENTS_S
    while time.monotonic() < deadline and box.poll() is None:
        with service.store.connect() as conn:
            rows = queries.events(conn, queries.EventFilter(device=DEVICE))
        ended = sum(r["phase"] == "e" for r in rows)
        if ended >= EVENTS_WANTED and time.monotonic() - started >= RUN_AT_LEAST_S:
            return rows
        time.sleep(0.5)
    with service.store.connect() as conn:
        return queries.events(conn, queries.EventFilter(device=DEVICE))


def _ask_for_clip(service: CentralService, event: dict, trust: tuple[Path, Path]) -> None:
    cfg = service.cfg
    params = {"from": event["t0"] - 3.0, "to": event["t0"] + 7.0, "quality": "original"}
    req = BoxRequest(cfg, service.store, DEVICE, "clip", params, requester="demo@station")
    request_id = req.send()
    say(
        f"demo: clip request {request_id}: {DEVICE}, 10 s around the longest {event['cls']} "
        f"sighting ({event['id']})"
    )
    started = time.monotonic()
    heard = False
    try:
        while req.final is None:
            update = req.next_update(timeout=0.5)
            waited = time.monotonic() - started
            if update is not None and update.kind == "reply":
                heard = True
                msg = update.msg
                assert isinstance(msg, ReplyMsg)
                done = f" {msg.progress:.0%}" if msg.progress is not None else ""
                say(f"  box: {msg.detail or msg.state}{done}")
            if (not heard and waited > CLIP_FIRST_ANSWER_S) or waited > CLIP_DONE_S:
                break
    finally:
        req.close()
    if req.final is None:
        req.give_up("no answer in the demo's time")
        say(
            f"demo: {DEVICE} did not answer the clip request in time (see {WORK}/agent.log); "
            "the request stays in the audit log"
        )
        return
    if req.final.state == ReplyState.ERROR:
        say(f"demo: {DEVICE} answered: {req.final.detail} ({req.final.code})")
        return
    row = wait_for_file(service.store, request_id, 30.0)
    if not row or row["state"] != "done":
        say("demo: the box says done but the station holds no file")
        return
    OUT.mkdir(exist_ok=True)
    path, digest = deliver(row, OUT)
    import av

    with av.open(str(path)) as container:
        frames = sum(1 for _ in container.decode(video=0))
    say(f"demo: clip written: [bold]{path}[/] sha256 {digest} ({frames} frames decoded)")
    evidence = read_sidecar(sidecar_path(path).read_bytes())
    signed = verify_evidence(evidence, Trust.load(*trust), file=path).manifest
    say(
        f"demo: signed by {signed.device} for request {signed.request_id}, its certificate from "
        f"the demo's CA and not revoked: [bold]roadside clip verify {path} --ca {trust[0]} "
        f"--crl {trust[1]}[/] checks it again anywhere"
    )


def main() -> int:
    store = assets.default_store()
    footage = store / assets.manifest("motorway_overpass", "footage").file("video").file
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    keys = DistrictKeys(WORK / "keys")  # the demo's own CA and the box's device key
    with LocalBroker(WORK / "broker") as broker:
        say(f"demo: mosquitto on 127.0.0.1:{broker.port}")
        cfg = parse_central_config(
            {
                "data_dir": str(WORK / "central"),
                "broker": {"port": broker.port},
                "officer": {"clips_dir": str(WORK / "central" / "clips")},
                "receiver": keys.receiver_section(),
            },
            "demo",
        )
        service = CentralService(cfg)
        station = threading.Thread(
            target=service.run, kwargs={"report_s": 3600}, name="central", daemon=True
        )
        station.start()
        if not service.ingest.wait_connected(15):
            say("demo: the central service could not reach the broker")
            return 1
        say(f"demo: central service storing into {service.store.safe_url}")
        agent_log = WORK / "agent.log"
        box = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "roadside"),
                "agent",
                "run",
                "--config",
                str(_agent_config(broker.port, store, footage, keys)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(agent_log, "wb"),  # noqa: SIM115
        )
        say(f"demo: box {DEVICE} on {footage.name} (log: {agent_log}); waiting for events")
        try:
            rows = _wait_for_events(service, box)
            with service.store.connect() as conn:
                devices = queries.devices(conn)
            out = views.out_console()
            out.print(views.devices_table(devices, cfg.zone))
            out.print(views.events_table(rows, cfg.zone, 1000))
            ended = [r for r in rows if r["phase"] == "e"]
            if not ended:
                say(f"demo: no events arrived; see {agent_log}")
                return 1
            _ask_for_clip(
                service, max(ended, key=lambda r: r["t1"] - r["t0"]), (keys.device_ca, keys.crl)
            )
        finally:
            box.send_signal(signal.SIGTERM)
            box.wait(30)
            service.stop_event.set()
            station.join(30)
        with service.store.connect() as conn:
            audit = queries.audit(conn, limit=5)
        views.out_console().print(views.audit_table(audit, cfg.zone))
    return 0


if __name__ == "__main__":
    sys.exit(main())
