"""The recording's small parts on their own: names, pre-roll, retention, clocks, config."""

from __future__ import annotations

import time

import pytest

from roadside.agent.clock import ClockWatch, WallAnchor, boot_id, clock_synchronised
from roadside.agent.recording.cli import parse_time
from roadside.agent.recording.errors import NoFootageError, RecordingError
from roadside.agent.recording.eventwindow import EventWindow
from roadside.agent.recording.index import SegmentRecord, merge_ranges
from roadside.agent.recording.packets import EncodedPacket
from roadside.agent.recording.preroll import PreRollRing
from roadside.agent.recording.retention import RetentionPolicy
from roadside.agent.recording.segments import SegmentName
from roadside.config.agent import parse_config
from roadside.errors import ConfigError


def rec(
    start: float, dur: float = 10.0, size: int = 100, event: bool = False, clock: str = "sync"
) -> SegmentRecord:
    return SegmentRecord(
        path=f"d/{start}.ts",
        start=start,
        end=start + dur,
        mono_start=start,
        boot="abcdef01",
        clock=clock,
        mode="cont",
        has_event=event,
        bytes=size,
    )


def test_segment_names_round_trip_and_reject_strangers() -> None:
    name = SegmentName(1778580000.123, "3f2a9c1b", 1234.567, "nosync", "event", True)
    assert name.filename == "1778580000123_3f2a9c1b_1234567_nosync-event-ev.ts"
    assert name.relpath.startswith("20260512/")
    back = SegmentName.parse(name.filename)
    assert back == name
    assert SegmentName.parse(name.but(event=False, clock="retimed").filename).clock == "retimed"
    for bad in (
        "notes.txt",
        "1778580000123_3f2a9c1b_1234567_sync-cont.ts.part",
        "1778580000123_XYZ_1_sync-cont.ts",
        "1_3f2a9c1b_1_maybe-cont.ts",
    ):
        assert SegmentName.parse(bad) is None


def packet(t: float, key: bool, size: int = 1000) -> EncodedPacket:
    return EncodedPacket(b"\0" * size, t, t, key)


def test_preroll_keeps_whole_groups_covering_the_window() -> None:
    ring = PreRollRing(seconds=3.0, max_bytes=10**9)
    ring.add(packet(0.0, False))  # before any keyframe: useless, not kept
    assert len(ring) == 0
    for i in range(100):  # 10 fps, keyframe every second
        t = i / 10
        ring.add(packet(t, i % 10 == 0))
    # newest is 9.9; the group starting at 6.0 is the latest that reaches back 3 s
    drained = ring.drain(since=9.9 - 3.0)
    assert drained[0].keyframe and drained[0].pts == pytest.approx(6.0)
    assert drained[-1].pts == pytest.approx(9.9)
    assert len(ring) == 0 and ring.bytes == 0


def test_preroll_is_bounded_in_bytes_and_drains_from_the_keyframe_asked() -> None:
    ring = PreRollRing(seconds=60.0, max_bytes=25_000)
    for i in range(100):
        ring.add(packet(i / 10, i % 10 == 0))
    assert ring.bytes <= 25_000
    assert ring._packets[0].keyframe
    ring2 = PreRollRing(seconds=60.0, max_bytes=10**9)
    for i in range(50):
        ring2.add(packet(i / 10, i % 10 == 0))
    got = ring2.drain(since=2.5)
    assert got[0].pts == pytest.approx(2.0) and got[0].keyframe


def test_retention_picks_oldest_and_keeps_event_footage_longer() -> None:
    day = 86400.0
    policy = RetentionPolicy(budget_bytes=1000, event_bonus_s=2 * day)
    plain = [rec(0.0), rec(1 * day), rec(3 * day)]
    events = [rec(0.5 * day, event=True), rec(2.5 * day, event=True)]
    order = policy.pick(plain, events, need_bytes=10**9)
    # keys: plain 0, 1d, 3d; events 2.5d, 4.5d
    assert [r.start for r in order] == [0.0, 1 * day, 0.5 * day, 3 * day, 2.5 * day]
    assert [r.start for r in policy.pick(plain, events, need_bytes=150)] == [0.0, 1 * day]
    assert policy.excess(1200) == 200 and policy.excess(900) == 0


