"""Region planning: crops cover what is small and moving, as few as possible, the most
useful first when they are rationed."""

from __future__ import annotations

from roadside.agent.vision.regions import Region, RegionPlanner
from roadside.config.agent import RegionConfig

W, H, SIDE = 960, 540, 416


def norm(x0: float, y0: float, x1: float, y1: float) -> tuple[float, float, float, float]:
    return (x0 / W, y0 / H, x1 / W, y1 / H)


def crops(plan: list[Region]) -> list[tuple[int, int, int]]:
    return [(r.x0, r.y0, r.side) for r in plan if not r.full]


def test_boxes_at_the_frame_edge_share_one_crop() -> None:
    """Two distant cars entering at the right edge: one crop holds both (the frame's edge
    cuts nothing, so a box touching it needs no margin there), not the same crop twice."""
    planner = RegionPlanner(RegionConfig(max_regions=3), SIDE)
    planner.plan(W, H, [], [], 0.0)  # the whole frame, due at the start
    cars = [norm(930, 30, 960, 50), norm(935, 60, 960, 90)]
    plan = planner.plan(W, H, cars, [], 0.2)
    ((x0, y0, side),) = crops(plan)
    assert x0 + side == W and y0 == 0 and x0 <= 930


def test_a_small_car_is_enlarged_for_the_model() -> None:
    """A car 24 px long gets a crop half the model's side (the model sees it at 48 px, where
    it scores best); one of 36 px a crop of three quarters; a 60 px one the model's side."""
    planner = RegionPlanner(RegionConfig(max_regions=3), SIDE)
    planner.plan(W, H, [], [], 0.0)
    for length, side in ((24, SIDE // 2), (36, SIDE * 3 // 4), (60, SIDE)):
        plan = planner.plan(W, H, [norm(300, 100, 300 + length, 100 + length / 2)], [], 0.2)
        assert [c[2] for c in crops(plan)] == [side], length


def test_rationed_crops_go_where_most_small_things_are() -> None:
    """A queue of three distant cars at the top right and one somewhat larger car alone at
    the left, with a near car making the whole frame necessary: the one crop left in the
    budget goes to the queue."""
    planner = RegionPlanner(RegionConfig(max_regions=2), SIDE)
    queue = [norm(700, 10, 720, 25), norm(780, 15, 800, 30), norm(860, 20, 880, 35)]
    lone = norm(50, 200, 100, 240)
    near = norm(400, 300, 600, 500)
    plan = planner.plan(W, H, [lone, *queue], [near], 0.0)
    assert plan[0].full
    ((x0, y0, side),) = crops(plan)
    assert x0 <= 700 and x0 + side >= 880 and y0 == 0
