"""Reading recordings back in tests: the index rows, and how many pictures a file decodes."""

from __future__ import annotations

from pathlib import Path

import av

from roadside.agent.recording.index import SegmentRecord, open_index


def indexed(root: Path) -> list[SegmentRecord]:
    """Every segment the index of ``root`` lists."""
    with open_index(root) as index:
        return index.all()


def decoded_frames(path: Path) -> int:
    """The pictures a video file decodes to."""
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))
