"""SVG(1)-ER through the ROS graph: the learner publishes the Gaussian policy (mean and sigma
heads, nothing else), the policy node loads it through the shared weight checks and explores
by sampling it, and the episodes' actions are learnt from."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Float32MultiArray, Float64MultiArray
from support.ros import (
    RosTestNode,
    allocate_domain,
    diagnostic_values,
    finish_launch,
    launch_graph,
    policy_final_weights_version,
    rejected_counts,
)

from naf_ros.ros import qos
from naf_ros.ros.codec import decode_transition, unpack_arrays
from naf_ros.ros.names import DIAGNOSTICS_TOPIC, TRANSITIONS_TOPIC, WEIGHTS_TOPIC

pytestmark = pytest.mark.graph  # starts node processes over DDS
T = 10
DEEP = QoSProfile(depth=2000, reliability=ReliabilityPolicy.RELIABLE)
SMALL = [
    "agent.hidden=[16, 16]",
    f"env.max_episode_steps={T}",
    "agent.warmup_steps=20",
    "agent.batch_size=16",
    "learner.weights_every_updates=10",
    "learner.checkpoint_every_s=1000",
]


def test_svg_learns_through_the_graph_and_the_policy_node_samples_it(tmp_path):
    lease = allocate_domain()
    probe = RosTestNode(lease.domain_id)
    trans = probe.collect(Float64MultiArray, TRANSITIONS_TOPIC, qos.TRANSITIONS)
    weights = probe.collect(Float32MultiArray, WEIGHTS_TOPIC, qos.LATCHED)
    diag = probe.collect(DiagnosticArray, DIAGNOSTICS_TOPIC, DEEP)
    episodes = 6
    proc = launch_graph(
        lease.domain_id, tmp_path, "--episodes", str(episodes), "--mode", "lockstep",
        "--skip", "dynamics_fitter", "--skip", "ilqg_explorer", "--exploration", "policy",
        sets=[*SMALL, "agent.algorithm=svg1er",
              "naf_policy.startup_subscribers=[learner, test_probe]"],
    )  # fmt: skip
    try:
        out = finish_launch(proc, 150)
        values = diagnostic_values(diag, "naf_policy")
        rejected = rejected_counts(diag, "naf_policy")
    finally:
        msgs = trans.snapshot()
        probe.close()
        lease.release()
    assert proc.returncode == 0, out
    with open(tmp_path / "progress.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == episodes and all(np.isfinite(float(r["return"])) for r in rows)
    published = unpack_arrays(weights.last)
    version = float(published.pop("version"))
    assert version > 0, "weights never updated"
    assert all(k.startswith("actor.") for k in published)
    assert {"actor.out.weight", "actor.log_std.weight"} <= set(published)
    # The node took the learner's weights (a malformed set would be counted and refused).
    # Its own closing line, not the periodic /diagnostics (support.ros explains why).
    assert policy_final_weights_version(tmp_path) > 0
    assert "weights" not in rejected, (rejected, values)
    from naf_ros.envs.arm import ArmModel
    from naf_ros.envs.task import ReacherTask

    task = ReacherTask(ArmModel.from_mjcf())
    tr = [decode_transition(m, task.obs_dim, task.act_dim) for m in msgs]
    actions = np.array([t["action"] for t in tr])
    assert len(actions) >= episodes * T
    assert np.abs(actions).max() < 1.0  # tanh of a Gaussian sample: strictly inside
    assert actions.std(axis=0).min() > 0.05  # sampled, not the near-zero initial mean
