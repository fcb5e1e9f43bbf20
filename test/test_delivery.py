"""The no-loss machinery of :mod:`naf_ros.core.delivery` without DDS: outbox, producer, sequencer.

These are the rules the fault-injection test relies on; here each rule is driven directly,
including the interleavings a real graph only produces by chance. The checkpoint files they
pair with are tested in test_persist.py, the learner node that uses them in
test_learner_node.py.
"""

from __future__ import annotations

import numpy as np

from naf_ros.core.delivery import Outbox, Producer, Sequencer
from naf_ros.core.episodes import GAP, OK, RESTART, TOO_MANY_PRODUCERS, SequenceTracker


# --- outbox -----------------------------------------------------------------------------------
def test_outbox_keeps_until_acked_and_reports_overflow():
    box = Outbox(capacity=5)
    for seq in range(5):
        assert box.add(seq, np.array([seq]), now=0.0)
    assert [e.seq for e in box.after(1)] == [2, 3, 4]
    assert [e.seq for e in box.after(-1, limit=2)] == [0, 1]
    assert box.ack(2) == 3 and len(box) == 2 and box.first_seq == 3
    assert box.after(10) == [] and box.oldest_after(3).seq == 4
    for seq in range(5, 9):
        box.add(seq, np.array([seq]))
    assert not box.add(9, np.array([9]))  # full: the oldest goes, and it is counted
    assert box.overflow == 2 and box.first_seq == 5 and box.last_seq == 9
    assert [e.seq for e in box.after(0)] == [5, 6, 7, 8, 9]  # the dropped ones cannot be re-sent
    box.add(0, np.array([0]))  # a new sequence (restarted producer) replaces the old one
    assert len(box) == 1 and box.first_seq == 0


# --- producer ---------------------------------------------------------------------------------
warned: list[str] = []  # what producers logged as warnings


def producer_with(n: int, capacity: int = 100, batch: int = 500, timeout: float = 5.0):
    """A producer that published ``n`` transitions of episode 3 at time 0."""
    prod = Producer(capacity, resend_timeout=timeout, resend_batch=batch, warn=warned.append)
    for _ in range(n):
        prod.add(3, np.zeros(2), now=0.0)
    return prod


def test_producer_numbers_transitions_and_resends_to_a_new_learner():
    prod = producer_with(10, batch=4)
    assert prod.seq == 10 and prod.first_episode == 3
    prod.on_progress(1.0, last_seq=9, durable_seq=4, last_episode=3, now=1.0)
    assert prod.acked == 9 and prod.durable == 4 and len(prod.outbox) == 5
    assert prod.due_resend(lambda: True, now=1.2) == []  # all trained on: nothing to send
    # The learner restarts (new id) from a checkpoint that holds seq 0..4 only.
    prod.on_progress(2.0, last_seq=4, durable_seq=4, last_episode=3, now=2.0)
    assert prod.acked == 4 and "restarted at seq 4: re-sending 5" in warned[-1]
    assert prod.due_resend(lambda: False, now=2.1) == []  # not subscribed yet: postponed
    first = prod.due_resend(lambda: True, now=2.2)
    assert [e.seq for e in first] == [5, 6, 7, 8]  # one batch per call
    assert [e.seq for e in prod.due_resend(lambda: True, now=2.4)] == [9]
    assert prod.due_resend(lambda: True, now=2.6) == [] and prod.outbox.resent == 5
    assert all(e.sent >= 2.2 for e in prod.outbox.after(4))


def test_producer_resends_after_a_live_learner_stays_silent():
    prod = producer_with(0, timeout=5.0)
    prod.on_progress(1.0, last_seq=None, now=0.0)  # the learner is there before we send
    for _ in range(6):
        prod.add(3, np.zeros(2), now=0.0)
    prod.on_progress(1.0, last_seq=2, durable_seq=-1, last_episode=3, now=1.0)
    prod.on_progress(1.0, last_seq=2, now=4.0)  # alive, but acknowledges nothing new
    assert prod.due_resend(lambda: True, now=4.5) == []  # not quiet for resend_timeout yet
    prod.on_progress(1.0, last_seq=2, now=6.5)
    assert [e.seq for e in prod.due_resend(lambda: True, now=6.5)] == [3, 4, 5]
    assert "acknowledged nothing after seq 2" in warned[-1]
    prod.on_progress(1.0, last_seq=2, now=7.0)
    assert prod.due_resend(lambda: True, now=7.0) == []  # the re-send restarted the wait
    # A learner that stopped reporting is dead: its successor's new id triggers re-sends.
    assert prod.due_resend(lambda: True, now=20.0) == []


