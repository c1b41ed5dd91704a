"""A release to a fleet over bad links: the station's sender, each box's update client.

One command (``python bench/update.py``, about 20 minutes with the defaults): a private
mosquitto; ``--boxes`` boxes (default 20), each reaching it through a bad-link proxy of its
own (256 kbit/s each way, 300 ms added each way, cut every 20 s and refused 2 s after each
cut). One of them is a full agent (``roadside agent run`` on real footage, ``--no-agent``
leaves it out); the others are a box's update client alone (uplink and ``UpdateService``).
The station sends a signed synthetic release of ``--mb`` MB (default 30) to all at once with
``ReleaseSender`` (16 KiB chunks, a window of 4). Each box downloads, verifies the signature
and every sha256, installs the release into a new slot of its own root and switches; an
update client is then started again as the new release and proves itself healthy, the full
agent exits to be restarted by systemd (the bench stops there for it: its slot is not a real
agent).

Per box: goodput ratio = release bytes / (link rate x the time its link was up during the
download), and total time; last line
``RESULT update_goodput=<worst box> rolled_back=<n> failed=<n>``.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import tomli_w

from roadside.agent.update.service import UpdateService
from roadside.agent.update.slots import Slots
from roadside.agent.uplink import Uplink
from roadside.central.config import BrokerConfig
from roadside.central.fleet.sender import Delivery, ReleaseSender
from roadside.config.agent import MqttConfig, UpdateConfig, UplinkConfig
from roadside.testing.badlink import BadLink, LinkShape
from roadside.testing.broker import LocalBroker
from roadside.testing.releases import fake_wheel, release_key, synthetic_release
from roadside.testing.shared import footage_dir, models_dir
from roadside.wire.update import UpdateState

BASE = "0.9.0"
RELEASE = "1.0.0"


@dataclass
class Client:
    """One box's update client, started again as the new release after its switch."""

    name: str
    work: Path
    port: int
    cfg: UpdateConfig
    states: list[UpdateState] = field(default_factory=list)
    healthy_at: float | None = None
    uplink: Uplink | None = None
    service: UpdateService | None = None

    def start(self, running: str) -> None:
        mqtt = MqttConfig(host="127.0.0.1", port=self.port, reconnect_min_s=1.0)
        self.uplink = Uplink(self.name, mqtt, UplinkConfig(), self.work / "data", heartbeat=False)
        self.service = UpdateService(
            self.cfg,
            self.uplink,
            self.work / "data",
            lambda: (True, "update client"),
            self._restart,
            running=running,
        )
        self.service.start()
        self.uplink.start()

    def stop(self) -> None:
        if self.service is not None and self.uplink is not None:
            self.states += [r.state for r in self.service.outcomes]
            if UpdateState.HEALTHY in self.states and self.healthy_at is None:
                self.healthy_at = time.monotonic()
            self.service.stop()
            self.uplink.stop()
            self.service = self.uplink = None

    def _restart(self, _why: str) -> None:
        # As systemd would: the process ends, the new release starts (a thread of its own,
        # since this runs on the client's install thread).
        threading.Thread(target=self._restarted, daemon=True).start()

    def _restarted(self) -> None:
        self.stop()
        self.start(RELEASE)

    def reports(self) -> list[UpdateState]:
        now = [r.state for r in self.service.outcomes] if self.service else []
        if UpdateState.HEALTHY in now and self.healthy_at is None:
            self.healthy_at = time.monotonic()
        return self.states + now


def base_slot(root: Path, work: Path) -> None:
    wheels = work / "base-wheels"
    if not wheels.exists():
        fake_wheel(wheels, BASE, "def main():\n    print('base')\n")
    slots = Slots(root)
    slots.install(BASE, wheels)
    slots.switch(BASE)
    slots.mark_stable(BASE)


def full_agent(work: Path, port: int, cfg: UpdateConfig) -> subprocess.Popen:
    doc = {
        "device": "box-00",
        "data_dir": str(work / "data"),
        "source": {
            "kind": "file",
            "path": str(footage_dir() / "motorway_overpass.mp4"),
            "pace": "native",
            "loop": True,
        },
        "detector": {"models_dir": str(models_dir())},
        "events": {"sinks": ["mqtt"]},
        "mqtt": {"host": "127.0.0.1", "port": port, "reconnect_min_s": 1.0},
        "update": cfg.model_dump(),
    }
    config = work / "agent.toml"
    config.write_text(tomli_w.dumps(doc))
    log = open(work / "agent.log", "wb")  # noqa: SIM115 - the agent's stderr, kept open
    roadside = Path(sys.executable).with_name("roadside")
    return subprocess.Popen(
        [str(roadside), "agent", "run", "--config", str(config)], stdout=log, stderr=log
    )


