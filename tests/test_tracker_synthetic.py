"""The tracker on synthetic detections: misses, crossings, class flips, low rates, still objects.

Boxes are normalised (x0, y0, x1, y1) on a 16:9 frame, as the detector gives them.
"""

from __future__ import annotations

from roadside.agent.vision.decoders import Detection
from roadside.agent.vision.tracker import Tracker
from roadside.config.agent import TrackerConfig


def box(cx: float, cy: float, w: float, h: float) -> tuple[float, float, float, float]:
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def run(tracker: Tracker, frames: list[tuple[float, list[Detection]]]):
    """Feed (time, detections) rounds; returns every track, ended ones included."""
    ended = []
    for t, dets in frames:
        ended += tracker.update(dets, t)
    return ended + tracker.flush()


def confirmed(tracks):
    return [t for t in tracks if t.confirmed]


def test_a_one_second_miss_keeps_one_track() -> None:
    """A car hidden for a second behind a lorry comes out where its speed says."""
    tracker = Tracker(TrackerConfig())
    rounds = []
    for k in range(40):  # 5 rounds a second for 8 s, moving 0.05 of the width a second
        t = k * 0.2
        seen = not (10 <= k < 15)  # hidden from 2.0 s to 3.0 s
        det = [Detection("car", 0.8, box(0.1 + 0.05 * t, 0.5, 0.06, 0.08))] if seen else []
        rounds.append((t, det))
    tracks = confirmed(run(tracker, rounds))
    assert len(tracks) == 1
    assert tracks[0].hits == 35


def test_two_objects_crossing_keep_their_identities() -> None:
    """Two people walk across each other's path; each track keeps its own side's walker."""
    tracker = Tracker(TrackerConfig())
    ids_at_start = ids_at_end = None
    for k in range(50):
        t = k * 0.2
        a = Detection("person", 0.9, box(0.2 + 0.06 * t, 0.5, 0.04, 0.2))  # left to right
        b = Detection("person", 0.85, box(0.8 - 0.06 * t, 0.52, 0.04, 0.2))  # right to left
        tracker.update([a, b], t)
        live = sorted((tr for tr in tracker.tracks if tr.confirmed), key=lambda tr: tr.centre[0])
        if k == 5:
            ids_at_start = [tr.track_id for tr in live]  # [left walker, right walker]
        if k == 49:
            ids_at_end = [tr.track_id for tr in live]
    assert ids_at_start is not None and len(ids_at_start) == 2
    # By the end they swapped sides: the left walker is on the right.
    assert ids_at_end == ids_at_start[::-1]
    assert len(tracker.tracks) == 2


def test_a_class_flip_stays_one_track_and_people_stay_apart() -> None:
    tracker = Tracker(TrackerConfig(confirm_hits=2))
    labels = ["car", "truck", "truck", "car", "bus", "truck"]
    for k, label in enumerate(labels):
        x = 0.1 + 0.02 * k
        tracker.update(
            [Detection(label, 0.7 if label == "car" else 0.9, box(x, 0.4, 0.1, 0.1))], k * 0.1
        )
    assert len(tracker.tracks) == 1
    assert tracker.tracks[0].label == "truck"  # the largest summed score
    tracker.update([Detection("person", 0.9, box(0.22, 0.4, 0.1, 0.1))], 0.6)
    assert len(tracker.tracks) == 2  # a person never joins a vehicle's track


def test_fast_objects_at_five_detections_a_second() -> None:
    """Two motorbikes seen side on (2 m long, 60 km/h: eight of their lengths a second) cross
    the frame in two seconds, both ways, seen 5 times a second: a box never overlaps the
    previous one, yet each is one track and the two never swap."""
    tracker = Tracker(TrackerConfig())
    rounds = []
    for k in range(10):
        t = k * 0.2
        first = Detection("motorcycle", 0.8, box(0.05 + 0.1 * k, 0.6, 0.07, 0.1))
        second = Detection("motorcycle", 0.75, box(0.95 - 0.1 * k, 0.55, 0.07, 0.1))
        rounds.append((t, [first, second]))
    tracks = confirmed(run(tracker, rounds))
    assert len(tracks) == 2
    for track in tracks:
        assert track.hits == 10
        assert abs(track.centre[0] - track.first_centre[0]) > 0.8
        assert abs(track.centre[1] - track.first_centre[1]) < 0.02