def test_producer_counts_fallback_resends_in_a_row_the_learner_does_not_take():
    prod = producer_with(0, timeout=5.0, batch=2)
    prod.on_progress(1.0, last_seq=None, now=0.0)
    for _ in range(3):
        prod.add(3, np.zeros(2), now=0.0)
    t = 0.0
    for round_ in (1, 2, 3):  # alive, never acknowledging: each round is one more fruitless
        t += 5.5
        prod.on_progress(1.0, last_seq=None, now=t)
        assert [e.seq for e in prod.due_resend(lambda: True, now=t)] == [0, 1]
        assert [e.seq for e in prod.due_resend(lambda: True, now=t + 0.2)] == [2]
        assert prod.fruitless == round_  # the round's second batch is not a new round
    t += 5.5
    prod.on_progress(1.0, last_seq=None, now=t)
    assert prod.due_resend(lambda: False, now=t) == []  # postponed: not counted
    assert prod.fruitless == 3
    prod.on_progress(1.0, last_seq=0, last_episode=3, now=t + 1)  # it took one: reset
    assert prod.fruitless == 0
    t += 7.0
    prod.on_progress(1.0, last_seq=0, last_episode=3, now=t)
    assert [e.seq for e in prod.due_resend(lambda: True, now=t)] == [1, 2]
    assert prod.fruitless == 1
    prod.on_progress(2.0, last_seq=None, now=t + 1)  # a new learner: a fresh start
    assert prod.fruitless == 0
    # Re-sends to a new learner are not the fallback and never count.
    assert prod.due_resend(lambda: True, now=t + 1.2) != [] and prod.fruitless == 0


def test_after_a_new_writer_the_next_fallback_waits_a_full_timeout():
    prod = producer_with(0, timeout=5.0)
    prod.on_progress(1.0, last_seq=None, now=0.0)
    prod.add(3, np.zeros(2), now=0.0)
    prod.on_progress(1.0, last_seq=None, now=5.5)
    assert prod.due_resend(lambda: True, now=5.5) != [] and prod.fruitless == 1
    prod.writer_renewed(now=11.0)  # due again at 10.5; the new writer pushes that back
    assert prod.fruitless == 0
    prod.on_progress(1.0, last_seq=None, now=15.9)
    assert prod.due_resend(lambda: True, now=15.9) == []
    prod.on_progress(1.0, last_seq=None, now=16.1)
    assert [e.seq for e in prod.due_resend(lambda: True, now=16.1)] == [0]
    assert prod.fruitless == 1


def test_producer_ack_forgets_up_to_durable_and_ignores_a_previous_run():
    prod = producer_with(8)
    # An entry about this arm's previous process (older episode) acknowledges nothing.
    prod.on_progress(1.0, last_seq=50, durable_seq=50, last_episode=2, now=1.0)
    assert prod.acked == -1 and len(prod.outbox) == 8 and prod.episode_hint == 2
    prod.on_progress(1.0, last_seq=6, durable_seq=3, last_episode=3, now=2.0)
    assert prod.outbox.first_seq == 4 and prod.durable == 3 and prod.acked == 6
    assert prod.unacked()  # seq 7 is not trained on yet
    prod.on_progress(1.0, last_seq=7, durable_seq=7, last_episode=3, now=3.0)
    assert len(prod.outbox) == 0 and not prod.unacked()
    prod.on_progress(1.0, last_seq=5, durable_seq=5, last_episode=3, now=4.0)
    assert prod.acked == 7, "acknowledgements never go back for the same learner"


def test_producer_overflow_is_counted():
    prod = producer_with(3, capacity=3)
    assert not prod.add(3, np.zeros(2), now=0.0)
    assert not prod.add(3, np.zeros(2), now=0.0)
    assert prod.outbox.overflow == 2 and prod.outbox.first_seq == 2 and prod.seq == 5


def test_producer_stale_pacing_clears_on_any_sign_of_life():
    prod = producer_with(3)
    prod.stale = True
    prod.on_progress(None, last_seq=None, now=1.0)  # no heartbeat id, no entry for us
    assert not prod.stale
    prod.on_progress(1.0, last_seq=None, now=2.0)  # a learner appeared, holding nothing
    assert prod.acked == -1 and "appeared at seq -1: re-sending 3" in warned[-1]
    assert [e.seq for e in prod.due_resend(lambda: True, now=2.0)] == [0, 1, 2]


# --- sequencer --------------------------------------------------------------------------------
def offer_all(seqr: Sequencer, items, now: float = 0.0, producer: int = 0):
    """Offer (seq, episode, t) triples; returns (delivered seqs, statuses, rejections)."""
    seqs, statuses, rejected = [], [], []
    for seq, episode, t in items:
        out, why = seqr.offer(producer, seq, episode, t, payload=seq, now=now)
        seqs += [d.seq for d in out]
        statuses += [d.status for d in out]
        if why:
            rejected.append((seq, why))
    return seqs, statuses, rejected


