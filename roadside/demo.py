"""``make demo``: the real pipeline on real footage, end to end, on this machine.

The model and the footage are fetched by their manifests first (``make demo`` does it, from
$ROADSIDE_SHARED when set, else from their public URLs), then the agent runs over the clip
once and prints every event and count as a JSON line.
"""

from __future__ import annotations

import sys

from roadside import assets
from roadside.agent.app import Agent
from roadside.agent.config import parse_config


def main() -> int:
    store = assets.default_store()
    footage = store / assets.manifest("motorway_overpass", "footage").file("video").file
    cfg = parse_config(
        {
            "device": "demo-junction",
            "data_dir": "var/demo",
            "source": {"kind": "file", "path": str(footage), "pace": "native"},
            "detector": {"models_dir": str(store)},
        },
        "demo",
    )
    print(f"demo: {footage.name} through {cfg.detector.model}, events below", file=sys.stderr)
    stats = Agent(cfg).run()
    print(
        f"demo: {stats.frames} frames, {stats.detections_run} detector runs, "
        f"{stats.events} event messages",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
