"""naf_policy + sim_bridge as real processes: episodes, transitions, weights, bad input, Ctrl-C.

The test process plays the learner (progress, weights, iLQG controller) so the policy is
checked on its own against the topic contract.
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Float32MultiArray, Float64, Float64MultiArray
from support.ros import (
    RosTestNode,
    allocate_domain,
    diagnostic_values,
    spawn_node,
    wait_rejected,
    wait_until,
)

from naf_ros.config import AgentConfig
from naf_ros.core.lin_gauss_policy import LinearGaussianController
from naf_ros.core.naf import NAFAgent
from naf_ros.envs.arm import ArmModel
from naf_ros.envs.task import ReacherTask
from naf_ros.ros import qos
from naf_ros.ros.codec import decode_transition, pack_arrays
from naf_ros.ros.names import (
    CONTROLLER_TOPIC,
    DIAGNOSTICS_TOPIC,
    PROGRESS_TOPIC,
    TRANSITIONS_TOPIC,
    WEIGHTS_TOPIC,
    metric_topic,
)

pytestmark = pytest.mark.graph  # starts node processes over DDS

TASK = ReacherTask(ArmModel.from_mjcf())
LIMITS = TASK.arm.effort_limits
OBS, ACT = TASK.obs_dim, TASK.act_dim
HIDDEN = [16, 16]
T = 10
DEEP = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
SEED = 5


def policy_params(**extra) -> dict:
    base = {
        "agent.hidden": HIDDEN,
        "env.max_episode_steps": T,
        "train.seed": SEED,
        "train.eval_every": 3,
        "train.eval_episodes": 1,
        "diagnostics_period": 0.2,
    }
    base.update(extra)
    return base


def weights_msg(agent: NAFAgent, version: float) -> Float32MultiArray:
    return pack_arrays({**agent.weight_arrays(), "version": version}, dtype=np.float32)


def decode_all(col) -> list[dict]:
    return [decode_transition(m, OBS, ACT) for m in col.snapshot()]


def check_commands(cmds) -> None:
    for m in cmds:
        assert len(m.data) == 3
        assert np.all(np.abs(np.asarray(m.data)) <= LIMITS + 1e-12)


def check_sequence(trans: list[dict], producer: int = 0) -> None:
    seqs = [tr["seq"] for tr in trans]
    assert seqs == list(range(len(seqs))), "transition sequence numbers must have no gaps"
    for tr in trans:
        assert tr["producer"] == producer
        assert not tr["terminal"]
        assert tr["truncated"] == (tr["t"] == T - 1)
        assert np.all(np.abs(tr["action"]) <= 1.0)
        assert tr["reward"] == pytest.approx(float(TASK.reward(tr["obs"], tr["action"])))


@pytest.fixture
def lease():
    lease = allocate_domain()
    yield lease.domain_id
    lease.release()


def test_lockstep_episodes_weights_learner_wait_and_bad_input(lease, tmp_path):
    """One lockstep run with a fake learner: UTD waiting, weight swap, injected garbage."""
    domain = lease
    probe = RosTestNode(domain, name="learner")  # the policy waits for a "learner" at start
    trans = probe.collect(Float64MultiArray, TRANSITIONS_TOPIC, qos.TRANSITIONS)
    cmds = probe.collect(Float64MultiArray, "/effort_controller/commands", DEEP)
    rets = probe.collect(Float64, metric_topic("episode_return"), qos.METRICS)
    evals = probe.collect(Float64, metric_topic("eval_return"), qos.METRICS)
    diag = probe.collect(DiagnosticArray, DIAGNOSTICS_TOPIC, 50)
    progress_pub = probe.publisher(Float64MultiArray, PROGRESS_TOPIC, qos.LATCHED)
    weights_pub = probe.publisher(Float32MultiArray, WEIGHTS_TOPIC, qos.LATCHED)
    ctrl_pub = probe.publisher(Float64MultiArray, CONTROLLER_TOPIC, qos.LATCHED)
    js_pub = probe.publisher(JointState, "/joint_states", qos.JOINT_STATES_PUB)

    # Fake learner: acknowledges the first transitions at once, then holds its acks (the
    # policy must stop and wait) until the injections below are done.
    acked: dict[int, float] = {}
    held: list[int] = []
    gate = threading.Event()
    lock = threading.Lock()

    def publish_ack(seq: int) -> None:
        acked[seq] = time.monotonic()
        progress_pub.publish(
            pack_arrays(
                {
                    "producers": [0.0],
                    "last_seq": [float(seq)],
                    "updates": 0.0,
                    "transitions": float(seq + 1),
                }
            )
        )

    def ack(msg):
        seq = decode_transition(msg, OBS, ACT)["seq"]
        with lock:
            if seq < T + 2 or gate.is_set():
                publish_ack(seq)
            else:
                held.append(seq)

    def release() -> None:
        with lock:
            gate.set()
            for seq in held:
                publish_ack(seq)

    probe.node.create_subscription(Float64MultiArray, TRANSITIONS_TOPIC, ack, qos.TRANSITIONS)

    episodes = 8
    LAG = 2  # the shipped default: acting on step t overlaps learning on steps t - 1, t - 2
    bridge = spawn_node("naf_ros.ros.sim_bridge", domain, tmp_path, {"train.seed": SEED})
    policy = spawn_node(
        "naf_ros.ros.policy.node",
        domain,
        tmp_path,
        policy_params(
            **{
                "train.episodes": episodes,
                "exploration.kind": "none",
                "wait_for_learner": 30.0,
                "max_learner_lag": LAG,
            }
        ),
    )
    try:
        # Acked up to seq T + 1: the policy may send LAG + 1 more and must then wait.
        assert trans.wait_for(T + 3 + LAG, 60.0), policy.output()
        time.sleep(0.3)
        assert len(trans) == T + 3 + LAG, "the policy must wait for the learner's progress"

        # Garbage on every input the policy has; each must be dropped and counted.
        assert probe.wait_for_subscribers(js_pub, 1)
        bad_states = []
        js = JointState(name=["joint1", "joint2"], position=[0.0, 0.0], velocity=[0.0, 0.0])
        bad_states.append(js)  # missing joint3
        bad_states.append(JointState(name=["a", "b", "c"], position=[0.0] * 3, velocity=[0.0] * 3))
        bad_states.append(
            JointState(name=["joint1", "joint2", "joint3"], position=[0.0] * 2, velocity=[0.0] * 3)
        )
        bad_states.append(
            JointState(
                name=["joint1", "joint2", "joint3"],
                position=[0.0, math.nan, 0.0],
                velocity=[0.0] * 3,
            )
        )
        bad_states.append(JointState())
        # Finite but absurd: a position far past the hard range, a speed no arm reaches.
        bad_states.append(
            JointState(
                name=["joint1", "joint2", "joint3"], position=[0.0, 1e308, 0.0], velocity=[0.0] * 3
            )
        )
        bad_states.append(
            JointState(
                name=["joint1", "joint2", "joint3"], position=[0.0] * 3, velocity=[0.0, 0.0, 1e3]
            )
        )
        for m in bad_states:  # paced: the policy keeps only the newest joint state
            js_pub.publish(m)
            time.sleep(0.05)
        for reason, n in [
            ("joint_state_missing_joint", 2),
            ("joint_state_length", 1),
            ("joint_state_non_finite", 1),
            ("joint_state_no_names", 1),
            ("joint_state_implausible", 2),
        ]:
            wait_rejected(diag, "naf_policy", reason, n)
        # Latched topics keep only the newest message: inject one at a time.
        nan_weights = NAFAgent(OBS, ACT, AgentConfig(hidden=HIDDEN), seed=1).weight_arrays()
        first = next(iter(nan_weights))
        nan_weights[first] = np.full_like(nan_weights[first], np.nan)
        short = LinearGaussianController.initial(T - 1, OBS, ACT, 0.1).to_arrays()
        wide = LinearGaussianController.initial(T, OBS + 1, ACT, 0.1).to_arrays()
        bad_cov = LinearGaussianController.initial(T, OBS, ACT, 0.1).to_arrays()
        bad_cov["cov"][3] = -np.eye(ACT)
        injections = [
            (
                weights_pub,
                weights_msg(NAFAgent(OBS, ACT, AgentConfig(hidden=[8]), seed=1), 1.0),
                "weights",
            ),
            (
                weights_pub,
                pack_arrays({**nan_weights, "version": 2.0}, dtype=np.float32),
                "weights",
            ),
            (weights_pub, Float32MultiArray(data=[1.0, 2.0]), "weights"),
            (ctrl_pub, pack_arrays({**wide, "version": 1.0}), "ilqg_controller"),
            (ctrl_pub, pack_arrays({**short, "version": 2.0}), "ilqg_controller"),
            (ctrl_pub, pack_arrays({**bad_cov, "version": 3.0}), "ilqg_controller"),
            (
                progress_pub,
                pack_arrays({"producers": [0.0, 1.0], "last_seq": [1.0]}),
                "learner_progress",
            ),
        ]
        counts: dict[str, int] = {}
        for pub, msg, reason in injections:
            counts[reason] = counts.get(reason, 0) + 1
            pub.publish(msg)
            wait_rejected(diag, "naf_policy", reason, counts[reason])

        # New weights: from then on the actions are the new network's mu(x).
        t_swap = time.monotonic()
        new_agent = NAFAgent(OBS, ACT, AgentConfig(hidden=HIDDEN), seed=123)
        weights_pub.publish(weights_msg(new_agent, 3.0))
        assert wait_until(
            lambda: diagnostic_values(diag, "naf_policy").get("weights_version") == "3.0", 10.0
        )
        assert len(trans) == T + 3 + LAG, "still waiting for the learner"
        release()
        assert wait_until(lambda: not policy.alive(), 90.0), policy.output()
        assert policy.proc.wait() == 0, policy.output()
    finally:
        policy.stop()
        bridge_code = bridge.stop()
        probe_msgs = trans.snapshot()
        probe.close()
    assert bridge_code == 0, bridge.output()
    assert len(probe_msgs) == episodes * T
    tr = [decode_transition(m, OBS, ACT) for m in probe_msgs]
    check_sequence(tr)
    assert [t["episode"] for t in tr] == [e for e in range(episodes) for _ in range(T)]
    check_commands(cmds.snapshot())
    assert list(cmds.last.data) == [0.0, 0.0, 0.0], "the run must end on zero effort"
    assert len(rets) == episodes and len(evals) >= 2

    # UTD parity: transition k was only produced after the learner acknowledged k-1-LAG.
    ack_time = acked
    arrivals = trans.times
    for k in range(1 + LAG, len(tr)):
        assert ack_time[k - 1 - LAG] <= arrivals[k] + 1e-3, f"transition {k} did not wait"

    # Weight swap: before, actions are the seed's initial network; after, the new one.
    old_agent = NAFAgent(OBS, ACT, AgentConfig(hidden=HIDDEN), seed=SEED)
    which = []
    for t, when in zip(tr, arrivals):
        a_old = old_agent.act(t["obs"])
        a_new = new_agent.act(t["obs"])
        if np.allclose(t["action"], a_old, atol=1e-5):
            which.append(0)
        elif np.allclose(t["action"], a_new, atol=1e-5):
            which.append(1)
        else:
            pytest.fail(f"action {t['action']} is from neither network")
        assert which[-1] == 0 or when >= t_swap
    assert which[0] == 0 and which[-1] == 1 and which == sorted(which)
    values = diagnostic_values(diag, "naf_policy")
    assert values, "policy must publish /diagnostics"


def test_realtime_ilqg_latency_and_sigint(lease, tmp_path):
    """Realtime: iLQG episodes, state->command latency, and Ctrl-C leaving zero effort."""
    domain = lease
    probe = RosTestNode(domain)
    trans = probe.collect(Float64MultiArray, TRANSITIONS_TOPIC, qos.TRANSITIONS)
    js = probe.collect(JointState, "/joint_states", DEEP)
    cmds = probe.collect(Float64MultiArray, "/effort_controller/commands", DEEP)
    diag = probe.collect(DiagnosticArray, DIAGNOSTICS_TOPIC, DEEP)
    ctrl_pub = probe.publisher(Float64MultiArray, CONTROLLER_TOPIC, qos.LATCHED)
    ctrl = LinearGaussianController.initial(T, OBS, ACT, 1e-6, u_hat=0.5)
    ctrl_pub.publish(pack_arrays({**ctrl.to_arrays(), "version": 1.0}))
    bridge = spawn_node("naf_ros.ros.sim_bridge", domain, tmp_path, {"mode": "realtime"})
    policy = spawn_node(
        "naf_ros.ros.policy.node",
        domain,
        tmp_path,
        policy_params(
            **{
                "mode": "realtime",
                "train.episodes": 1000,
                "exploration.kind": "precision",
                "model_based.ilqg_probability": 1.0,
                # No learner here; the probe checks every seq, so the policy waits for it
                # at start (but has no acknowledgements to wait for at shutdown).
                "startup_subscribers": ["test_probe"],
                "drain_timeout": 0.0,
                "gil_switch_interval_ms": 0.25,
            }
        ),
        # As `ros2 launch` starts Node(name=...): a process-wide node-name remap, which the
        # joint-state side node must not take over (two nodes of one name in a process).
        remaps={"__node": "naf_policy"},
        name="naf_policy",
    )
    try:
        assert trans.wait_for(3 * T, 60.0), policy.output()
        assert wait_until(
            lambda: diagnostic_values(diag, "naf_policy").get("gil_switch_interval_ms") == "0.25",
            10.0,
        ), diagnostic_values(diag, "naf_policy")
        names = probe.node.get_node_names()
        assert names.count("naf_policy") == 1 and "naf_policy_state_io" in names, names

        # Deactivation leaves zero effort and silence; activation resumes the episodes.
        def change(tid: int) -> bool:
            req = ChangeState.Request(transition=Transition(id=tid))
            return probe.call(ChangeState, "/naf_policy/change_state", req).success

        assert change(Transition.TRANSITION_DEACTIVATE)
        time.sleep(0.3)
        assert list(cmds.last.data) == [0.0, 0.0, 0.0], "deactivation must leave zero effort"
        n_cmds = len(cmds)
        time.sleep(0.5)
        assert len(cmds) == n_cmds, "a deactivated policy must not command"
        assert change(Transition.TRANSITION_ACTIVATE)
        assert cmds.wait_for(n_cmds + 5, 10.0), "activation must resume acting"
        n_trans = len(trans)
        assert trans.wait_for(n_trans + T, 20.0)

        assert policy.alive()
        code = policy.stop()
        assert code == 0, policy.output()
        log = policy.log_path.read_text(errors="replace")
        assert "already registered" not in log, log
        time.sleep(0.5)
        n_cmds = len(cmds)
        check_commands(cmds.snapshot())
        assert list(cmds.last.data) == [0.0, 0.0, 0.0], "Ctrl-C must leave zero effort"
        time.sleep(0.5)
        assert len(cmds) == n_cmds, "nothing may command the arm after the policy stopped"
        tr = decode_all(trans)
        check_sequence([t for t in tr])
        # Only an episode that began before the latched controller arrived (a start-up race
        # under load) may run the policy; from the first iLQG episode on, p=1 gives all to it.
        ilqg_eps = sorted({t["episode"] for t in tr if t["controller"] == 1.0})
        assert ilqg_eps, "p=1 must give episodes to iLQG"
        later = [t for t in tr if t["episode"] >= ilqg_eps[0]]
        assert all(t["controller"] == 1.0 for t in later), "p=1 must give every episode to iLQG"
        assert len({t["episode"] for t in tr if t["episode"] < ilqg_eps[0]}) <= 1
        assert all(np.allclose(t["action"], 0.5, atol=0.01) for t in later)
        # Latency: each command vs. the joint state that preceded it (both seen by the probe).
        js_times = np.asarray(js.times)
        lat = []
        for when, msg in cmds.timed():
            if not any(msg.data):
                continue
            before = js_times[js_times <= when]
            if before.size:
                lat.append(when - before[-1])
        lat_ms = np.asarray(lat) * 1e3
        print(
            f"\nrealtime joint_states->command latency over {lat_ms.size} steps: "
            f"p50 {np.percentile(lat_ms, 50):.2f} ms, p99 {np.percentile(lat_ms, 99):.2f} ms"
        )
    finally:
        policy.stop()
        assert bridge.stop() == 0, bridge.output()
        probe.close()
    bad = spawn_node(
        "naf_ros.ros.policy.node", domain, tmp_path,
        policy_params(mode="realtime", gil_switch_interval_ms=0.0), name="bad_policy",
    )  # fmt: skip
    assert bad.proc.wait(60) == 2, bad.output()
    assert "gil_switch_interval_ms" in bad.output(), bad.output()