def test_max_age_only_applies_to_trusted_labels() -> None:
    policy = RetentionPolicy(budget_bytes=1, max_age_s=100.0, event_bonus_s=50.0)
    now = 1000.0
    old = [
        rec(0.0, clock="sync"),
        rec(0.0, clock="nosync"),
        rec(0.0, clock="retimed"),
        rec(860.0, dur=10, event=True),
        rec(700.0, dur=10, event=True),
    ]
    expired = policy.expired(old, now)
    assert [(r.clock, r.start) for r in expired] == [
        ("sync", 0.0),
        ("retimed", 0.0),
        ("sync", 700.0),
    ]
    assert RetentionPolicy(budget_bytes=1).expired(old, now) == []


def test_event_window_records_until_post_roll_after_the_last_end() -> None:
    w = EventWindow(post_roll_s=5.0)
    assert not w.wants(0.0)
    w.start("a", 10.0)
    w.start("b", 12.0)
    assert w.wants(100.0)  # open events: keep recording
    w.end("a", 20.0)
    assert w.wants(100.0)  # b still open
    w.end("b", 30.0)
    assert w.wants(35.0) and not w.wants(35.1)


def test_wall_anchor_reports_steps_and_ignores_slew() -> None:
    a = WallAnchor(jump_s=1.0)
    assert a.observe(1000.0, 10.0) is None
    assert a.observe(1010.5, 20.0) is None  # 0.5 s of slew
    step = a.observe(5000.0, 21.0)
    assert step is not None and step.step_s == pytest.approx(3989.0)
    assert a.wall(22.0) == pytest.approx(5001.0) and a.mono(5001.0) == pytest.approx(22.0)


def test_clock_probe_and_watch() -> None:
    assert isinstance(clock_synchronised(), bool)
    assert len(boot_id()) == 8
    answers = iter([False, True, True])
    watch = ClockWatch(probe=lambda: next(answers), every_s=3600)
    assert watch.synced is False  # cached for every_s
    assert watch.refresh() is True


def test_merge_ranges_joins_touching_segments_only() -> None:
    ranges = merge_ranges([rec(0, 10), rec(10.2, 10), rec(25, 5, clock="nosync")])
    assert [(r.start, r.end, r.segments) for r in ranges] == [(0, 20.2, 2), (25, 30, 1)]
    assert ranges[1].clocks == {"nosync"}


def test_no_footage_error_names_the_retained_range() -> None:
    err = NoFootageError(100.0, 200.0, (1000.0, 5000.0), 3)
    assert "no footage between" in str(err) and "this box holds" in str(err)
    assert "3 ranges" in str(err) and err.code == "out_of_range"
    assert "holds no recordings" in str(NoFootageError(1.0, 2.0, None))


def test_parse_time_forms() -> None:
    assert parse_time("1778580000.5", "--from") == 1778580000.5
    assert parse_time("2026-05-12T10:14:00+00:00", "--from") == 1778580840.0
    local = parse_time("2026-05-12 10:14", "--to")
    assert local == time.mktime((2026, 5, 12, 10, 14, 0, 0, 0, -1))
    with pytest.raises(RecordingError, match=r"--from '10h15' is not a time"):
        parse_time("10h15", "--from")


def base_doc(**recording: object) -> dict:
    return {"device": "box", "source": {"kind": "file", "path": "x.mp4"}, "recording": recording}


def test_recording_config_defaults_and_errors() -> None:
    cfg = parse_config({"device": "box", "source": {"kind": "file", "path": "x.mp4"}})
    assert cfg.recording.mode == "off"
    assert cfg.recording.folder("/var/lib/roadside").as_posix() == "/var/lib/roadside/segments"
    cfg = parse_config(base_doc(mode="events", budget_bytes="8GiB", dir="/srv/rec"))
    assert cfg.recording.budget_bytes == 8 * 1024**3
    assert cfg.recording.folder("/x").as_posix() == "/srv/rec"
    with pytest.raises(ConfigError, match=r"recording\.budget_bytes = '8 gigs'"):
        parse_config(base_doc(budget_bytes="8 gigs"))
    with pytest.raises(ConfigError, match=r"keyframe_s \(5\.0\) must not exceed"):
        parse_config(base_doc(keyframe_s=5, segment_s=2))
    with pytest.raises(ConfigError, match=r"recording\.encoder\.preset"):
        parse_config(base_doc(encoder={"preset": "placebo"}))
    with pytest.raises(ConfigError, match=r"unknown key 'recording\.budget'"):
        parse_config(base_doc(budget=5))
