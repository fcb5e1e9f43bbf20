"""``arm.model: robot_description`` over real DDS: a description publisher latches a UR5 URDF,
and the sim bridge and the policy in that namespace both build the UR5 from it; a bad or
missing description stops a node's configure with one line and nothing commanded."""

from __future__ import annotations

import numpy as np
import pytest
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from support.robots import robots_dir
from support.ros import RosTestNode, allocate_domain, spawn_node, stop_all

from naf_ros.envs import ARM7_FIXED_ID
from naf_ros.envs.arm import ArmModel
from naf_ros.ros import qos

pytestmark = pytest.mark.graph  # starts node processes over DDS

UR5 = robots_dir() / "ur_description/urdf/ur5_robot.urdf"
TIP = "tool0"
ARM = {"env.id": ARM7_FIXED_ID, "arm.model": "robot_description", "arm.tip": TIP}
POLICY = {
    **ARM,
    "agent.hidden": [16, 16],
    "env.max_episode_steps": 10,
    "train.episodes": 2,
    "exploration.kind": "none",
    "wait_for_learner": 0.0,
    "startup_timeout": 0.0,
}


def config_error(output: str) -> str:
    """The node's one config-error line (run_node prints it to stderr on exit 2)."""
    lines = [line for line in output.splitlines() if line.startswith("config error:")]
    assert len(lines) == 1 and "Traceback" not in output, output
    return lines[0]


def test_bridge_and_policy_build_the_arm_from_robot_description(tmp_path):
    joints = list(ArmModel.from_file(UR5, tip=TIP).joint_names)
    broken = tmp_path / "broken.urdf"
    broken.write_text(UR5.read_text()[:400])  # cut mid-element: not XML
    lease = allocate_domain()
    domain = lease.domain_id
    with RosTestNode(domain) as probe:
        states = probe.collect(JointState, "/arm0/joint_states", qos.JOINT_STATES_SUB)
        good_cmds = probe.collect(Float64MultiArray, "/arm0/effort_controller/commands", 50)
        bad_cmds = probe.collect(Float64MultiArray, "/arm1/effort_controller/commands", 50)
        procs = [
            spawn_node(
                "naf_ros.ros.description_publisher", domain, tmp_path, {"file": str(UR5)},
                namespace="arm0", name="publisher0",
            ),
            spawn_node(
                "naf_ros.ros.description_publisher", domain, tmp_path, {"file": str(broken)},
                namespace="arm1", name="publisher1",
            ),
        ]  # fmt: skip
        try:
            # The nodes start after the publisher: the description reaches them latched.
            bridge = spawn_node(
                "naf_ros.ros.sim_bridge", domain, tmp_path, ARM, namespace="arm0", name="bridge"
            )
            policy = spawn_node(
                "naf_ros.ros.policy.node", domain, tmp_path, POLICY, namespace="arm0",
                name="policy",
            )  # fmt: skip
            bad_policy = spawn_node(
                "naf_ros.ros.policy.node", domain, tmp_path, POLICY, namespace="arm1",
                name="bad_policy",
            )  # fmt: skip
            no_description = spawn_node(
                "naf_ros.ros.sim_bridge", domain, tmp_path,
                {**ARM, "arm.description_timeout": 1.0}, namespace="arm2", name="lonely_bridge",
            )  # fmt: skip
            procs += [bridge, policy, bad_policy, no_description]

            assert policy.proc.wait(120) == 0, policy.output()
            assert len(states) > 0, bridge.output()
            assert all(list(m.name) == joints for m in states.snapshot())
            assert good_cmds.wait_for(1, 5.0) and {len(m.data) for m in good_cmds.snapshot()} == {6}
            assert f"tip '{TIP}'" in bridge.output() and "(urdf)" in bridge.output()
            assert np.isfinite(states.last.position).all()

            assert bad_policy.proc.wait(60) == 2, bad_policy.output()
            assert "arm: <robot_description string>: not XML" in config_error(bad_policy.output())
            assert no_description.proc.wait(60) == 2, no_description.output()
            line = config_error(no_description.output())
            assert "no robot_description on /arm2/robot_description within 1 s" in line
            assert len(bad_cmds) == 0
        finally:
            stop_all(procs)
            lease.release()
