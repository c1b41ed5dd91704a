"""The console in a real browser (Debian's chromium driven by Playwright) against the whole
system: mosquitto, `roadside central run` serving the console, and a real agent recording
the motorway footage. An investigator logs in, sees the box online, finds a car event, asks
for its clip, watches the progress, plays the clip, watches the box live, and finds their
name in the audit log.

Screenshots of each page go to docs/console/ when $ROADSIDE_SCREENSHOTS is set (the run
that refreshes docs/console.md), else to the test's temporary folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
import tomli_w

from roadside.central.config import load_central_config
from roadside.central.store import Store
from roadside.central.store import tables as T
from roadside.testing.pki import DistrictKeys
from roadside.testing.ports import free_port
from roadside.testing.shared import models_dir
from roadside.testing.waiting import wait_until

pytestmark = pytest.mark.slow

ROADSIDE = str(Path(sys.executable).parent / "roadside")
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOCS_SHOTS = Path(__file__).resolve().parents[1] / "docs" / "console"
PASSWORD = "investigator-password-1"


def _shots_dir(tmp_path: Path) -> Path:
    target = DOCS_SHOTS if os.environ.get("ROADSIDE_SCREENSHOTS") else tmp_path / "shots"
    target.mkdir(parents=True, exist_ok=True)
    return target


def _station(tmp_path: Path, broker_port: int, web_port: int, keys: DistrictKeys) -> Path:
    config = tmp_path / "central.toml"
    config.write_text(
        tomli_w.dumps(
            {
                "data_dir": str(tmp_path / "central"),
                "broker": {"port": broker_port},
                "officer": {
                    "clips_dir": str(tmp_path / "clips"),
                    "default_before_s": 2.0,
                    "default_after_s": 1.0,
                },
                "web": {
                    "enabled": True,
                    "host": "127.0.0.1",
                    "port": web_port,
                    "live_interval_s": 2.0,
                    "live_max_s": 60.0,
                },
                "receiver": keys.receiver_section(),
            }
        )
    )
    return config


def _agent(tmp_path: Path, broker_port: int, footage: Path, keys: DistrictKeys) -> Path:
    agent_toml = tmp_path / "agent.toml"
    agent_toml.write_text(
        tomli_w.dumps(
            {
                "device": "deo-gio",
                "data_dir": str(tmp_path / "box"),
                "source": {
                    "kind": "file",
                    "path": str(footage / "motorway_overpass.mp4"),
                    "pace": "native",
                    "loop": True,
                },
                "detector": {"models_dir": str(models_dir())},
                "events": {"sinks": ["mqtt"], "count_interval_s": 10.0},
                "mqtt": {"host": "127.0.0.1", "port": broker_port},
                "uplink": {"health_period_s": 5.0},
                "recording": {
                    "mode": "continuous",
                    "segment_s": 4.0,
                    "keyframe_s": 1.0,
                    "budget_bytes": "200MB",
                    "encoder": {"preset": "ultrafast"},
                },
                "transfer": keys.transfer_section("deo-gio"),
            }
        )
    )
    return agent_toml


def _browser(playwright):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def test_an_investigator_gets_a_clip_in_the_browser(
    broker, tmp_path: Path, footage: Path, district_keys: DistrictKeys
):
    from playwright.sync_api import expect, sync_playwright

    web_port = free_port()
    config = _station(tmp_path, broker.port, web_port, district_keys)
    add = subprocess.run(
        [ROADSIDE, "central", "user", "add", "lan", "--role", "investigator", "--config", config],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert add.returncode == 0, add.stderr
    station = subprocess.Popen(
        [ROADSIDE, "central", "run", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    agent_toml = _agent(tmp_path, broker.port, footage, district_keys)
    box = subprocess.Popen(
        [ROADSIDE, "agent", "run", "--config", str(agent_toml)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    recording_since = time.time() + 3
    store = Store(load_central_config(config).database_url)
    shots = _shots_dir(tmp_path)
    base = f"http://127.0.0.1:{web_port}"

    def car_events() -> list[dict]:
        with store.connect() as conn:
            rows = conn.execute(
                sa.select(T.events).where(
                    T.events.c.cls == "car",
                    T.events.c.phase == "e",
                    T.events.c.t0 > recording_since + 2,
                )
            ).mappings()
            return [dict(r) for r in rows]

    try:
        wait_until(lambda: bool(car_events()), 120, "an ended car event from the box")
        with sync_playwright() as pw:
            browser = _browser(pw)
            page = browser.new_page(viewport={"width": 1100, "height": 720}, locale="vi-VN")
            page.set_default_timeout(30_000)

            page.goto(base + "/boxes")
            expect(page).to_have_url(f"{base}/login?next=%2Fboxes")
            page.screenshot(path=str(shots / "login.png"))
            page.fill("input[name=name]", "lan")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            expect(page).to_have_url(base + "/boxes")
            row = page.locator("tr[data-box=deo-gio]")
            expect(row.locator("td.state")).to_have_text("đang kết nối")
            page.screenshot(path=str(shots / "boxes.png"))

            page.click("a[href='/events']")
            page.select_option("select[name=cls]", "car")
            page.click("form.filters button[type=submit]")
            expect(page.locator("#events tbody tr").first).to_be_visible()
            classes = page.locator("#events tbody tr").evaluate_all(
                "rows => rows.map(r => r.dataset.class)"
            )
            assert set(classes) == {"car"}, classes
            page.screenshot(path=str(shots / "events.png"))
            event = car_events()[0]
            page.goto(f"{base}/events/{event['id']}")
            expect(page.locator("h1")).to_contain_text("ô tô")
            page.screenshot(path=str(shots / "event.png"))

            page.click("#ask-clip")
            page.wait_for_url(f"{base}/requests/*")
            request_id = page.url.rsplit("/", 1)[1]
            phases: list[str] = []

            def note_phase(phase: str) -> None:
                phases.append(phase)

            page.expose_function("notePhase", note_phase)
            page.evaluate(
                """() => { const box = document.getElementById('progress');
                     notePhase(box.dataset.phase);
                     new MutationObserver(() => notePhase(box.dataset.phase)).observe(
                       box, {attributes: true}); }"""
            )
            video = page.locator("video#clip")
            expect(video).to_be_attached(timeout=120_000)
            page.wait_for_function(
                "() => { const v = document.getElementById('clip');"
                " return v && v.readyState >= 2 && v.duration > 0; }",
                timeout=60_000,
            )
            duration = page.evaluate("() => document.getElementById('clip').duration")
            page.evaluate(
                "() => { const v = document.getElementById('clip'); v.muted = true;"
                " return v.play(); }"
            )
            page.wait_for_function("() => document.getElementById('clip').currentTime > 0")
            stored = store.clips.for_request(request_id)
            assert stored is not None and stored["state"] == "done"
            span = stored["meta"]["actual_to"] - stored["meta"]["actual_from"]
            assert duration > 0 and abs(duration - span) < 1.0, (duration, stored["meta"])
            sha = page.locator("p.mono").inner_text()
            assert len(sha.split()[-1]) == 64
            page.screenshot(path=str(shots / "clip.png"))

            page.goto(f"{base}/live/deo-gio")
            picture = page.locator("#live-picture")
            expect(picture).to_be_visible(timeout=60_000)
            first = picture.get_attribute("src")
            page.wait_for_function(
                f"() => document.getElementById('live-picture').getAttribute('src') !== {first!r}"
            )
            page.screenshot(path=str(shots / "live.png"))
            page.goto(f"{base}/counts?box=deo-gio")
            expect(page.locator("svg.chart").first).to_be_visible()
            page.screenshot(path=str(shots / "counts.png"))

            page.goto(f"{base}/audit")
            rows = page.locator("#audit tbody tr")
            expect(rows.filter(has_text="đoạn phim").first.locator("td.officer")).to_have_text(
                "lan"
            )
            page.screenshot(path=str(shots / "audit.png"))
            browser.close()

        with store.connect() as conn:
            audit = {r["id"]: dict(r) for r in conn.execute(sa.select(T.audit)).mappings()}
        clip = audit[request_id]
        assert clip["requester"] == "lan" and clip["state"] == "done", clip
        assert clip["params"]["event"] == event["id"]
        # the live view stopped when its page closed, well before its time limit
        (live,) = [r for r in audit.values() if r["action"] == "live"]
        wait_until(lambda: _finished(store, live["id"]), 20, "the live view to stop with its page")
        assert live["requester"] == "lan"
        # the page followed the request live: from waiting or working to done
        assert phases[0] in ("sent", "working", "uploading"), phases
        assert phases[-1] == "done", phases
    finally:
        box.terminate()
        station.terminate()
        _, box_err = box.communicate(timeout=60)
        _, station_err = station.communicate(timeout=60)
        store.close()
    assert box.returncode == 0, box_err[-2000:]
    assert station.returncode == 0, station_err[-2000:]
    if os.environ.get("ROADSIDE_SCREENSHOTS"):
        _shrink(shots)


def _finished(store: Store, audit_id: str) -> bool:
    with store.connect() as conn:
        row = conn.execute(sa.select(T.audit).where(T.audit.c.id == audit_id)).mappings().one()
    return row["finished"] is not None and row["detail"] == "closed"


def _shrink(folder: Path, most: int = 150_000) -> None:
    """Pages showing video frames are scaled down: the docs' screenshots stay small."""
    import cv2

    for png in folder.glob("*.png"):
        while png.stat().st_size > most:
            image = cv2.imread(str(png))
            h, w = image.shape[:2]
            small = cv2.resize(image, (int(w * 0.8), int(h * 0.8)), interpolation=cv2.INTER_AREA)
            cv2.imwrite(str(png), small, [cv2.IMWRITE_PNG_COMPRESSION, 9])
