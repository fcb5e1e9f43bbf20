"""The learner node as a real process over real DDS.

Transitions come from real rollouts of ``NafRos/Reacher3DOFFixed-v0`` (smooth random
actions). One learner process starts in lockstep mode on a corrupted checkpoint (kept aside,
fresh start), takes a clean stream, then bad input; SIGINT makes it checkpoint, and a second
process resumes from that checkpoint in realtime, model-based mode to check resumption,
asynchronous learning and imagination rollouts. (Two torch-heavy start-ups, not more, to
keep the file fast on two busy cores.) The last test builds the learner node in-process (own
context, no peers) for its checkpoint and warm-start fallbacks. The core learner it wraps is
tested without DDS in test_learner.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from std_msgs.msg import Float32MultiArray, Float64MultiArray, MultiArrayDimension
from support.rollouts import fitted_model_message, rollouts
from support.ros import (
    RosTestNode,
    allocate_domain,
    diagnostic_values,
    rejected_counts,
    spawn_node,
    wait_rejected,
    wait_until,
)

from naf_ros.ros import qos
from naf_ros.ros.codec import encode_transition, unpack_arrays
from naf_ros.ros.names import (
    DIAGNOSTICS_TOPIC,
    MODEL_TOPIC,
    PROGRESS_TOPIC,
    TRANSITIONS_TOPIC,
    WEIGHTS_TOPIC,
)

pytestmark = pytest.mark.graph  # starts node processes over DDS

WARMUP, UPD = 64, 2
SMALL = {
    "agent.hidden": [32, 32],
    "agent.batch_size": 32,
    "agent.warmup_steps": WARMUP,
    "agent.updates_per_step": UPD,
    "weights_every_updates": 50,
    "checkpoint_every_s": 0.0,
    "train.seed": 1,
}


def encode(tr: dict, **override) -> Float64MultiArray:
    return encode_transition(**{**tr, **override})


def progress(col) -> dict:
    msg = col.last
    return unpack_arrays(msg) if msg is not None else {}


def last_seq(col, producer: int = 0) -> int:
    p = progress(col)
    if not p:
        return -1
    hits = np.nonzero(np.atleast_1d(p["producers"]) == producer)[0]
    return int(np.atleast_1d(p["last_seq"])[hits[0]]) if hits.size else -1


# --- one learner process at a time, over DDS ----------------------------------------------------
class Graph:
    """One learner process at a time plus a probe node, in a domain of their own."""

    def __init__(self, log_dir, run_dir) -> None:
        self.lease = allocate_domain()
        self.log_dir, self.run_dir = log_dir, run_dir
        self.probe = RosTestNode(self.lease.domain_id, name="probe_learner")
        self.diag = self.probe.collect(DiagnosticArray, DIAGNOSTICS_TOPIC, 50)
        self.weights = self.probe.collect(Float32MultiArray, WEIGHTS_TOPIC, qos.LATCHED)
        self.progress = self.probe.collect(Float64MultiArray, PROGRESS_TOPIC, qos.LATCHED)
        self.pub = self.probe.publisher(Float64MultiArray, TRANSITIONS_TOPIC, qos.TRANSITIONS)
        self.model_pub = self.probe.publisher(Float64MultiArray, MODEL_TOPIC, qos.LATCHED)
        self.proc = None
        self.starts = 0

    def start(self, params: dict) -> None:
        for col in (self.diag, self.progress, self.weights):  # forget earlier processes
            with col._cond:
                col.messages.clear()
                col.times.clear()
        self.starts += 1
        self.proc = spawn_node(
            "naf_ros.ros.learner",
            self.lease.domain_id,
            self.log_dir,
            {**params, "train.run_dir": str(self.run_dir)},
            name=f"learner_{self.starts}",
        )
        assert self.probe.wait_for_subscribers(self.pub, timeout=40), self.proc.output()

    def values(self) -> dict:
        return diagnostic_values(self.diag, "learner")

    def wait_value(self, key: str, pred, timeout: float = 20.0) -> dict:
        ok = wait_until(lambda: key in self.values() and pred(self.values()[key]), timeout)
        assert ok, f"{key}: {self.values().get(key)!r}\n{self.proc.output()[-3000:]}"
        return self.values()

    def close(self) -> None:
        if self.proc is not None and self.proc.alive():
            self.proc.stop(30)
        self.probe.close()
        self.lease.release()


@pytest.fixture(scope="module")
def data():
    return rollouts(7, seed=3)  # 350 transitions


CORRUPT = b"NAFROSCK" + b"\0" * 40 + b"not a checkpoint"


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("learner_run")
    (run_dir / "learner_checkpoint.pt").write_bytes(CORRUPT)
    g = Graph(tmp_path_factory.mktemp("learner_logs"), run_dir)
    g.start({**SMALL, "mode": "lockstep"})
    yield g
    g.close()


def test_corrupt_checkpoint_is_kept_aside_and_learner_starts_fresh(graph):
    g = graph
    assert g.weights.wait_for(1, 20), g.proc.output()  # startup weights, latched
    assert float(unpack_arrays(g.weights.messages[0])["version"]) == 0.0
    lines = [ln for ln in g.proc.output().splitlines() if "checkpoint unusable" in ln]
    assert len(lines) == 1, g.proc.output()
    renamed = list(g.run_dir.glob("learner_checkpoint.pt.bad-*"))
    assert len(renamed) == 1 and renamed[0].read_bytes() == CORRUPT
    assert not (g.run_dir / "learner_checkpoint.pt").exists()


def test_lockstep_clean_stream_holds_utd_and_publishes_changing_weights(graph, data):
    g = graph
    assert g.weights.wait_for(1, 20), g.proc.output()
    first = unpack_arrays(g.weights.messages[0])
    n = 300
    t0 = time.monotonic()
    for tr in data[:n]:
        g.pub.publish(encode(tr))
    assert wait_until(lambda: last_seq(g.progress) == n - 1, 40), g.proc.output()[-3000:]
    elapsed = time.monotonic() - t0
    p = progress(g.progress)
    # Lockstep: exactly I updates per transition once R holds max(batch, warmup) samples.
    assert int(p["transitions"]) == n
    assert int(p["updates"]) == UPD * (n - WARMUP + 1)
    print(f"lockstep: {n} transitions + {int(p['updates'])} updates in {elapsed:.2f} s")
    assert g.weights.wait_until(lambda ms: float(unpack_arrays(ms[-1])["version"]) >= 400, 10), [
        float(unpack_arrays(m)["version"]) for m in g.weights.snapshot()
    ]
    last = unpack_arrays(g.weights.last)
    changed = [k for k in first if k != "version" and not np.allclose(first[k], last[k])]
    assert len(changed) >= len(first) // 2, changed
    vals = g.wait_value("transitions", lambda v: int(v) == n)
    assert vals["gaps"] == "0" and vals["lost_transitions"] == "0"
    assert rejected_counts(g.diag, "learner").get("total", 0) == 0
    assert int(vals["replay_size"]) == n


def test_bad_input_dropped_counted_and_gap_reported(graph, data):
    g = graph
    assert last_seq(g.progress) == 299
    nan_obs = data[300]["obs"].copy()
    nan_obs[2] = np.nan
    garbage = Float64MultiArray(data=[1.0, 2.0, 3.0])
    garbage.layout.dim.append(MultiArrayDimension(label="seq:scalar", size=1, stride=7))
    msgs = [
        encode(data[100]),  # duplicate of an old seq
        garbage,  # undecodable
        encode(data[300], obs=nan_obs),  # NaN: seq 300 accounted for, sample dropped
        encode(data[301]),  # ok, and no gap because 300 was accounted for
        encode(data[301]),  # duplicate
        encode(data[305]),  # gap: 302..304 lost
        encode(data[303]),  # late copy of a lost one: out of order
        encode(data[306], action=np.array([3.0, 0.0, 0.0])),  # outside [-1, 1]
        encode(data[307]),
    ]
    for m in msgs:
        g.pub.publish(m)
    assert wait_until(lambda: last_seq(g.progress) == 307, 20), g.proc.output()[-3000:]
    for reason, count in (
        ("duplicate", 2),
        ("malformed", 1),
        ("non_finite", 1),
        ("out_of_order", 1),
        ("action_out_of_range", 1),
    ):
        assert wait_rejected(g.diag, "learner", reason, count) == count
    vals = g.wait_value("transitions", lambda v: int(v) == 300 + 3)  # 301, 305, 307
    assert vals["gaps"] == "1" and vals["lost_transitions"] == "3"
    status = [s for m in g.diag.snapshot() for s in m.status if "learner" in s.name][-1]
    assert status.level == DiagnosticStatus.WARN and "gap" in status.message
    assert g.proc.alive()


REALTIME_MB = {
    **SMALL,
    "mode": "realtime",
    "model_based.enabled": True,
    "model_based.rollout_every": 5,
    "model_based.rollout_batch": 8,
    "model_based.rollout_length": 5,
    "model_based.episodes_per_fit": 2,
}


def test_sigint_checkpoints_then_realtime_model_based_restart_resumes(graph, data):
    g = graph
    before = progress(g.progress)
    replay_before = int(g.values()["replay_size"])
    t0 = time.monotonic()
    code = g.proc.stop(30)
    stop_s = time.monotonic() - t0
    out = g.proc.log_path.read_text()
    assert code == 0, out[-3000:]
    assert (g.run_dir / "learner_checkpoint.pt").is_file(), out[-3000:]
    assert f" {int(before['updates'])} updates) in" in out  # the shutdown checkpoint
    print(f"SIGINT -> exit {code} in {stop_s:.2f} s at {int(before['updates'])} updates")

    g.start(REALTIME_MB)
    # The restarted learner announces where it resumed (latched progress) ...
    assert wait_until(lambda: "updates" in progress(g.progress), 30), g.proc.output()
    assert "resumed from" in g.proc.output()
    resumed = progress(g.progress)
    assert int(resumed["updates"]) >= int(before["updates"])
    assert int(resumed["transitions"]) == int(before["transitions"])
    vals = g.wait_value("resumed", lambda v: v == "True")
    assert int(vals["replay_size"]) == replay_before and vals["gaps"] == "1"
    # ... and, realtime, keeps learning from the resumed replay with no new data at all.
    g.wait_value("updates", lambda v: int(v) > int(before["updates"]) + 100)

    bad_model = fitted_model_message(data[:100], 1)
    bad_model.data[5] = float("nan")
    g.model_pub.publish(bad_model)
    wait_rejected(g.diag, "learner", "bad_model", 1)
    g.model_pub.publish(fitted_model_message(data[:100], 2))
    vals = g.wait_value("model_version", lambda v: v == "2")
    assert vals["model_state"] == "observation"  # no joint-space model in that message
    g.model_pub.publish(fitted_model_message(data[:100], 3, joint=True))
    vals = g.wait_value("model_version", lambda v: v == "3")
    assert vals["model_state"] == "joint"  # imagination now steps the joint-space model
    # The producer's sequence continues without a spurious gap.
    for tr in data[308:350]:
        g.pub.publish(encode(tr))
    assert wait_until(lambda: last_seq(g.progress) == 349, 30), g.proc.output()[-3000:]
    assert int(progress(g.progress)["transitions"]) == int(before["transitions"]) + 42
    vals = g.wait_value("imagination_transitions", lambda v: int(v) > 0)
    assert vals["imagination_active"] == "True" and int(vals["fictional_size"]) > 0
    assert vals["gaps"] == "1"
    print(
        f"realtime: {vals['updates']} updates, {vals['imagination_transitions']} imagined "
        f"transitions from {vals['imagination_rollouts']} rollouts"
    )
    assert g.proc.stop(30) == 0, g.proc.log_path.read_text()[-3000:]  # clean while busy


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
