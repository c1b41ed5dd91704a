"""The sending side of one chunked transfer as a state machine: no threads, no clock, no I/O.

Time comes in as arguments (``now``: a monotonic clock for timers; ``wall``: epoch seconds,
for the deadline), events come in as method calls, and what to do comes out as values:

- ``offer(now)`` names the next message the sending side would send (an init, or a chunk by
  index, offset and length) without changing anything; ``sent(offer, now)`` records that it
  went out and returns the token that names it in later link events (``delivered``: the broker
  has it; ``undelivered``: the link lost it first);
- every other event returns a list of actions for the owner to carry out: ``Progress`` (tell
  whoever waits), ``Finished`` (the transfer ended: store it, tell the receiver to drop its
  partial file when ``ending.tells_receiver``), ``Silence`` (worth a log line).

The machine knows a sending side and a receiving side, never which end is the box: the same
machine carries a file either way. ``TransferSender`` (agent/transfer/sender.py) is the box's
threaded shell around it for uploads, ``ReleaseSender`` (central/fleet/sender.py) the
station's for releases; both hand the receiver's acks to ``take_ack``.

Phases, and what moves them::

    a new transfer                                      ──► ASK_AND_SEND
    resumed after a restart                             ──► ASK
    ASK, ASK_AND_SEND: the answer to the latest init    ──► SEND
    SEND: the link dropped, or lost a chunk (no PUBACK) ──► ASK_AND_SEND
    SEND: silence with chunks out (``ack_timeout_s``)   ──► ASK
    SEND, ASK_AND_SEND: "unknown"                       ──► ASK
    not ended: "done"                                   ──► DONE
    not ended: cancel, deadline, "fail", file unreadable ─► FAILED

While asking (ASK, ASK_AND_SEND) the init goes out, and again after a wait from
``roadside.backoff.Backoff`` (doubling, with jitter) while unanswered; in ASK nothing else is
sent, in ASK_AND_SEND chunks never sent go meanwhile. Chunks that were out when the link
dropped are in limbo: they go again only if the answer says they are missing.

One publisher's messages reach the receiver in the order they were sent, so the answer to
an init covers every chunk sent before that init: one of them the answer does not hold was
lost on the way (e.g. the broker dropped it, as the receiver had not subscribed yet) and goes
again at once, rather than after ``ack_timeout_s`` of silence.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from roadside.backoff import Backoff
from roadside.transfer.chunks import HeldChunks, Window
from roadside.wire.commands import ErrorCode
from roadside.wire.transfer import MAX_ACK_RANGES, XferAck, XferAckState

PROGRESS_STEP = 0.1  # a Progress action every 10 % ...
PROGRESS_EVERY_S = 15.0  # ... or this often, whichever comes first


class Phase(Enum):
    """Where one transfer stands."""

    ASK = "ask"  # the init is out; nothing else goes until the receiver answers it
    ASK_AND_SEND = "ask_and_send"  # the init is out; chunks never sent go meanwhile
    SEND = "send"  # the receiver answered: chunks flow within the window
    DONE = "done"
    FAILED = "failed"

    @property
    def asking(self) -> bool:
        return self in (Phase.ASK, Phase.ASK_AND_SEND)

    @property
    def ended(self) -> bool:
        return self in (Phase.DONE, Phase.FAILED)

    @property
    def label(self) -> str:
        """The word status reports use: "hello" while asking, else the value."""
        return "hello" if self.asking else self.value


class Ending(Enum):
    """Why a transfer ended."""

    DONE = "done"  # the receiver holds the whole file and checked it
    CANCELLED = "cancelled"  # the sending side was asked to stop
    DEADLINE = "deadline"  # not finished in time
    REFUSED = "refused"  # the receiving side gave up (its code and message say why)
    BROKEN = "broken"  # the sending side cannot go on (its file is unreadable)

    @property
    def tells_receiver(self) -> bool:
        """The receiving side does not know yet and must be told to drop its partial file."""
        return self in (Ending.CANCELLED, Ending.DEADLINE)


# -- what the machine is given -----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Manifest:
    """The file's shape as both sides agree on it in the init: its size in chunks."""

    size: int  # bytes
    chunk_size: int  # bytes; the last chunk is shorter

    @property
    def chunks(self) -> int:
        return max(1, -(-self.size // self.chunk_size))

    def offset(self, idx: int) -> int:
        return idx * self.chunk_size

    def chunk_len(self, idx: int) -> int:
        return max(0, min(self.chunk_size, self.size - idx * self.chunk_size))


@dataclass(frozen=True, slots=True)
class Deadline:
    """The sending side gives up at ``at`` (epoch seconds: it holds across restarts)."""

    at: float

    def passed(self, wall: float) -> bool:
        return wall >= self.at


@dataclass(frozen=True, slots=True)
class Tuning:
    """Settings of one transfer's sending side."""

    window: int  # chunks out and not yet acknowledged by the receiver, at most
    ack_timeout_s: float  # with chunks out and no word from the receiver this long: ask


@dataclass(frozen=True, slots=True)
class Holdings:
    """A receiver's ``recv`` answer: chunks [0, n) held, plus the ranges [a, b) beyond."""

    n: int
    ranges: tuple[tuple[int, int], ...] = ()
    q: int | None = None  # the number of the init it answers, if it answers one


# -- what the machine gives out ----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SendInit:
    """Offer: the manifest, numbered ``q``: "what do you hold?"."""

    q: int


@dataclass(frozen=True, slots=True)
class SendChunk:
    """Offer: chunk ``index`` (``length`` bytes at ``offset``); ``again`` if sent before."""

    index: int
    offset: int
    length: int
    again: bool


Offer = SendInit | SendChunk


@dataclass(frozen=True, slots=True)
class InitToken:
    """Names one init handed to the link."""

    q: int


@dataclass(frozen=True, slots=True)
class ChunkToken:
    """Names one send of one chunk (a chunk sent again gets a new ``seq``)."""

    index: int
    seq: int


Token = InitToken | ChunkToken


@dataclass(frozen=True, slots=True)
class Progress:
    """The receiver holds ``fraction`` of the file."""

    fraction: float


@dataclass(frozen=True, slots=True)
class Finished:
    """The transfer ended; ``code`` and ``msg`` are the receiver's (REFUSED) or the caller's."""

    ending: Ending
    fraction: float
    code: str | None = None
    msg: str | None = None


@dataclass(frozen=True, slots=True)
class Silence:
    """Chunks were out and the receiver said nothing for ``seconds``: asking it again."""

    seconds: float


Action = Progress | Finished | Silence


# -- the moving parts ----------------------------------------------------------------------
@dataclass
class Hello:
    """The init/answer exchange with the receiver."""

    backoff: Backoff  # waits between unanswered inits
    q: int = 0  # number of the latest init sent; an answer echoing it ends the asking
    seq: int = 0  # the window's last chunk sequence number when that init went out
    in_flight: bool = False  # handed to the link, the broker has not taken it yet
    due: float = 0.0  # monotonic: the next init may go then
    heard_at: float = 0.0  # monotonic: the receiver's last word


@dataclass
class _Reported:
    """The last Progress action given out."""

    fraction: float = -1.0
    at: float = 0.0


class SendMachine:
    """The sending side of one transfer; see the module doc.

    ``held`` may start from a stored bitmap (a hint); ``resumed`` (after a restart) starts in
    ASK, so nothing the receiver holds is sent twice. Not thread-safe: its owner serialises
    calls. ``revision`` grows with every change worth storing.
    """

    def __init__(
        self,
        manifest: Manifest,
        deadline: Deadline,
        tuning: Tuning,
        backoff: Backoff,
        now: float,
        held: bytes | None = None,
        resumed: bool = False,
    ) -> None:
        self.manifest = manifest
        self.deadline = deadline
        self.tuning = tuning
        self.hello = Hello(backoff=backoff, due=now, heard_at=now)
        self.held = HeldChunks(manifest.chunks, held)
        self.window = Window(manifest.chunks, tuning.window)
        self.phase = Phase.ASK if resumed else Phase.ASK_AND_SEND
        self.revision = 0
        self._reported = _Reported()

    @property
    def fraction(self) -> float:
        return self.held.fraction

    # -- what to send ----------------------------------------------------------------------
    def offer(self, now: float) -> Offer | None:
        """The next message to send if the link has room now, or None; changes nothing
        that matters until ``sent``."""
        if self.phase.ended:
            return None
        hello = self.hello
        if self.phase.asking and not hello.in_flight and now >= hello.due:
            return SendInit(hello.q + 1)
        if self.phase is Phase.ASK or self.window.full:
            return None
        idx = self.window.next_index(self.held)
        if idx is None:
            return None
        m = self.manifest
        return SendChunk(idx, m.offset(idx), m.chunk_len(idx), self.window.was_sent(idx))

    def sent(self, offer: Offer, now: float) -> Token:
        """``offer`` went to the link now."""
        if isinstance(offer, SendInit):
            hello = self.hello
            hello.q, hello.in_flight, hello.seq = offer.q, True, self.window.seq
            hello.due = now + hello.backoff.next()
            return InitToken(offer.q)
        self.revision += 1
        return ChunkToken(offer.index, self.window.take(offer.index))

    # -- the link --------------------------------------------------------------------------
    def delivered(self, token: Token) -> list[Action]:
        """The broker has the message ``token`` names (the receiver may not, yet)."""
        if isinstance(token, InitToken) and token.q == self.hello.q:
            self.hello.in_flight = False  # answered or not, the next init waits for ``due``
        return []

    def undelivered(self, token: Token, now: float) -> list[Action]:
        """The link lost the message ``token`` names before the broker had it."""
        if self.phase.ended:
            return []
        if isinstance(token, InitToken):
            if token.q == self.hello.q:
                self.hello.in_flight, self.hello.due = False, now
        elif self.window.lose(token.index, token.seq) and self.phase is Phase.SEND:
            self._ask(Phase.ASK_AND_SEND, now)
        return []

    def link_lost(self, now: float) -> list[Action]:
        """The connection dropped: whatever was out is in limbo, the init goes again."""
        if self.phase is Phase.SEND:
            self._ask(Phase.ASK_AND_SEND, now)
        self.hello.in_flight = False
        return []

    def link_regained(self, now: float) -> list[Action]:
        """A new connection: ask the receiver at once what it holds."""
        if self.phase is Phase.SEND:
            self._ask(Phase.ASK_AND_SEND, now)
        elif self.phase.asking:
            self.hello.in_flight, self.hello.due = False, now
        return []

    # -- the receiver ----------------------------------------------------------------------
    def answered(self, holdings: Holdings, now: float) -> list[Action]:
        """A ``recv`` answer: take what the receiver holds; an answer to the latest init
        ends the asking."""
        if self.phase.ended:
            return []
        self.hello.heard_at = now
        newest = self._take_holdings(holdings)
        self.window.lost_before(newest)
        if holdings.q is not None and holdings.q == self.hello.q:
            self.window.lost_before(self.hello.seq + 1)  # sent before the init, not held
            if self.phase.asking:
                self._send_phase()
        self.revision += 1
        return self._progress(now)

    def receiver_unknown(self, now: float) -> list[Action]:
        """The receiver has no such transfer (it lost it, or no init reached it): ask it,
        sending nothing else until it answers."""
        if self.phase.ended:
            return []
        self.hello.heard_at = now
        if self.phase is not Phase.ASK:
            self._ask(Phase.ASK, now)
        return []

    def receiver_done(self, now: float) -> list[Action]:
        """The receiver holds the whole file and checked it."""
        if self.phase.ended:
            return []
        self.hello.heard_at = now
        self.held.fill()
        return self._end(Ending.DONE)

    def receiver_failed(self, code: str | None, msg: str | None, now: float) -> list[Action]:
        """The receiver gave the transfer up."""
        if self.phase.ended:
            return []
        self.hello.heard_at = now
        return self._end(Ending.REFUSED, code, msg)

    # -- this side ---------------------------------------------------------------------------
    def cancel(self, why: str) -> list[Action]:
        return [] if self.phase.ended else self._end(Ending.CANCELLED, msg=why)

    def broken(self, why: str) -> list[Action]:
        """This side cannot read what it sends."""
        return [] if self.phase.ended else self._end(Ending.BROKEN, msg=why)

    def tick(self, now: float, wall: float) -> list[Action]:
        """Time passes: the deadline, and silence while chunks are out (a window lost
        somewhere between the broker and the receiver, or a receiver that restarted)."""
        if self.phase.ended:
            return []
        if self.deadline.passed(wall):
            return self._end(Ending.DEADLINE)
        silent = now - self.hello.heard_at
        waiting = self.window.unsettled or self.held.complete
        if self.phase is Phase.SEND and waiting and silent > self.tuning.ack_timeout_s:
            self.hello.heard_at = now
            self._ask(Phase.ASK, now)
            return [Silence(silent)]
        return []

    # -- named steps -------------------------------------------------------------------------
    def _ask(self, phase: Phase, now: float) -> None:
        """Ask the receiver what it holds; until it answers, chunks out are in limbo."""
        self.window.to_limbo()
        self.phase = phase
        self.hello.in_flight, self.hello.due = False, now
        self.hello.backoff.reset()

    def _send_phase(self) -> None:
        self.phase = Phase.SEND
        self.hello.in_flight = False
        self.hello.backoff.reset()
        self.window.settle_limbo(self.held)

    def _take_holdings(self, holdings: Holdings) -> int:
        """Mark what the receiver holds; the newest sequence number it acknowledges."""
        chunks = self.manifest.chunks
        held = self.held
        in_ranges: set[int] = set()
        for a, b in holdings.ranges:
            in_ranges.update(range(max(a, 0), min(b, chunks)))
        n = min(holdings.n, chunks)
        bound = max(n, max((b for _a, b in holdings.ranges), default=0))
        start = 0 if n < held.cumulative else held.cumulative  # fewer than before: look again
        held.cumulative = n
        if len(holdings.ranges) >= MAX_ACK_RANGES:
            end = min(bound, chunks)  # the list may stop short: nothing known beyond it
        else:
            end = min(max(bound, held.hi), chunks)
        newest = 0
        for idx in range(start, end):
            has = idx < n or idx in in_ranges
            if held.mark(idx, has) and not has:
                self.window.missing(idx)  # the receiver dropped it (found it damaged)
            if has:
                newest = max(newest, self.window.acknowledge(idx))
        return newest

    def _progress(self, now: float) -> list[Action]:
        frac, last = self.held.fraction, self._reported
        if frac >= 1.0:
            return []
        if frac - last.fraction >= PROGRESS_STEP or (
            now - last.at >= PROGRESS_EVERY_S and frac > last.fraction
        ):
            last.fraction, last.at = frac, now
            return [Progress(frac)]
        return []

    def _end(self, ending: Ending, code: str | None = None, msg: str | None = None) -> list[Action]:
        self.phase = Phase.DONE if ending is Ending.DONE else Phase.FAILED
        self.revision += 1
        fraction = 1.0 if ending is Ending.DONE else self.held.fraction
        return [Finished(ending, fraction, code, msg)]


def take_ack(
    machine: SendMachine, ack: XferAck, now: float, receiver: str = "the receiving side"
) -> list[Action]:
    """Feed one of the receiving side's acks to ``machine``; the actions it gives
    (``receiver`` names that side in a refusal that came without a reason)."""
    if ack.state == XferAckState.DONE:
        return machine.receiver_done(now)
    if ack.state == XferAckState.FAILED:
        why = ack.detail or f"{receiver} gave up the transfer"
        return machine.receiver_failed(ack.code or ErrorCode.FAILED, why, now)
    if ack.state == XferAckState.UNKNOWN:
        return machine.receiver_unknown(now)
    return machine.answered(Holdings(ack.held, tuple(ack.ranges), ack.asking), now)