def stream(start: int, stop: int, T: int = 10, episode0: int = 0):
    """(seq, episode, t) of a producer whose episodes are T long, seq from 0."""
    return [(s, episode0 + s // T, s % T) for s in range(start, stop)]


def test_in_order_stream_passes_straight_through():
    seqr = Sequencer(gap_timeout_s=30.0)
    seqs, statuses, rejected = offer_all(seqr, stream(0, 50))
    assert seqs == list(range(50)) and set(statuses) == {OK} and not rejected
    assert seqr.last_episode == {0: 4}


def test_restarted_learner_gets_resends_interleaved_with_live_in_order():
    """Resumed at 19; live 40.. arrive before the re-sent 20..39: nothing lost, no gap."""
    seqr = Sequencer(gap_timeout_s=30.0)
    seqr.resume(0, 19, last_episode=1)
    live = stream(40, 45)
    resent = stream(20, 40)
    seqs, statuses, rejected = offer_all(seqr, live[:3] + resent[:10] + live[3:] + resent[10:])
    assert seqs == list(range(20, 45)) and set(statuses) == {OK} and not rejected
    # A second re-send of the same numbers (timeout path) is all duplicates.
    _, _, rejected = offer_all(seqr, stream(20, 45))
    assert [why for _, why in rejected] == ["duplicate"] * 25
    assert (seqr.tracker.gaps, seqr.tracker.lost, seqr.held) == (0, 0, 0)


def test_gap_declared_only_after_the_timeout_then_late_copies_are_dropped():
    seqr = Sequencer(gap_timeout_s=5.0)
    offer_all(seqr, stream(0, 10))
    seqs, _, _ = offer_all(seqr, stream(13, 16), now=100.0)
    assert seqs == [] and seqr.held == 3
    assert seqr.expire(now=104.0) == []  # still waiting
    out = seqr.expire(now=105.0)
    assert [d.seq for d in out] == [13, 14, 15] and out[0].status == GAP and out[0].missing == 3
    assert (seqr.tracker.gaps, seqr.tracker.lost) == (1, 3)
    _, _, rejected = offer_all(seqr, [(11, 1, 1)])
    assert rejected == [(11, "out_of_order")]


def test_zero_timeout_declares_gaps_at_once():
    seqr = Sequencer(gap_timeout_s=0.0)
    seqs, statuses, _ = offer_all(seqr, stream(0, 3) + stream(6, 8))
    assert seqs == [0, 1, 2, 6, 7] and statuses[3] == GAP and seqr.tracker.lost == 3


def test_too_many_held_declares_the_gap():
    seqr = Sequencer(gap_timeout_s=1e9, max_held=4)
    offer_all(seqr, stream(0, 2))
    seqs, statuses, _ = offer_all(seqr, stream(5, 10))
    assert seqs == [5, 6, 7, 8, 9] and statuses[0] == GAP and seqr.held == 0


def test_restart_is_a_new_episode_number_and_a_resent_seq0_is_not():
    seqr = Sequencer(gap_timeout_s=30.0)
    offer_all(seqr, stream(0, 5))
    # A re-send of seq 0 (episode 0, still the current one) is a duplicate, not a restart.
    _, _, rejected = offer_all(seqr, [(0, 0, 0)])
    assert rejected == [(0, "duplicate")]
    offer_all(seqr, stream(5, 25))  # episodes 0..2
    # Held numbers of the old sequence, then the producer restarts at episode 7.
    offer_all(seqr, stream(27, 29))
    seqs, statuses, _ = offer_all(seqr, [(0, 7, 0), (1, 7, 1)])
    assert seqs == [27, 28, 0, 1] and statuses == [GAP, OK, RESTART, OK]
    assert seqr.tracker.restarts == 1 and seqr.tracker.lost == 2  # 25, 26 never came
    assert seqr.last_episode[0] == 7


def test_restart_of_a_producer_that_does_not_count_episodes():
    """Legacy producers restart at episode 0: still a restart once they got past episode 0."""
    seqr = Sequencer()
    offer_all(seqr, stream(0, 30))
    seqs, statuses, _ = offer_all(seqr, [(0, 0, 0), (1, 0, 1)])
    assert seqs == [0, 1] and statuses == [RESTART, OK] and seqr.tracker.restarts == 1
    # After one transition only, a newer episode still tells a restart apart.
    seqr = Sequencer()
    offer_all(seqr, [(0, 3, 0)])
    _, statuses, _ = offer_all(seqr, [(0, 4, 0)])
    assert statuses == [RESTART]


def test_producers_are_independent_and_bounded():
    seqr = Sequencer(gap_timeout_s=30.0, tracker=SequenceTracker(max_producers=2))
    offer_all(seqr, stream(0, 5), producer=0)
    seqs, _, _ = offer_all(seqr, stream(3, 5), producer=1)  # first heard of mid-stream: held
    assert seqs == [] and seqr.held == 2
    assert offer_all(seqr, stream(0, 1), producer=2)[2] == [(0, TOO_MANY_PRODUCERS)]
    seqs, _, _ = offer_all(seqr, stream(0, 3), producer=1)
    assert seqs == [0, 1, 2, 3, 4]
