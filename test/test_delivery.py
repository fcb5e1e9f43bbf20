"""The no-loss machinery without DDS: outbox, producer, sequencer, checkpoint files, segments.

These are the rules the fault-injection test relies on; here each rule is driven directly,
including the interleavings a real graph only produces by chance. The last test builds the
learner node in-process (own context, no peers) for its checkpoint and warm-start fallbacks.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from naf_ros.core.delivery import Outbox, Producer, Sequencer
from naf_ros.core.episodes import GAP, OK, RESTART, TOO_MANY_PRODUCERS, SequenceTracker
from naf_ros.ros.persist import CheckpointFile


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


# --- checkpoint files -------------------------------------------------------------------------
def lines_of(log: list[str], text: str) -> list[str]:
    return [line for line in log if text in line]


def test_checkpoint_keeps_prev_and_falls_back_to_it(tmp_path):
    log: list[str] = []
    ck = CheckpointFile(tmp_path / "node.pt", log.append)
    assert ck.save({"n": 1}) and not ck.prev.exists()  # nothing known good to keep yet
    assert ck.save({"n": 2}) and ck.prev.exists()
    assert ck.save({"n": 3})
    got = []
    assert CheckpointFile(tmp_path / "node.pt").load(got.append) == ck.path and got == [{"n": 3}]

    prev_bytes = ck.prev.read_bytes()
    ck.path.write_bytes(ck.path.read_bytes()[:-10])  # truncated newest
    got.clear()
    fresh = CheckpointFile(tmp_path / "node.pt", log.append)
    assert fresh.load(got.append) == fresh.prev and got == [{"n": 2}]
    assert len(lines_of(log, "checkpoint unusable")) == 1, log
    assert "checksum mismatch" in log[0] and "trying node.pt.prev" in log[0]
    (bad,) = tmp_path.glob("node.pt.bad-*")
    assert not ck.path.exists() and ck.prev.read_bytes() == prev_bytes  # nothing overwritten
    # The next save writes a new newest and keeps .prev as it was until the one after.
    assert fresh.save({"n": 4}) and ck.prev.read_bytes() == prev_bytes
    assert fresh.save({"n": 5})
    got.clear()
    CheckpointFile(tmp_path / "node.pt").load(got.append)
    assert got == [{"n": 5}] and bad.exists()


def test_version_mismatch_and_misfit_payloads_fall_back(tmp_path):
    import hashlib
    import io

    import torch

    from naf_ros.core import checkpoint as core_ckpt

    log: list[str] = []
    ck = CheckpointFile(tmp_path / "node.pt", log.append)
    ck.save({"kind": "mine", "n": 1})
    ck.save({"kind": "mine", "n": 2})
    # A checkpoint from a future format: intact, but version 99.
    buf = io.BytesIO()
    torch.save({"format": core_ckpt.FORMAT, "version": 99, "payload": {}}, buf)
    body = buf.getvalue()
    ck.path.write_bytes(core_ckpt._MAGIC + hashlib.sha256(body).digest() + body)

    def apply(p: dict) -> None:
        if p.get("kind") != "mine":
            raise ValueError(f"kind {p.get('kind')!r}")
        got.append(p["n"])

    got: list[int] = []
    assert CheckpointFile(tmp_path / "node.pt", log.append).load(apply).name == "node.pt.prev"
    assert got == [1] and "version 99" in log[0] and len(log) == 1
    # A payload the node cannot use (wrong kind) is set aside the same way.
    other = CheckpointFile(tmp_path / "other.pt")
    other.save({"kind": "theirs"})
    log.clear()
    assert CheckpointFile(tmp_path / "other.pt", log.append).load(apply) is None
    assert "ValueError: kind 'theirs'" in log[0] and "starting fresh" in log[0]


def test_unmovable_bad_checkpoint_blocks_saving(tmp_path, monkeypatch):
    ck = CheckpointFile(tmp_path / "node.pt")
    ck.path.write_bytes(b"garbage")

    def refuse(self, target):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "rename", refuse)
    log: list[str] = []
    ck = CheckpointFile(tmp_path / "node.pt", log.append)
    assert ck.load(lambda p: None) is None and "could not be moved aside" in log[0]
    assert not ck.save({"n": 1}) and "not saving over it" in ck.last_error
    assert ck.path.read_bytes() == b"garbage"


def test_failed_saves_are_counted_not_raised(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    ck = CheckpointFile(blocker / "run" / "node.pt")  # parent is a file: nothing can be made
    assert not ck.save({"n": 1}) and not ck.save({"n": 2})
    assert ck.failures == 2 and ck.saves == 0 and "cannot write" in ck.last_error
    assert ck.diagnostics()["checkpoint_failures"] == 2


def test_learner_resumes_from_prev_when_newest_is_corrupt(tmp_path):
    """The learner's real payload: a corrupt newest loses only the updates since .prev."""
    from naf_ros.config import config_from_dict
    from naf_ros.core.learner import Learner
    from naf_ros.envs.task import ReacherTask

    cfg = config_from_dict(
        {"agent": {"hidden": [16, 16], "batch_size": 8, "warmup_steps": 8, "updates_per_step": 1}}
    )
    task = ReacherTask()
    rng = np.random.default_rng(0)

    def transition(i: int) -> dict:
        obs = rng.standard_normal(13)
        return dict(obs=obs, action=rng.uniform(-1, 1, 3), reward=-1.0, next_obs=obs, t=i % 10,
                    terminal=False, truncated=i % 10 == 9)  # fmt: skip

    learner = Learner(cfg, 13, 3, 10, task.reward)
    ck = CheckpointFile(tmp_path / "learner_checkpoint.pt")
    for i in range(30):
        learner.add(transition(i))
        learner.learn()
    assert ck.save(learner.state_dict())
    at_prev = (learner.agent.updates, learner.counters.transitions)
    for i in range(30, 40):
        learner.add(transition(i))
        learner.learn()
    assert ck.save(learner.state_dict())
    raw = bytearray(ck.path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte in the newest
    ck.path.write_bytes(bytes(raw))

    log: list[str] = []
    fresh = Learner(cfg, 13, 3, 10, task.reward)
    assert CheckpointFile(ck.path, log.append).load(fresh.load_state_dict) == ck.prev
    assert (fresh.agent.updates, fresh.counters.transitions) == at_prev
    assert fresh.counters.episodes == 3
    assert len(fresh.replay) == 30 and len(log) == 1 and "checksum mismatch" in log[0]


def test_checkpoint_size_and_save_time_paper_network(tmp_path):
    """Measure: the learner's checkpoint with 200x200 networks and 10k transitions in R."""
    from naf_ros.config import config_from_dict
    from naf_ros.core.learner import Learner
    from naf_ros.envs.task import ReacherTask

    cfg = config_from_dict({"agent": {"hidden": [200, 200], "replay_capacity": 1_000_000}})
    learner = Learner(cfg, 13, 3, 50, ReacherTask().reward)
    n = 10_000
    rng = np.random.default_rng(1)
    obs = rng.standard_normal((n, 13))
    learner.replay.add_batch(obs, rng.uniform(-1, 1, (n, 3)), -rng.random(n), obs, np.zeros(n))
    for _ in range(20):  # populate Adam's moments, as a trained agent has them
        learner.agent.update(learner.replay.sample(64, rng))
    ck = CheckpointFile(tmp_path / "learner_checkpoint.pt")
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        assert ck.save(learner.state_dict())
        times.append(time.perf_counter() - t0)
    size = ck.path.stat().st_size
    t0 = time.perf_counter()
    fresh = Learner(cfg, 13, 3, 50, ReacherTask().reward)
    CheckpointFile(ck.path).load(fresh.load_state_dict)
    load_s = time.perf_counter() - t0
    assert len(fresh.replay) == n
    print(
        f"\nlearner checkpoint, 200x200 NAF + Adam + {n} transitions: {size / 1e6:.2f} MB, "
        f"save {np.median(times) * 1e3:.0f} ms (median of 3, incl. fsync and .prev link), "
        f"load+restore {load_s * 1e3:.0f} ms"
    )
    assert size < 20e6


# --- bag segments -----------------------------------------------------------------------------
def test_segments_rotate_and_unclosed_ones_are_set_aside(tmp_path):
    from naf_ros.bag.reader import read_transitions
    from naf_ros.bag.segments import SegmentedBag
    from naf_ros.ros.codec import encode_transition

    def tr(seq: int):
        return encode_transition(producer=0, seq=seq, episode=0, t=seq, obs=np.zeros(13),
                                 action=np.zeros(3), reward=0.0, next_obs=np.zeros(13),
                                 terminal=False, truncated=False)  # fmt: skip

    bag = SegmentedBag(tmp_path / "rec", "transitions")
    for seq in range(3):
        assert bag.write("transition", tr(seq), bag.stamp())
    bag.rotate()
    bag.write("transition", tr(3), bag.stamp())  # left open: a crash
    assert bag.segments_closed == 1
    again = SegmentedBag(tmp_path / "rec", "transitions")
    assert again.index == 2
    names = sorted(p.name for p in (tmp_path / "rec").iterdir())
    assert names == ["transitions_0000", "transitions_0001.incomplete"]
    assert [t["seq"] for t in read_transitions(tmp_path / "rec" / names[0], 13, 3)] == [0, 1, 2]
    # An unwritable folder: every write is counted as not recorded, nothing raised.
    blocker = tmp_path / "file"
    blocker.write_text("")
    broken = SegmentedBag(blocker / "rec", "transitions")
    assert not broken.write("transition", tr(0), broken.stamp())
    assert broken.not_recorded == 1 and broken.errors >= 1 and broken.last_error


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_read_only_folder(tmp_path):
    """Saving into a read-only run folder fails cleanly (skipped where root ignores modes)."""
    from support.faults import read_only

    with read_only(tmp_path) as ok:
        if not ok:
            pytest.skip("cannot make a read-only folder here")
        ck = CheckpointFile(tmp_path / "node.pt")
        assert not ck.save({"n": 1}) and ck.failures == 1
        assert not list(tmp_path.iterdir())


# --- the learner node, in-process (its own context, no peers) ----------------------------------
def make_learner_node(run_dir: Path, **params):
    import rclpy
    from rclpy.context import Context
    from rclpy.parameter import Parameter
    from support.ros import allocate_domain

    from naf_ros.ros.learner import LearnerNode

    lease, ctx = allocate_domain(), Context()
    rclpy.init(context=ctx, domain_id=lease.domain_id)
    overrides = [
        Parameter(k, value=v)
        for k, v in {
            "agent.hidden": [16, 16],
            "train.run_dir": str(run_dir),
            "checkpoint_every_s": 0.0,
            **params,
        }.items()
    ]
    node = LearnerNode(context=ctx, parameter_overrides=overrides)

    def close() -> None:
        node.destroy_node()
        rclpy.shutdown(context=ctx)
        lease.release()

    return node, close


def test_learner_node_falls_back_to_prev_and_skips_a_bad_warm_start_bag(tmp_path):
    """Node level: corrupt newest checkpoint -> .prev; truncated bag -> one line, no data."""
    from naf_ros.bag.writer import BagRecorder
    from naf_ros.ros.codec import encode_transition

    rng = np.random.default_rng(3)
    good, bad = tmp_path / "good_bag", tmp_path / "bad_bag"
    for path in (good, bad):
        with BagRecorder(path) as rec:
            for seq in range(30):
                obs = rng.standard_normal(13)
                rec.write_transition(
                    encode_transition(producer=0, seq=seq, episode=0, t=seq, obs=obs,
                                      action=rng.uniform(-1, 1, 3), reward=-1.0, next_obs=obs,
                                      terminal=False, truncated=False),
                    stamp_ns=1_000 + seq,
                )  # fmt: skip
    (mcap,) = bad.glob("*.mcap")
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])

    run = tmp_path / "run"
    node, close = make_learner_node(run, **{"bag.warm_start": [str(bad)]})
    try:
        assert len(node.learner.replay) == 0  # validated before anything was added
        level, message = node.diag.status()
        assert level == b"\x01" and message.startswith("warm start skipped: ")
        assert "\n" not in message and str(bad) in message
    finally:
        close()
    node, close = make_learner_node(run, **{"bag.warm_start": [str(good)]})
    try:
        assert len(node.learner.replay) == 30
        node.accounts.account(0, 29, 0)
        assert node.save_checkpoint()
        node.learner.agent.updates = 7  # something only the newest checkpoint has
        assert node.save_checkpoint()
    finally:
        close()
    newest = run / "learner_checkpoint.pt"
    newest.write_bytes(newest.read_bytes()[:100])  # truncated
    node, close = make_learner_node(run, **{"bag.warm_start": [str(bad)]})
    try:
        assert node.resumed and node.checkpoint.loaded_from.name == "learner_checkpoint.pt.prev"
        assert node.learner.agent.updates == 0 and len(node.learner.replay) == 30
        assert node.sequencer.expected(0) == 30  # the producer continues after seq 29
        assert len(list(run.glob("learner_checkpoint.pt.bad-*"))) == 1
        assert node.diag.status()[0] == b"\x00"  # resumed: no warm start attempted
    finally:
        close()
