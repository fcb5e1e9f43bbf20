"""The learning side against a "real arm": a fake driver that only speaks ros2_control.

The driver in this test publishes ``joint_states`` (100 Hz, wall-clock stamps, joints in
its own order plus a gripper joint whose velocity is NaN) and integrates the efforts it gets
on ``<controller>/commands`` with simple rigid-body-free physics. No simulator, no /clock,
no reset service: the policy resets by homing, and the controller name is not the default.
The graph comes up through ``naf-ros launch --skip sim_bridge`` with whatever learning-side
nodes this build has.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from support.ros import RosTestNode, allocate_domain, finish_launch, launch_graph

from naf_ros.bringup.launcher import node_available
from naf_ros.envs.arm import ArmModel
from naf_ros.ros import qos
from naf_ros.ros.codec import decode_transition, unpack_arrays
from naf_ros.ros.names import JOINT_STATES_TOPIC, PROGRESS_TOPIC, TRANSITIONS_TOPIC

pytestmark = pytest.mark.graph  # starts node processes over DDS

ARM = ArmModel.from_mjcf()
LIMITS = ARM.effort_limits
CONTROLLER = "arm_effort_controller"
T = 10
DEEP = QoSProfile(depth=5000, reliability=ReliabilityPolicy.RELIABLE)


class FakeDriver:
    """Integrates commanded efforts: qdd = (u - b qd) / I per joint, at 100 Hz."""

    order = ["gripper_joint", "joint3", "joint1", "joint2"]

    def __init__(self, probe: RosTestNode, start_q: np.ndarray) -> None:
        self.node = probe.node
        self.q = np.array(start_q, dtype=float)
        self.qd = np.zeros(3)
        self.u = np.zeros(3)
        self.inertia, self.damping, self.dt = 0.02, 0.05, 0.01
        self.commands: list[np.ndarray] = []
        self.bad_commands = 0
        self._lock = threading.Lock()
        self.pub = self.node.create_publisher(JointState, JOINT_STATES_TOPIC, qos.JOINT_STATES_PUB)
        self.node.create_subscription(
            Float64MultiArray, f"{CONTROLLER}/commands", self._on_command, DEEP
        )
        self.timer = self.node.create_timer(self.dt, self._tick)

    def _on_command(self, msg: Float64MultiArray) -> None:
        u = np.asarray(msg.data, dtype=float)
        with self._lock:
            self.commands.append(u)
            if u.shape != (3,) or not np.isfinite(u).all() or np.any(np.abs(u) > LIMITS + 1e-12):
                self.bad_commands += 1  # a real controller would reject or fault here
                return
            self.u = u

    def _tick(self) -> None:
        with self._lock:
            qdd = (self.u - self.damping * self.qd) / self.inertia
            self.qd = self.qd + qdd * self.dt
            self.q = self.q + self.qd * self.dt
            by_name = {f"joint{i + 1}": (self.q[i], self.qd[i], self.u[i]) for i in range(3)}
        by_name["gripper_joint"] = (0.01, float("nan"), 0.0)
        msg = JointState()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.name = list(self.order)
        msg.position = [float(by_name[n][0]) for n in self.order]
        msg.velocity = [float(by_name[n][1]) for n in self.order]
        msg.effort = [float(by_name[n][2]) for n in self.order]
        self.pub.publish(msg)


def test_learning_nodes_on_a_fake_ros2_control_arm(tmp_path):
    lease = allocate_domain()
    probe = RosTestNode(lease.domain_id, name="fake_arm_driver")
    driver = FakeDriver(probe, start_q=[0.6, -0.5, 0.4])
    trans = probe.collect(Float64MultiArray, TRANSITIONS_TOPIC, qos.TRANSITIONS)
    progress = probe.collect(Float64MultiArray, PROGRESS_TOPIC, qos.LATCHED)
    episodes = 3
    sets = [
        "naf_policy.reset_mode=homing", "naf_policy.homing_timeout=10.0",
        "naf_policy.home_position=[0.0, 0.0, 0.0]",
        "agent.hidden=[16, 16]", f"env.max_episode_steps={T}",
        "agent.warmup_steps=20", "agent.batch_size=16",
        "train.eval_every=100", "learner.checkpoint_every_s=1000",
        "model_based.enabled=true", "model_based.episodes_per_fit=2",
        "model_based.prior_episodes=2",
    ]  # fmt: skip
    proc = launch_graph(
        lease.domain_id, tmp_path, "--skip", "sim_bridge", "--mode", "realtime",
        "--controller-name", CONTROLLER, "--episodes", str(episodes), sets=sets,
    )  # fmt: skip
    try:
        out = finish_launch(proc, 150)
    finally:
        msgs = trans.snapshot()
        with driver._lock:
            commands = list(driver.commands)
            bad = driver.bad_commands
            q_end = driver.q.copy()
        probe.close()
        lease.release()
    assert proc.returncode == 0, out
    assert "sim_bridge" not in out.split("logs in")[0]
    assert commands, "the driver never got a command"
    assert bad == 0, "a command was malformed or beyond the effort limits"
    assert np.array_equal(commands[-1], np.zeros(3)), "the run must leave zero effort"
    assert np.all(np.isfinite(q_end))

    tr = [decode_transition(m, 13, 3) for m in msgs]
    assert [t["seq"] for t in tr] == list(range(episodes * T)), "gap in transitions"
    for t in tr:
        assert t["truncated"] == (t["t"] == T - 1) and not t["terminal"]
        assert np.allclose(t["obs"][9:11], [0.10, 0.20])  # the configured target
    # Homing ended only at the home pose (homing_tolerance 0.05 rad, still): every episode
    # starts there (cosines of the joint angles; one control period of drift allowed).
    starts = [t["obs"] for t in tr if t["t"] == 0]
    assert all(np.all(s[:3] > np.cos(0.07)) for s in starts), [s[:3] for s in starts]
    if node_available("learner"):
        last = unpack_arrays(progress.last)
        seqs = dict(zip(last["producers"].astype(int), last["last_seq"].astype(int)))
        assert seqs.get(0) == episodes * T - 1, (seqs, out)
