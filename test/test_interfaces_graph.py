"""The velocity and position command interfaces end to end: policy node and sim bridge
processes (lockstep) with ``arm.command_interface`` set, checked on the real topic
``/<interface>_controller/commands``:

- every command the policy sends stays inside the envelope's limits (velocity: the velocity
  limit; position: inside the soft limits and one control period at the velocity limit from
  the arm);
- ``estop`` true stops the arm (velocity: zero velocity) or holds it where it is (position:
  never a target at zero), in the policy and in the bridge, which ignores a direct command.

The planar 3-DOF reacher serves: the nodes simulate and learn only it until they load any
arm (issue #12's arm-source item); the rules do not depend on the arm.
"""

from __future__ import annotations

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray
from support.ros import RosTestNode, allocate_domain, diagnostic_values, spawn_node, wait_until

from naf_ros.ros import qos
from naf_ros.ros.names import DIAGNOSTICS_TOPIC

pytestmark = pytest.mark.graph  # starts node processes over DDS

T, DT = 20, 0.02
SOFT, VEL = 0.3, 1.0
DEEP = QoSProfile(depth=5000, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture(scope="module", params=["velocity", "position"])
def graph(request, tmp_path_factory):
    interface = request.param
    logs = tmp_path_factory.mktemp(f"{interface}_logs")
    lease = allocate_domain()
    probe = RosTestNode(lease.domain_id, name=f"{interface}_probe")
    topic = f"/{interface}_controller/commands"
    common = {
        "arm.command_interface": interface,
        "safety.velocity": VEL,
        "env.max_episode_steps": T,
        "train.episodes": 1000,
        "train.eval_every": 1000,
        "train.seed": 3,
        "train.run_dir": str(tmp_path_factory.mktemp(f"{interface}_run")),
        "diagnostics_period": 0.2,
    }
    policy = {
        **common,
        "agent.hidden": [16, 16],
        "exploration.kind": "gaussian",
        "exploration.scale": 1.0,  # actions at the limits, often
        "safety.soft_lower": [-SOFT] * 3,
        "safety.soft_upper": [SOFT] * 3,
        "startup_timeout": 0.0,  # no learner in this graph
        "wait_for_learner": 0.0,
    }
    g = {
        "interface": interface,
        "probe": probe,
        "cmds": probe.collect(Float64MultiArray, topic, DEEP),
        "js": probe.collect(JointState, "/joint_states", DEEP),
        "diag": probe.collect(DiagnosticArray, DIAGNOSTICS_TOPIC, 500),
        "estop": probe.publisher(Bool, "/estop", qos.ESTOP),
        "cmd_pub": probe.publisher(Float64MultiArray, topic, qos.COMMANDS),
    }
    procs = {
        "bridge": spawn_node(
            "naf_ros.ros.sim_bridge", lease.domain_id, logs, {**common, "command_timeout": 0.5}
        ),
        "policy": spawn_node("naf_ros.ros.policy.node", lease.domain_id, logs, policy),
    }
    g["procs"] = procs
    try:
        yield g
    finally:
        codes = {name: p.stop(30) for name, p in procs.items()}
        probe.close()
        lease.release()
    assert codes == {"bridge": 0, "policy": 0}, {n: p.output()[-2000:] for n, p in procs.items()}


def test_commands_stay_inside_the_interfaces_limits(graph):
    g = graph
    assert g["cmds"].wait_for(3 * T, 90), {n: p.output()[-2000:] for n, p in g["procs"].items()}
    cmds = np.array([m.data for m in g["cmds"].snapshot()])
    states = np.array([m.position for m in g["js"].snapshot()])
    assert np.isfinite(cmds).all()
    if g["interface"] == "velocity":
        assert np.abs(cmds).max() <= VEL
        assert np.abs(cmds).max() > 0.5 * VEL  # the policy does command
    else:
        # Each target is one period at the velocity limit from a state the arm was in.
        gap = np.abs(cmds[:, None, :] - states[None, :, :]).max(axis=2).min(axis=1)
        assert gap.max() <= VEL * DT + 1e-9, gap.max()
        assert np.abs(cmds).max() <= SOFT + VEL * DT  # inside, or returning from outside
        assert np.abs(np.diff(states, axis=0)).max() > 0.1 * VEL * DT  # the arm moves


def _latched(g: dict, node: str) -> bool:
    """The node's own /diagnostics say its envelope holds the e-stop."""
    return diagnostic_values(g["diag"], node).get("estop") == "True"


def test_estop_stops_or_holds_the_arm(graph):
    g = graph
    probe = g["probe"]
    assert probe.wait_for_subscribers(g["estop"], 2, 90)
    assert g["cmds"].wait_for(len(g["cmds"]) + 5, 30)
    g["estop"].publish(Bool(data=True))
    try:
        # Both nodes report the latch themselves: no guess at how long delivery takes.
        assert wait_until(lambda: _latched(g, "sim_bridge") and _latched(g, "naf_policy"), 30)
        if g["interface"] == "velocity":  # the policy's stop, published as it latched
            assert wait_until(lambda: not np.any(g["cmds"].last.data), 5), g["cmds"].last
        q = np.array(g["js"].last.position)
        last = np.array(g["cmds"].last.data)
        if g["interface"] == "velocity":
            assert not last.any(), last
        else:
            # A hold where the policy last saw the arm (a step in flight crosses the stop, so
            # up to two periods' travel from where the arm is now), never a target at zero.
            assert np.abs(last - q).max() <= 2 * VEL * DT + 1e-9, (last, q)
        # The bridge ignores direct commands: lockstep steps it once per command, stopped or
        # held. Obeyed, these would carry each joint 0.2 rad away (ten periods at the limit).
        away = q + np.array([0.2, -0.2, 0.2])
        for _ in range(10):
            n_js = len(g["js"])
            g["cmd_pub"].publish(Float64MultiArray(data=list(away)))
            assert g["js"].wait_for(n_js + 1, 5)
        after = g["js"].last
        if g["interface"] == "velocity":
            assert np.abs(after.velocity).max() < 0.05
        else:
            # Held at the latched pose: the in-flight step's travel at most, and settled.
            assert np.abs(np.array(after.position) - q).max() <= 2 * VEL * DT, (after, q)
            assert np.abs(after.velocity).max() < 0.05, after.velocity
    finally:
        g["estop"].publish(Bool(data=False))
    n = len(g["cmds"])
    assert g["cmds"].wait_for(n + T, 30), "episodes must resume after the release"
