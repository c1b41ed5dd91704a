"""The pre-roll: the last seconds of encoded video, kept in RAM for when an event starts.

In ``events`` mode nothing is written until an event starts; then the pre-roll is written
first, so the footage begins ``pre_roll_s`` before the object was first seen. The ring holds
whole groups of pictures (it always starts at a keyframe) and is bounded both in time and
in bytes; the oldest group goes first.
"""

from __future__ import annotations

import collections

from roadside.agent.recording.packets import EncodedPacket


class PreRollRing:
    """Encoded packets of the last ``seconds`` (plus the group that reaches back that far).

    Threading: the recorder thread only.
    """

    def __init__(self, seconds: float, max_bytes: int) -> None:
        self.seconds = seconds
        self.max_bytes = max_bytes
        self.bytes = 0
        self.trimmed = 0  # packets that aged out (normal) or did not fit max_bytes
        self._packets: collections.deque[EncodedPacket] = collections.deque()

    def __len__(self) -> int:
        return len(self._packets)

    @property
    def span(self) -> float:
        if not self._packets:
            return 0.0
        return self._packets[-1].pts - self._packets[0].pts

    def add(self, pkt: EncodedPacket) -> None:
        if not self._packets and not pkt.keyframe:
            self.trimmed += 1  # the ring always starts at a keyframe
            return
        self._packets.append(pkt)
        self.bytes += pkt.size
        self._trim(pkt.pts)

    def drain(self, since: float) -> list[EncodedPacket]:
        """Everything from the keyframe at or before ``since`` (monotonic s); empties the ring.

        When the ring does not reach back to ``since``, everything it holds is returned.
        """
        packets = list(self._packets)
        start = 0
        for i, p in enumerate(packets):
            if p.keyframe and p.pts <= since:
                start = i
        self.trimmed += start
        self.clear()
        return packets[start:]

    def clear(self) -> None:
        self._packets.clear()
        self.bytes = 0

    def _trim(self, now: float) -> None:
        """Drop whole groups from the front while the next group still covers the window."""
        while self._packets:
            if now - self._packets[0].pts < self.seconds and self.bytes <= self.max_bytes:
                break  # even the oldest packet is inside the window
            second_key = self._second_keyframe()
            if second_key is None:
                break
            too_old = now - self._packets[second_key].pts >= self.seconds
            too_big = self.bytes > self.max_bytes
            if not (too_old or too_big):
                break
            for _ in range(second_key):
                self.bytes -= self._packets.popleft().size
                self.trimmed += 1
        if self.bytes > self.max_bytes and len(self._packets) > 1:
            # One group alone is over the byte bound: keep its keyframe, start again later.
            self.trimmed += len(self._packets)
            self.clear()

    def _second_keyframe(self) -> int | None:
        for i, p in enumerate(self._packets):
            if i and p.keyframe:
                return i
        return None
