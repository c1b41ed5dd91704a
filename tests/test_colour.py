"""Colour names on real footage, checked against the hand count's colours, and on pictures
of things that are not cars."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from roadside.agent.vision.colour import colour_of
from roadside.wire.messages import COLOURS

W, H = 960, 540

# (frame, box in pixels, hand-counted colour in ground_truth.md, the name expected)
CARS = [
    (56, (534, 234, 615, 344), "V01 dark blue", "blue"),
    (56, (648, 224, 759, 343), "V02 silver", "grey"),
    (127, (666, 228, 777, 349), "V04 red", "red"),
    (250, (421, 218, 515, 336), "V07 dark red", "red"),
    (277, (305, 223, 394, 333), "V09 black", "black"),
    (301, (536, 227, 618, 342), "V10 white", "white"),
]


@pytest.fixture(scope="module")
def frames(footage: Path) -> dict[int, np.ndarray]:
    cap = cv2.VideoCapture(str(footage / "motorway_overpass.mp4"))
    wanted = {f for f, *_ in CARS}
    found, i = {}, 0
    while len(found) < len(wanted):
        ok, img = cap.read()
        assert ok
        if i in wanted:
            found[i] = img
        i += 1
    cap.release()
    return found


@pytest.mark.parametrize(("frame", "box", "truth", "name"), CARS, ids=[c[2] for c in CARS])
def test_cars_of_the_overpass_clip(frames, frame, box, truth, name) -> None:
    x0, y0, x1, y1 = box
    assert colour_of(frames[frame], (x0 / W, y0 / H, x1 / W, y1 / H)) == name, truth


def _person(coat_bgr: tuple[int, int, int]) -> np.ndarray:
    """A standing figure: skin-coloured head, a coat, dark trousers, on a grey pavement."""
    img = np.full((200, 200, 3), 128, np.uint8)
    cv2.circle(img, (100, 40), 15, (140, 170, 220), -1)
    cv2.rectangle(img, (80, 58), (120, 130), coat_bgr, -1)
    cv2.rectangle(img, (84, 130), (116, 190), (40, 40, 40), -1)
    return img


@pytest.mark.parametrize(
    ("coat", "name"),
    [((30, 160, 40), "green"), ((200, 80, 20), "blue"), ((30, 200, 230), "yellow")],
)
def test_a_person_is_read_alike(coat, name) -> None:
    """Nothing assumes a car: a person's coat names the person's colour."""
    assert colour_of(_person(coat), (0.38, 0.12, 0.62, 0.96)) == name


def test_a_box_too_small_has_no_colour_and_names_are_the_protocols() -> None:
    img = np.zeros((100, 100, 3), np.uint8)
    assert colour_of(img, (0.5, 0.5, 0.51, 0.51)) is None
    assert colour_of(img, (0.1, 0.1, 0.9, 0.9)) == "black"
    assert {"white", "grey", "black", "red", "blue", "green", "yellow", "brown"} <= set(COLOURS)