def test_a_stationary_object_is_one_track_through_detector_pauses() -> None:
    """A parked car seen only at the motion gate's keep-alive (every 2 s) for a minute, and
    missed by the detector now and then, stays one track."""
    tracker = Tracker(TrackerConfig(max_missed_s=1.5))
    rounds = [(k * 0.2, [Detection("car", 0.8, box(0.5, 0.5, 0.1, 0.08))]) for k in range(5)]
    for k in range(30):
        t = 1.0 + 2.0 * k
        det = [] if k % 4 == 3 else [Detection("car", 0.7, box(0.5, 0.5, 0.1, 0.08))]
        rounds.append((t, det))
    tracks = run(tracker, rounds)
    assert len(tracks) == 1 and tracks[0].confirmed
    assert tracks[0].last_seen - tracks[0].first_seen > 55


def test_low_scores_continue_tracks_but_never_start_them() -> None:
    cfg = TrackerConfig(high_score=0.5, start_score=0.6)
    tracker = Tracker(cfg)
    faint = [(k * 0.2, [Detection("car", 0.3, box(0.3, 0.3, 0.1, 0.1))]) for k in range(10)]
    assert run(tracker, faint) == []  # noise at a low score never becomes a track
    tracker = Tracker(cfg)
    rounds = [
        (k * 0.2, [Detection("car", 0.8, box(0.1 + 0.01 * k, 0.3, 0.1, 0.1))]) for k in range(4)
    ]
    rounds += [
        (k * 0.2, [Detection("car", 0.3, box(0.1 + 0.01 * k, 0.3, 0.1, 0.1))]) for k in range(4, 12)
    ]
    tracks = run(tracker, rounds)
    assert len(tracks) == 1 and tracks[0].hits == 12  # in the dark, the track goes on


def test_a_track_leaving_the_frame_ends_at_once() -> None:
    tracker = Tracker(TrackerConfig(max_missed_s=5.0))
    ended = []
    for k in range(8):
        det = [Detection("car", 0.8, box(0.7 + 0.1 * k, 0.5, 0.1, 0.1))] if k < 4 else []
        ended += tracker.update(det, k * 0.2)
    assert len(ended) == 1  # predicted out of the picture well before 5 s unseen


def test_a_hidden_person_does_not_take_over_a_neighbour() -> None:
    """In a crowd: a person walking slowly is hidden for 1.2 s while someone steps out 2.5
    of their sizes away. The hidden one's expected spread grows wide enough to hold the
    newcomer, but a detection that far from where the filter expects the object is someone
    else: the newcomer gets a track of its own, and the first track waits for its person."""
    tracker = Tracker(TrackerConfig())
    rounds = []
    for k in range(25):
        t = k * 0.2
        a_x = 0.3 + 0.01 * t  # a slow walker: 0.04 x 0.2 of the frame, size 0.12 units
        dets = []
        if not 10 <= k < 16:  # hidden from 2.0 s to 3.2 s
            dets.append(Detection("person", 0.8, box(a_x, 0.5, 0.04, 0.2)))
        if k >= 10:  # the newcomer stands 0.17 of the width (2.5 sizes) to the right
            dets.append(Detection("person", 0.8, box(a_x + 0.17, 0.5, 0.04, 0.2)))
        rounds.append((t, dets))
    tracks = confirmed(run(tracker, rounds))
    assert len(tracks) == 2
    first = min(tracks, key=lambda tr: tr.track_id)
    assert abs(first.seen_centre[0] - (0.3 + 0.01 * 4.8)) < 0.02  # still the walker
    assert first.hits == 19


def test_confirmation_takes_the_same_time_at_any_detection_rate() -> None:
    """A reflection seen in four frames running at a camera's 30 rounds a second (0.1 s) is
    no object; a car seen for 0.4 s is one, whether seen 30 or 5 times a second."""
    ghost = [(k / 30, [Detection("car", 0.8, box(0.5, 0.5, 0.1, 0.08))]) for k in range(4)]
    assert confirmed(run(Tracker(TrackerConfig()), ghost)) == []
    for rate in (30, 5):
        rounds = [
            (k / rate, [Detection("car", 0.8, box(0.2 + 0.1 * k / rate, 0.5, 0.1, 0.08))])
            for k in range(round(0.4 * rate) + 1)
        ]
        assert len(confirmed(run(Tracker(TrackerConfig()), rounds))) == 1