def run(args: argparse.Namespace, work: Path) -> dict:
    key, public = release_key(work / "key")
    release = synthetic_release(work, key, RELEASE, filler=int(args.mb * 1_000_000))
    size = release.stat().st_size
    shape = LinkShape(
        latency_s=args.latency_ms / 1000,
        up_kbps=args.kbps,
        down_kbps=args.kbps,
        cut_every_s=args.cut_every,
        down_for_s=args.down,
    )
    names = [f"box-{i:02d}" for i in range(args.boxes)]
    with LocalBroker(work / "broker", extra="message_size_limit 0") as broker:
        links = {n: BadLink(broker.port, shape=shape).start() for n in names}
        clients: dict[str, Client] = {}
        agent: subprocess.Popen | None = None
        for i, name in enumerate(names):
            box = work / name
            root = box / "root"
            base_slot(root, work)
            cfg = UpdateConfig(release_key=str(public), root=str(root), health_s=600, confirm_s=2)
            if i == 0 and args.agent:
                agent = full_agent(box, links[name].port, cfg)
            else:
                clients[name] = Client(name, box, links[name].port, cfg)
                clients[name].start(BASE)
        time.sleep(args.settle)
        sender = ReleaseSender(BrokerConfig(host="127.0.0.1", port=broker.port)).start()
        sender.connected.wait(10)
        ended: dict[str, Delivery] = {}
        up0 = {n: links[n].up_seconds() for n in names}
        cuts0 = {n: links[n].stats.cuts for n in names}
        t0 = time.monotonic()
        downloaded: dict[str, float] = {}
        up_s: dict[str, float] = {}
        cuts: dict[str, int] = {}

        def on_finished(d: Delivery) -> None:
            ended[d.device] = d
            downloaded[d.device] = time.monotonic() - t0
            up_s[d.device] = links[d.device].up_seconds() - up0[d.device]
            cuts[d.device] = links[d.device].stats.cuts - cuts0[d.device]

        sender.on_finished.append(on_finished)
        for name in names:
            sender.send(name, release, RELEASE)
        deadline = t0 + args.timeout

        def settled() -> bool:
            if agent is not None and agent.poll() is None:
                return False  # the full agent ends by exiting into its new release
            return all(
                n in ended
                and (c.healthy_at or UpdateState.ROLLED_BACK in c.reports() or not ended[n].done)
                for n, c in clients.items()
            )

        while not settled() and time.monotonic() < deadline:
            time.sleep(1.0)
        total = time.monotonic() - t0
        sender.stop()
        for c in clients.values():
            c.stop()
        agent_exit = None
        if agent is not None:
            if agent.poll() is None:
                agent.terminate()
            agent_exit = agent.wait(60)
        for link in links.values():
            link.stop()
    rate = args.kbps * 1000 / 8
    per_box = {}
    for name in names:
        d = ended.get(name)
        ok = d is not None and d.done
        per_box[name] = {
            "ok": ok,
            "took": downloaded.get(name, float("nan")),
            "ratio": size / (rate * up_s[name]) if ok and up_s.get(name) else 0.0,
            "resent": d.chunks_resent if d else 0,
            "cuts": cuts.get(name, 0),
            "state": f"agent restarted into it (exit {agent_exit})"
            if name not in clients
            else (
                "healthy"
                if clients[name].healthy_at
                else ",".join(s.value for s in clients[name].reports()) or "no report"
            ),
        }
    rolled = sum(UpdateState.ROLLED_BACK in c.reports() for c in clients.values())
    failed = sum(not b["ok"] for b in per_box.values())
    failed += sum(not c.healthy_at for n, c in clients.items() if per_box[n]["ok"]) - rolled
    failed += int(agent is not None and agent_exit != 75)
    return {"size": size, "total": total, "boxes": per_box, "rolled": rolled, "failed": failed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boxes", type=int, default=20)
    ap.add_argument("--mb", type=float, default=30.0, help="release size, MB")
    ap.add_argument("--kbps", type=float, default=256.0)
    ap.add_argument("--latency-ms", type=float, default=300.0, help="added each way")
    ap.add_argument("--cut-every", type=float, default=20.0)
    ap.add_argument("--down", type=float, default=2.0, help="seconds refused after a cut")
    ap.add_argument("--no-agent", dest="agent", action="store_false", help="update clients only")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds for the boxes to connect")
    ap.add_argument("--timeout", type=float, default=3600.0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    print(
        f"{args.boxes} boxes, each: {args.kbps:g} kbit/s each way, {args.latency_ms:g} ms added "
        f"each way, cut every {args.cut_every:g} s, refused {args.down:g} s after each cut"
    )
    with tempfile.TemporaryDirectory(prefix="bench-update-") as tmp:
        r = run(args, Path(tmp))
    ideal = r["size"] * 8 / args.kbps / 1000
    print(f"release: {r['size']} bytes; at the link rate {ideal:.0f} s per box")
    for name, b in r["boxes"].items():
        print(
            f"  {name}: {'done' if b['ok'] else 'FAILED'} in {b['took']:.0f} s across "
            f"{b['cuts']} cuts, goodput ratio {b['ratio']:.3f}, chunks sent again "
            f"{b['resent']}; {b['state']}"
        )
    ratios = [b["ratio"] for b in r["boxes"].values()]
    print(
        f"total {r['total']:.0f} s; goodput ratio worst {min(ratios):.3f}, best {max(ratios):.3f}"
    )
    print(f"RESULT update_goodput={min(ratios):.3f} rolled_back={r['rolled']} failed={r['failed']}")


if __name__ == "__main__":
    main()
