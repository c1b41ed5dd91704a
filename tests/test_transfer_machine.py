"""The sending side's state machine on its own: no broker, no threads, no clock.

Time and events are arguments, so every case here is exact: which message is offered next,
which chunks go again, when the init is asked again (a seeded backoff), what ends how.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from roadside.agent.transfer.store import TransferRecord, TransferStore
from roadside.backoff import Backoff
from roadside.transfer.machine import (
    ChunkToken,
    Deadline,
    Ending,
    Finished,
    Holdings,
    InitToken,
    Manifest,
    Phase,
    Progress,
    SendChunk,
    SendInit,
    SendMachine,
    Silence,
    Token,
    Tuning,
)
from roadside.transfer.pacing import TokenBucket
from roadside.wire.transfer import MAX_ACK_RANGES

CS = 1024
CHUNKS = 8
SIZE = CHUNKS * CS - 100  # the last chunk is shorter
DEADLINE = 10_000.0  # wall clock, epoch s
TIMEOUT = 30.0
SEED = 7


def make(
    *, window: int = 4, resumed: bool = False, held: bytes | None = None, chunks: int = CHUNKS
) -> SendMachine:
    return SendMachine(
        Manifest(chunks * CS - 100, CS),
        Deadline(DEADLINE),
        Tuning(window=window, ack_timeout_s=TIMEOUT),
        Backoff(5.0, 60.0, random.Random(SEED)),
        now=0.0,
        held=held,
        resumed=resumed,
    )


def send_all(m: SendMachine, now: float) -> list[tuple[SendInit | SendChunk, Token]]:
    """Take every offer the machine makes at ``now`` (the link has room for all)."""
    out = []
    while (offer := m.offer(now)) is not None:
        out.append((offer, m.sent(offer, now)))
        assert len(out) < 1000, "the machine keeps offering"
    return out


def chunks_of(sent: list[tuple[SendInit | SendChunk, Token]]) -> list[int]:
    return [o.index for o, _t in sent if isinstance(o, SendChunk)]


def inits_of(sent: list[tuple[SendInit | SendChunk, Token]]) -> list[int]:
    return [o.q for o, _t in sent if isinstance(o, SendInit)]


def sending(window: int = 4) -> tuple[SendMachine, list[ChunkToken]]:
    """A new transfer whose first init was answered (nothing held) and whose window is out."""
    m = make(window=window)
    first = send_all(m, 0.0)
    assert inits_of(first) == [1]
    m.answered(Holdings(0, (), q=1), 0.1)
    assert m.phase is Phase.SEND
    tokens = [t for _o, t in first if isinstance(t, ChunkToken)]
    return m, tokens


def test_a_new_transfer_announces_itself_and_fills_the_window_meanwhile() -> None:
    m = make()
    assert m.phase is Phase.ASK_AND_SEND and m.phase.label == "hello"
    sent = send_all(m, 0.0)
    assert inits_of(sent) == [1]
    assert chunks_of(sent) == [0, 1, 2, 3]  # a window of 4, then nothing until an answer
    assert [t.seq for _o, t in sent if isinstance(t, ChunkToken)] == [1, 2, 3, 4]
    last = make(chunks=1)
    (_, (offer, _t)) = send_all(last, 0.0)
    assert isinstance(offer, SendChunk) and (offer.offset, offer.length) == (0, CS - 100)
    offers = [o for o, _t in sent if isinstance(o, SendChunk)]
    assert [(o.offset, o.length, o.again) for o in offers[:2]] == [(0, CS, False), (CS, CS, False)]


def test_the_answer_moves_the_window_on() -> None:
    m, _tokens = sending()
    actions = m.answered(Holdings(2, (), q=None), 1.0)
    assert actions == [Progress(2 / CHUNKS)]
    assert chunks_of(send_all(m, 1.0)) == [4, 5]  # two acknowledged, two more out
    assert m.fraction == 2 / CHUNKS


def test_a_selective_ack_sends_only_the_gap_again_at_once() -> None:
    m, _tokens = sending()
    # Chunk 1 was lost on the way: the receiver holds 0, then 2 and 3.
    m.answered(Holdings(1, ((2, 4),), q=None), 1.0)
    again = send_all(m, 1.0)
    offers = [o for o, _t in again if isinstance(o, SendChunk)]
    assert [(o.index, o.again) for o in offers] == [(1, True), (4, False), (5, False), (6, False)]
    assert m.fraction == 3 / CHUNKS


def test_a_chunk_acknowledged_before_an_earlier_one_means_the_earlier_was_lost() -> None:
    m, tokens = sending(window=8)
    assert [t.index for t in tokens] == list(range(8))
    # The receiver's answer covers chunk 5, not 4: one connection keeps order, so 0-4 were
    # lost (their sequence numbers are older than 5's).
    m.answered(Holdings(0, ((5, 6),), q=None), 1.0)
    assert chunks_of(send_all(m, 1.0)) == [0, 1, 2, 3, 4]


def test_a_duplicate_ack_changes_nothing() -> None:
    m, _tokens = sending()
    ack = Holdings(1, ((2, 4),), q=None)
    assert m.answered(ack, 1.0) == [Progress(3 / CHUNKS)]
    first = chunks_of(send_all(m, 1.0))
    assert m.answered(ack, 1.1) == []  # no new progress ...
    assert chunks_of(send_all(m, 1.1)) == []  # ... and nothing sent twice
    assert first == [1, 4, 5, 6] and m.fraction == 3 / CHUNKS


def test_a_late_answer_to_an_older_init_does_not_end_the_asking() -> None:
    m = make(resumed=True)
    assert inits_of(send_all(m, 0.0)) == [1]
    m.link_lost(1.0)
    m.link_regained(2.0)
    assert inits_of(send_all(m, 2.0)) == [2]
    m.answered(Holdings(3, (), q=1), 2.5)  # what it held when the first init arrived
    assert m.phase is Phase.ASK and m.offer(2.5) is None  # still waiting for the answer to 2
    m.answered(Holdings(3, (), q=2), 2.6)
    assert m.phase is Phase.SEND
    assert chunks_of(send_all(m, 2.6)) == [3, 4, 5, 6]


def test_acks_after_the_end_are_ignored() -> None:
    m, _tokens = sending()
    (done,) = m.receiver_done(1.0)
    assert done == Finished(Ending.DONE, 1.0)
    assert m.phase is Phase.DONE and m.held.complete
    assert m.answered(Holdings(0, (), q=1), 1.1) == []
    assert m.receiver_unknown(1.2) == [] and m.receiver_failed("failed", "late", 1.3) == []
    assert m.cancel("too late") == [] and m.tick(1e6, DEADLINE + 1) == []
    assert m.offer(2.0) is None and m.phase is Phase.DONE


def test_a_window_lost_with_the_link_goes_again_only_where_the_answer_says() -> None:
    m, tokens = sending()
    m.link_lost(1.0)  # chunks 0-3 out: their fate is unknown (limbo)
    assert m.phase is Phase.ASK_AND_SEND and m.window.limbo == {0, 1, 2, 3}
    for token in tokens:  # the uplink hands back what was in flight on the old connection
        m.undelivered(token, 2.0)
    m.link_regained(2.0)
    sent = send_all(m, 2.0)
    assert inits_of(sent) == [2]  # ask at once, and meanwhile send chunks never sent
    assert chunks_of(sent) == [4, 5, 6, 7]
    m.answered(Holdings(2, ((4, 5),), q=2), 3.0)  # 2 and 3 never arrived; 5-7 may yet
    assert m.phase is Phase.SEND and not m.window.limbo
    assert chunks_of(send_all(m, 3.0)) == [2]  # the window holds 5-7 and 2; 3 is next
    assert sorted(m.window.outstanding) == [2, 5, 6, 7] and m.window.retx == [3]
    assert m.fraction == 3 / CHUNKS


def test_chunks_sent_before_an_answered_init_and_not_held_go_again_at_once() -> None:
    """The first init and window reached a broker where the receiver had not subscribed yet:
    the answer to the second init holds none of them, so they go again now, not after the
    ack timeout. Chunks sent after the answered init may still be on their way: they stay."""
    m = make()
    first = send_all(m, 0.0)
    assert inits_of(first) == [1] and chunks_of(first) == [0, 1, 2, 3]
    for _offer, token in first:
        m.delivered(token)  # the broker took them all (and dropped them)
    due = m.hello.due
    assert send_all(m, due - 0.01) == []  # the window is full, the second init not due
    second = send_all(m, due)
    assert inits_of(second) == [2] and chunks_of(second) == []
    m.answered(Holdings(0, (), q=2), due + 0.5)
    assert m.phase is Phase.SEND
    offers = [o for o, _t in send_all(m, due + 0.5) if isinstance(o, SendChunk)]
    assert [(o.index, o.again) for o in offers] == [(0, True), (1, True), (2, True), (3, True)]

    later = make(window=6)
    send_all(later, 0.0)  # init 1, then chunks 0-5
    later.answered(Holdings(2, (), q=1), 1.0)  # 0 and 1 came before init 1; 2-5 followed it
    assert chunks_of(send_all(later, 1.0)) == [6, 7] and later.window.retx == []


def test_a_window_nobody_acknowledges_is_asked_about_after_the_timeout() -> None:
    m, _tokens = sending()
    assert m.tick(TIMEOUT, 100.0) == []  # 29.9 s after the last word: not yet
    (silence,) = m.tick(TIMEOUT + 0.2, 100.0)
    assert isinstance(silence, Silence) and silence.seconds == pytest.approx(TIMEOUT + 0.1)
    assert m.phase is Phase.ASK
    sent = send_all(m, TIMEOUT + 0.2)
    assert inits_of(sent) == [2] and chunks_of(sent) == []  # nothing else until it answers
    m.answered(Holdings(0, (), q=2), TIMEOUT + 1)
    assert chunks_of(send_all(m, TIMEOUT + 1)) == [0, 1, 2, 3]  # the whole window, again


def test_cancel_mid_transfer_ends_it_and_tells_the_receiver() -> None:
    m, _tokens = sending()
    m.answered(Holdings(2, (), q=None), 1.0)
    (end,) = m.cancel("cancelled on request")
    assert end == Finished(Ending.CANCELLED, 2 / CHUNKS, None, "cancelled on request")
    assert end.ending.tells_receiver
    assert m.phase is Phase.FAILED and m.offer(2.0) is None
    assert m.answered(Holdings(4, (), q=None), 2.0) == []


def test_the_deadline_ends_it_and_tells_the_receiver() -> None:
    m = make()
    send_all(m, 0.0)
    assert m.tick(1.0, DEADLINE - 0.001) == []
    (end,) = m.tick(1.5, DEADLINE)
    assert end.ending is Ending.DEADLINE and end.ending.tells_receiver
    assert m.phase is Phase.FAILED and m.offer(2.0) is None


def test_a_receiver_that_gives_up_is_not_told_again() -> None:
    m, _tokens = sending()
    (end,) = m.receiver_failed("failed", "disk full", 1.0)
    assert end == Finished(Ending.REFUSED, 0.0, "failed", "disk full")
    assert not end.ending.tells_receiver


def test_a_restart_resumes_from_the_stored_state_and_sends_nothing_held(tmp_path: Path) -> None:
    # Before the restart: 0-4 acknowledged, and stored.
    before = make()
    send_all(before, 0.0)
    before.answered(Holdings(4, (), q=1), 1.0)
    send_all(before, 1.0)
    before.answered(Holdings(5, (), q=None), 2.0)
    store = TransferStore(tmp_path / "transfers.db")
    rec = TransferRecord(
        xid="01J9ZTESTTESTTESTTESTTEST0",
        kind="clip",
        path=str(tmp_path / "x.mp4"),
        name="x.mp4",
        size=SIZE,
        sha256="0" * 64,
        cs=CS,
        created=0.0,
        exp=DEADLINE,
    )
    store.add(rec)
    rec.acked = bytearray(before.held.bits)
    store.save(rec)
    store.close()
    # After it: the same transfer from the store, resumed.
    store = TransferStore(tmp_path / "transfers.db")
    (loaded,) = store.sending()
    store.close()
    m = make(resumed=True, held=bytes(loaded.acked))
    assert loaded.manifest == m.manifest
    assert m.phase is Phase.ASK and m.fraction == 5 / CHUNKS
    assert inits_of(send_all(m, 0.0)) == [1]  # the init alone: nothing until the answer
    assert m.offer(100.0) is None  # its PUBACK is still out: no second init either
    # The receiver holds 0-2 only (3 and 4 were acknowledged, then found damaged).
    assert m.answered(Holdings(3, (), q=1), 1.0) == [Progress(3 / CHUNKS)]
    assert chunks_of(send_all(m, 1.0)) == [3, 4, 5, 6]
    assert m.fraction == 3 / CHUNKS


def test_a_stored_bitmap_of_the_wrong_size_is_ignored() -> None:
    m = make(resumed=True, held=b"\xff")  # 8 chunks need one byte ...
    assert m.fraction == 1.0
    m = make(resumed=True, held=b"", chunks=16)  # ... 16 need two
    assert m.fraction == 0.0


def test_a_receiver_answering_unknown_is_asked_before_anything_else_goes() -> None:
    m, _tokens = sending()
    m.answered(Holdings(2, (), q=None), 1.0)
    assert chunks_of(send_all(m, 1.0)) == [4, 5]
    assert m.receiver_unknown(2.0) == []  # e.g. it lost its state: 2-5 are in limbo
    assert m.phase is Phase.ASK and m.window.limbo == {2, 3, 4, 5}
    sent = send_all(m, 2.0)
    assert inits_of(sent) == [2] and chunks_of(sent) == []
    m.receiver_unknown(2.5)  # a second "unknown" while asking changes nothing
    assert m.offer(2.5) is None
    m.answered(Holdings(0, (), q=2), 3.0)  # the init made it anew: it holds nothing
    assert m.phase is Phase.SEND
    assert chunks_of(send_all(m, 3.0)) == [0, 1, 2, 3]  # limbo and lost ones first, in order
    assert m.fraction == 0.0


def test_an_unanswered_init_is_asked_again_after_backoff_waits() -> None:
    twin = Backoff(5.0, 60.0, random.Random(SEED))  # the same draws as the machine's
    waits = [twin.next() for _ in range(6)]
    assert 2.5 <= waits[0] <= 5.0 and 30.0 <= waits[-1] <= 60.0  # doubling, capped, jittered
    m = make(resumed=True)
    at = 0.0
    for q, wait in enumerate(waits, start=1):
        ((offer, token),) = send_all(m, at)
        assert offer == SendInit(q) and token == InitToken(q)
        m.delivered(token)  # the broker has it; the receiver does not answer
        assert m.hello.due == pytest.approx(at + wait)
        assert m.offer(at + wait - 0.001) is None
        at += wait
    # An answer ends the asking and resets the backoff: the next asking starts short again.
    m.answered(Holdings(0, (), q=6), at)
    m.link_lost(at + 1)
    m.link_regained(at + 2)
    ((offer, token), *_chunks) = send_all(m, at + 2)
    assert offer == SendInit(7)
    assert 2.5 <= m.hello.due - (at + 2) <= 5.0


def test_an_init_the_link_lost_goes_again_at_once() -> None:
    m = make(resumed=True)
    (_offer, token), *_ = send_all(m, 0.0)
    assert m.offer(1.0) is None  # in flight
    m.undelivered(token, 1.0)
    assert m.offer(1.0) == SendInit(2)


def test_a_chunk_the_link_lost_while_sending_starts_an_asking() -> None:
    m, tokens = sending()
    assert m.undelivered(ChunkToken(2, 99), 1.0) == []  # a send superseded: nothing to do
    assert m.phase is Phase.SEND and 2 in m.window.outstanding
    m.undelivered(tokens[1], 1.0)  # e.g. the broker refused it
    assert m.phase is Phase.ASK_AND_SEND and m.window.limbo == {0, 1, 2, 3}
    assert inits_of(send_all(m, 1.0)) == [2]


def test_a_chunk_the_receiver_drops_again_is_sent_again() -> None:
    m, _tokens = sending()
    m.answered(Holdings(4, (), q=None), 1.0)
    send_all(m, 1.0)
    m.answered(Holdings(2, ((3, 6),), q=None), 2.0)  # 2 failed its check at the receiver
    assert m.fraction == 5 / CHUNKS and not m.held.has(2)
    assert chunks_of(send_all(m, 2.0)) == [2]


def test_a_full_list_of_ranges_says_nothing_beyond_its_end() -> None:
    chunks = 2 * MAX_ACK_RANGES + 10
    m = make(window=chunks, chunks=chunks)
    send_all(m, 0.0)
    ranges = tuple((2 * i, 2 * i + 1) for i in range(MAX_ACK_RANGES))  # every other chunk
    m.answered(Holdings(0, ranges, q=1), 1.0)
    # Odd chunks up to the last range are missing; the last 10 are not judged yet.
    again = chunks_of(send_all(m, 1.0))
    assert again == list(range(1, 2 * MAX_ACK_RANGES - 1, 2))


def test_progress_is_reported_every_tenth_or_every_15_seconds() -> None:
    m = make(window=100, chunks=100)
    send_all(m, 0.0)
    assert m.answered(Holdings(0, (), q=1), 0.0) == [Progress(0.0)]
    assert m.answered(Holdings(5, (), q=None), 1.0) == []
    assert m.answered(Holdings(10, (), q=None), 2.0) == [Progress(0.1)]
    assert m.answered(Holdings(11, (), q=None), 16.0) == []  # 14 s since the last one
    assert m.answered(Holdings(12, (), q=None), 17.0) == [Progress(0.12)]
    assert m.answered(Holdings(100, (), q=None), 18.0) == []  # complete: "done" says it


def test_the_token_bucket_caps_the_rate() -> None:
    bucket = TokenBucket(kbps=80, burst=2000, now=0.0)  # 10,000 bytes/s
    assert bucket.take(2000, 0.0)
    assert not bucket.take(1000, 0.05)  # 500 bytes back after 50 ms
    assert bucket.take(1000, 0.1)
    assert TokenBucket(kbps=0, burst=1, now=0.0).take(10**9, 0.0)  # no cap
