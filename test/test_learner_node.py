"""The learner node as a real process over real DDS.

Transitions come from real rollouts of ``NafRos/Reacher3DOFFixed-v0`` (smooth random
actions). One learner process starts in lockstep mode on a corrupted checkpoint (kept aside,
fresh start), takes a clean stream, then bad input; SIGINT makes it checkpoint, and a second
process resumes from that checkpoint in realtime, model-based mode to check resumption,
asynchronous learning and imagination rollouts. (Two torch-heavy start-ups, not more, to
keep the file fast on two busy cores.)
"""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from std_msgs.msg import Float32MultiArray, Float64MultiArray, MultiArrayDimension
from support.ros import (
    RosTestNode,
    allocate_domain,
    diagnostic_values,
    rejected_counts,
    spawn_node,
    wait_rejected,
    wait_until,
)

import naf_ros.envs  # noqa: F401  (registers the reacher)
from naf_ros.core.dynamics import DynamicsPrior, fit_linear_gaussian
from naf_ros.core.joint_dynamics import (
    add_joint_arrays,
    fit_joint_space,
    joint_model_from_arrays,
)
from naf_ros.envs.task import ReacherTask
from naf_ros.ros import qos
from naf_ros.ros.codec import encode_transition, pack_arrays, unpack_arrays
from naf_ros.ros.names import (
    DIAGNOSTICS_TOPIC,
    MODEL_TOPIC,
    PROGRESS_TOPIC,
    TRANSITIONS_TOPIC,
    WEIGHTS_TOPIC,
)

pytestmark = pytest.mark.graph  # starts node processes over DDS

ENV_ID = "NafRos/Reacher3DOFFixed-v0"
T = 50
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


def rollouts(n_episodes: int, seed: int = 0, producer: int = 0) -> list[dict]:
    """Real env transitions with temporally correlated random actions, seq from 0."""
    env = gym.make(ENV_ID)
    rng = np.random.default_rng(seed)
    out, seq = [], 0
    for ep in range(n_episodes):
        obs, _ = env.reset(seed=seed * 1000 + ep)
        noise = np.zeros(3)
        for t in range(T):
            noise = 0.8 * noise + 0.3 * rng.standard_normal(3)
            action = np.clip(noise, -1.0, 1.0)
            nxt, reward, term, trunc, _ = env.step(action)
            out.append(
                dict(
                    producer=producer,
                    seq=seq,
                    episode=ep,
                    t=t,
                    obs=obs,
                    action=action,
                    reward=float(reward),
                    next_obs=nxt,
                    terminal=term,
                    truncated=trunc,
                )
            )
            seq, obs = seq + 1, nxt
    env.close()
    return out


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


# --- the pure parts, without DDS ------------------------------------------------------------------
def test_sequence_tracker_rules():
    from naf_ros.core.episodes import SequenceTracker

    tr = SequenceTracker(max_producers=2)
    assert [tr.check(0, s).status for s in (0, 1, 2)] == ["ok"] * 3
    v = tr.check(0, 6)
    assert (v.accepted, v.status, v.missing) == (True, "gap", 3)
    assert tr.check(0, 4).status == "out_of_order" and tr.check(0, 6).status == "duplicate"
    assert tr.last_seq(0) == 6 and (tr.gaps, tr.lost) == (1, 3)
    assert tr.check(1, 2).status == "gap"  # a producer first heard of mid-stream
    assert tr.check(2, 0).status == "too_many_producers"
    assert tr.check(0, 0, restart_hint=True).status == "restart" and tr.last_seq(0) == 0
    state = tr.state_dict()
    again = SequenceTracker()
    again.load_state_dict(state)
    assert again.check(0, 1).status == "ok" and again.check(1, 3).status == "ok"


def test_learner_does_il_updates_from_fictional_and_i_from_real(data):
    """The core learner the node wraps: rollouts from B_old every m transitions once warm,
    I·l updates from R_f then I from R, the switch-off, and a full state round trip."""
    from naf_ros.config import config_from_dict
    from naf_ros.core.learner import Learner
    from naf_ros.envs.task import ReacherTask

    cfg = config_from_dict(
        {
            "agent": {
                "hidden": [16, 16],
                "batch_size": 16,
                "warmup_steps": 16,
                "updates_per_step": 2,
            },
            "model_based": {
                "enabled": True,
                "rollout_every": 4,
                "rollout_batch": 4,
                "rollout_length": 3,
                "imagination_off_after": 2,
            },
        }
    )
    task = ReacherTask()
    learner = Learner(cfg, 13, 3, T, task.reward, task)
    for tr in data[:T]:  # one complete episode joins B_f
        learner.add(tr)
    assert len(learner.B_f) == 1 and learner.counters.rollouts == 0  # no model yet
    msg = fitted_model_message(data[:100], 1, joint=True)
    learner.set_model(joint_model_from_arrays(unpack_arrays(msg), task), 1)
    assert len(learner.B_old) == 1 and len(learner.B_f) == 0  # B_old <- B_f
    for tr in data[T : T + 16]:
        learner.add(tr)
    assert learner.counters.rollouts == 4 and 0 < len(learner.fictional) <= 4 * 4 * 3
    assert len(learner.learn()) == 2 * 3 + 2  # I*l from R_f, then I from R
    for tr in data[T + 16 : 2 * T + 1]:  # the first transition of episode 2 switches it off
        learner.add(tr)
    assert learner.counters.episodes == 2 and not learner.imagination_active
    assert len(learner.learn()) == 2
    state = learner.state_dict()
    fresh = Learner(cfg, 13, 3, T, task.reward, task)
    fresh.load_state_dict(state)
    assert fresh.agent.updates == learner.agent.updates and len(fresh.replay) == 2 * T + 1
    assert len(fresh.fictional) == len(learner.fictional) and fresh.model_version == 1
    assert not fresh.imagination_active and len(fresh.B_f) == 1
    x = np.array([tr["obs"] for tr in data[:T]])
    u = np.array([tr["action"] for tr in data[:T]])
    assert np.array_equal(
        fresh.model.predict(np.arange(T), x, u), learner.model.predict(np.arange(T), x, u)
    )


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


def fitted_model_message(data: list[dict], version: int, joint: bool = False) -> Float64MultiArray:
    X = np.array(
        [
            [tr["obs"] for tr in data[e * T : (e + 1) * T]] + [data[(e + 1) * T - 1]["next_obs"]]
            for e in range(len(data) // T)
        ]
    )
    U = np.array([[tr["action"] for tr in data[e * T : (e + 1) * T]] for e in range(len(X))])
    prior = DynamicsPrior()
    prior.update(X, U)
    arrays = fit_linear_gaussian(X, U, prior=prior).to_arrays()
    if joint:
        add_joint_arrays(arrays, fit_joint_space(ReacherTask(), X, U, DynamicsPrior()))
    arrays["version"] = float(version)
    return pack_arrays(arrays)


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
