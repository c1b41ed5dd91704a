"""Chunk bookkeeping of one transfer's sending side: what the receiver holds, what is in flight.

Both are plain data with small named steps; ``SendMachine`` (machine.py) decides when to use
them. No clock, no I/O, no locks (the machine's owner serialises every call).
"""

from __future__ import annotations

import bisect


class HeldChunks:
    """Chunks the receiving side said it holds: a bitmap, one bit per chunk.

    It starts from a stored bitmap (after a restart: only a hint) and every answer of the
    receiver corrects it both ways: a chunk it found damaged and dropped is cleared again.
    """

    def __init__(self, chunks: int, bits: bytes | None = None) -> None:
        self.chunks = chunks
        size = (chunks + 7) // 8
        self.bits = bytearray(bits) if bits is not None and len(bits) >= size else bytearray(size)
        self.count = sum(bin(b).count("1") for b in self.bits)
        # One past the highest chunk marked held. A stored hint marks the whole file, so the
        # first answer checks every chunk the hint claims.
        self.hi = chunks if self.count else 0
        self.cumulative = 0  # the receiver's last "n": chunks held from the start

    def has(self, idx: int) -> bool:
        return bool(self.bits[idx >> 3] & (1 << (idx & 7)))

    def mark(self, idx: int, held: bool) -> bool:
        """Set one chunk held or not; True when that changed."""
        byte, bit = idx >> 3, 1 << (idx & 7)
        if bool(self.bits[byte] & bit) == held:
            return False
        if held:
            self.bits[byte] |= bit
            self.count += 1
            self.hi = max(self.hi, idx + 1)
        else:
            self.bits[byte] &= ~bit & 0xFF
            self.count -= 1
        return True

    def fill(self) -> None:
        """The receiver has the whole file."""
        self.bits[:] = b"\xff" * len(self.bits)
        self.count = self.hi = self.chunks

    @property
    def complete(self) -> bool:
        return self.count >= self.chunks

    @property
    def fraction(self) -> float:
        return min(1.0, self.count / self.chunks)


class Window:
    """Chunks on their way: which goes next, which are out and unacknowledged, which go again.

    Every chunk sent gets a sequence number. One connection keeps order, so a chunk the
    receiver acknowledges before an earlier one still outstanding means the earlier one was
    lost; ``lost_before`` uses that.
    """

    def __init__(self, chunks: int, limit: int) -> None:
        self.chunks = chunks
        self.limit = limit  # chunks out and not yet acknowledged by the receiver, at most
        self.cursor = 0  # chunks below it were sent at least once (or are held)
        self.seq = 0  # the last sequence number given out
        self.outstanding: dict[int, int] = {}  # chunk -> sequence number: out, not acknowledged
        self.limbo: set[int] = set()  # out when the link dropped: their fate is unknown
        self.retx: list[int] = []  # known missing, sorted: first in line
        self._sent = bytearray((chunks + 7) // 8)  # sent at least once by this side

    @property
    def full(self) -> bool:
        return len(self.outstanding) >= self.limit

    @property
    def unsettled(self) -> bool:
        """Chunks are out (or in limbo) that the receiver has not acknowledged."""
        return bool(self.outstanding or self.limbo)

    def next_index(self, held: HeldChunks) -> int | None:
        """The chunk to send next, without taking it: known-missing ones first, then ones
        never sent. Entries that no longer need sending are dropped on the way."""
        while self.retx:
            idx = self.retx[0]
            if not held.has(idx) and idx not in self.outstanding:
                return idx
            self.retx.pop(0)
        while self.cursor < self.chunks:
            idx = self.cursor
            if not held.has(idx) and idx not in self.outstanding and idx not in self.limbo:
                return idx
            self.cursor += 1
        return None

    def was_sent(self, idx: int) -> bool:
        return bool(self._sent[idx >> 3] & (1 << (idx & 7)))

    def take(self, idx: int) -> int:
        """Chunk ``idx`` goes out now; its sequence number."""
        at = bisect.bisect_left(self.retx, idx)
        if at < len(self.retx) and self.retx[at] == idx:
            del self.retx[at]
        if idx == self.cursor:
            self.cursor += 1
        self._sent[idx >> 3] |= 1 << (idx & 7)
        self.seq += 1
        self.outstanding[idx] = self.seq
        return self.seq

    def missing(self, idx: int) -> None:
        """The receiver lacks chunk ``idx``: first in line (once)."""
        at = bisect.bisect_left(self.retx, idx)
        if at == len(self.retx) or self.retx[at] != idx:
            self.retx.insert(at, idx)

    def acknowledge(self, idx: int) -> int:
        """The receiver holds ``idx``; the sequence number it went out with (0: not out)."""
        self.limbo.discard(idx)
        return self.outstanding.pop(idx, 0)

    def lost_before(self, seq: int) -> None:
        """Everything still outstanding that went out before ``seq`` was lost on the way."""
        for idx, sent_as in list(self.outstanding.items()):
            if sent_as < seq:
                del self.outstanding[idx]
                self.missing(idx)

    def lose(self, idx: int, seq: int) -> bool:
        """The link lost this send of ``idx`` before the broker had it: into limbo. False when
        the chunk has moved on since (acknowledged, sent again, already in limbo)."""
        if self.outstanding.get(idx) != seq:
            return False
        del self.outstanding[idx]
        self.limbo.add(idx)
        return True

    def to_limbo(self) -> None:
        """Whatever is out is now of unknown fate, until the receiver says what it holds."""
        self.limbo.update(self.outstanding)
        self.outstanding.clear()

    def settle_limbo(self, held: HeldChunks) -> None:
        """The receiver has answered: limbo chunks it lacks go again, the rest are done."""
        for idx in sorted(self.limbo):
            if not held.has(idx):
                self.missing(idx)
        self.limbo.clear()
