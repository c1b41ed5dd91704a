"""Clip upload over a bad cellular link: chunked resumable transfer vs one MQTT message.

One run, one command (``python bench/transfer.py``): a private mosquitto; the box reaches it
through the bad-link proxy (default 256 kbit/s each way, 300 ms added each way, so 600 ms
round trip, the connection cut every 20 s and refused for 2 s after each cut); the station's
receiver sits beside the broker. The file is real footage.

1. Chunked: the agent's uplink and transfer sender (defaults: 16 KiB chunks, a window of 4)
   send the file; the clock runs from ``send_file`` to the station's verified file.
   Goodput = file bytes / that time. Link capacity = the link rate x the time the link was up
   (accepting connections) during the transfer; also shown against rate x wall time.
2. Baseline: the same file as one QoS 1 MQTT message from a plain paho client on the same
   link, re-published from the start after every cut, for as long as the chunked transfer
   took plus ``--baseline-extra`` seconds; did it ever arrive?

Last line: ``RESULT goodput_ratio=<x> baseline_done=<0|1>``.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # broker.py: a private mosquitto

from broker import Mosquitto  # noqa: E402

from roadside.agent.transfer.sender import TransferSender  # noqa: E402
from roadside.agent.transfer.store import TransferRecord  # noqa: E402
from roadside.agent.uplink import Uplink  # noqa: E402
from roadside.backoff import Backoff  # noqa: E402
from roadside.badlink import BadLink, LinkShape  # noqa: E402
from roadside.central.config import BrokerConfig  # noqa: E402
from roadside.central.receiver import clip_receiver  # noqa: E402
from roadside.central.receiver_service import ReceiverService  # noqa: E402
from roadside.config.agent import MqttConfig, TransferConfig, UplinkConfig  # noqa: E402

SHARED = ROOT.parent / "shared"
DEVICE = "bench-box"


def link_shape(args: argparse.Namespace) -> LinkShape:
    return LinkShape(
        latency_s=args.latency_ms / 1000,
        up_kbps=args.kbps,
        down_kbps=args.kbps,
        cut_every_s=args.cut_every,
        down_for_s=args.down,
    )


def chunked(args: argparse.Namespace, work: Path, broker: Mosquitto, data: Path) -> dict:
    rx = clip_receiver(work / "station" / "incoming", work / "station" / "files")
    svc = ReceiverService(
        BrokerConfig(host="127.0.0.1", port=broker.port), rx, client_id="bench-receiver"
    ).start()
    svc.connected.wait(10)
    with BadLink(broker.port, shape=link_shape(args)) as link:
        mqtt_cfg = MqttConfig(host="127.0.0.1", port=link.port, reconnect_min_s=args.reconnect_min)
        uplink = Uplink(DEVICE, mqtt_cfg, UplinkConfig(), work / "box", heartbeat=False)
        sender = TransferSender(
            uplink, work / "box", TransferConfig(chunk_kib=args.chunk_kib, window=args.window)
        )
        ended: list[TransferRecord] = []
        done = threading.Event()
        sender.on_finished.append(lambda rec: (ended.append(rec), done.set()))
        sender.start()
        uplink.start()
        uplink.client.wait_connected(30)
        copy = sender.outgoing / data.name
        copy.write_bytes(data.read_bytes())
        up0, cuts0, bytes0 = link.up_seconds(), link.stats.cuts, link.stats.bytes_up
        t0 = time.monotonic()
        rec = sender.send_file(copy, "clip", data.name, owned=False)
        done.wait(args.timeout)
        took = time.monotonic() - t0
        up_s = link.up_seconds() - up0
        cuts = link.stats.cuts - cuts0
        wire = link.stats.bytes_up - bytes0
        stats = sender.stats
        sender.stop()
        uplink.stop()
    state = rx.state(rec.xid) or {}
    svc.stop()
    rx.close()
    ok = (
        bool(ended)
        and ended[0].state == "done"
        and state.get("path")
        and hashlib.sha256(Path(state["path"]).read_bytes()).hexdigest() == rec.sha256
    )
    rate = args.kbps * 1000 / 8
    size = data.stat().st_size
    return {
        "ok": ok,
        "took": took,
        "up_s": up_s,
        "cuts": cuts,
        "wire": wire,
        "goodput_kbps": size * 8 / took / 1000,
        "ratio_up": size / (rate * up_s) if ok else 0.0,
        "ratio_wall": size / (rate * took) if ok else 0.0,
        "resent": stats.chunks_resent,
        "sent": stats.chunks_sent,
        "hellos": stats.hellos,
        "dup": state.get("dup_bytes", 0),
    }


def single_message(
    args: argparse.Namespace, broker: Mosquitto, data: Path, budget_s: float
) -> dict:
    """Publish the file as one QoS 1 message, again from the start after every cut."""
    payload = data.read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    arrived = threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-sub")
    sub.on_message = lambda _c, _u, m: (
        arrived.set() if hashlib.sha256(m.payload).hexdigest() == digest else None
    )
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe(f"bench/{DEVICE}/file", qos=1)
    sub.loop_start()
    connected, lost, acked = threading.Event(), threading.Event(), threading.Event()
    attempts = best = 0
    # Waits between attempts as the box's link has them (reset by every connection).
    backoff = Backoff(args.reconnect_min, MqttConfig.model_fields["reconnect_max_s"].default)
    with BadLink(broker.port, shape=link_shape(args)) as link:
        pub = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="bench-pub", reconnect_on_failure=False
        )
        pub.on_connect = lambda *_a: connected.set()
        pub.on_disconnect = lambda *_a: lost.set()
        pub.on_publish = lambda *_a: acked.set()
        t0 = time.monotonic()
        while time.monotonic() - t0 < budget_s and not arrived.is_set():
            connected.clear()
            lost.clear()
            try:
                pub.connect("127.0.0.1", link.port, keepalive=600)  # no keepalive trips
                pub.loop_start()
                ok = connected.wait(10) and not lost.is_set()
            except OSError:
                ok = False
            if ok:
                backoff.reset()
                attempts += 1
                start_bytes = link.stats.bytes_up
                pub.publish(f"bench/{DEVICE}/file", payload, qos=1)
                while not (acked.is_set() or lost.is_set()) and time.monotonic() - t0 < budget_s:
                    lost.wait(0.1)
                best = max(best, link.stats.bytes_up - start_bytes)
            pub.loop_stop()
            pub.disconnect()
            if not arrived.wait(2.0 if acked.is_set() else 0.0):
                time.sleep(backoff.next())
        took = time.monotonic() - t0
    sub.loop_stop()
    sub.disconnect()
    return {"done": arrived.is_set(), "attempts": attempts, "best": best, "took": took}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--file", type=Path, default=SHARED / "footage" / "motorway_overpass.mp4")
    ap.add_argument("--kbps", type=float, default=256.0)
    ap.add_argument("--latency-ms", type=float, default=300.0, help="added each way")
    ap.add_argument("--cut-every", type=float, default=20.0)
    ap.add_argument("--down", type=float, default=2.0, help="seconds refused after a cut")
    ap.add_argument("--chunk-kib", type=int, default=16)
    ap.add_argument("--window", type=int, default=4)
    ap.add_argument(
        "--reconnect-min", type=float, default=1.0, help="the box's mqtt.reconnect_min_s"
    )
    ap.add_argument("--timeout", type=float, default=900.0)
    ap.add_argument("--baseline-extra", type=float, default=30.0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    size = args.file.stat().st_size
    print(
        f"link: {args.kbps:g} kbit/s each way, {args.latency_ms:g} ms added each way, "
        f"cut every {args.cut_every:g} s, refused {args.down:g} s after each cut"
    )
    print(
        f"file: {args.file.name}, {size} bytes; ideal time at the link rate "
        f"{size * 8 / args.kbps / 1000:.1f} s"
    )
    with tempfile.TemporaryDirectory(prefix="bench-transfer-") as tmp:
        work = Path(tmp)
        with Mosquitto(work / "broker", extra="message_size_limit 0") as broker:
            c = chunked(args, work, broker, args.file)
            print(
                f"chunked: {'arrived, sha256 ok' if c['ok'] else 'FAILED'} in {c['took']:.1f} s "
                f"across {c['cuts']} cuts; goodput {c['goodput_kbps']:.1f} kbit/s; "
                f"vs capacity while up ({c['up_s']:.1f} s) {c['ratio_up']:.3f}, "
                f"vs rate x wall time {c['ratio_wall']:.3f}"
            )
            print(
                f"  chunks sent {c['sent']} (again: {c['resent']}), inits {c['hellos']}, "
                f"bytes on the wire up {c['wire']} ({c['wire'] / size:.3f} x the file), "
                f"duplicates at the station {c['dup']} bytes"
            )
            b = single_message(args, broker, args.file, c["took"] + args.baseline_extra)
            print(
                f"one message: {'arrived' if b['done'] else 'never arrived'} after "
                f"{b['attempts']} attempts in {b['took']:.1f} s; the longest attempt got "
                f"{b['best']} of {size} bytes through before its cut"
            )
    print(f"RESULT goodput_ratio={c['ratio_up']:.3f} baseline_done={int(b['done'])}")


if __name__ == "__main__":
    main()
