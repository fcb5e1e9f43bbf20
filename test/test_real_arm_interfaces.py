"""The real-arm swap with a third-party arm, for each command interface: the learning nodes
(``naf-ros launch --skip sim_bridge``) against a driver for example-robot-data's UR5.

The nodes get the arm as a user gives it: ``--robot-description`` latches the UR5 URDF on
``robot_description`` (as ``robot_state_publisher`` would), ``arm.tip`` names its ``tool0``.
The driver in this test only speaks ros2_control: it publishes ``joint_states`` (the URDF's
joint names in its own order, plus a gripper joint off the chain with a NaN velocity) and
applies what arrives on ``/<controller>/commands`` to MuJoCo physics of the same URDF (an
:class:`ArmSim` of the interface: the "hardware"). No /clock, no reset service: the policy
resets by homing. Checked per interface: transitions of the UR5's size reach the learner,
weights come back, and every command the driver got was finite and inside the interface's
limits (effort: ``safety.effort``; velocity: the URDF's velocity limits; position: inside the
soft limits and at most one period at the velocity limit from a measured position).

Effort needs more than the URDF: its links alone, with 28 N·m on a 0.02 kg·m² wrist and no
friction, spin the wrist past any plausible speed within an episode (a real UR's gearboxes
add rotor inertia and friction the URDF leaves out). So the test (a) caps the efforts with
``safety.effort`` per joint, well inside the URDF's limits and above the holding torques,
and (b) gives the effort "hardware" round rotor inertia and joint damping. The policy's
envelope also stops accelerating a joint past the URDF's velocity limits under effort.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Float32MultiArray, Float64MultiArray
from support.robots import robots_dir
from support.ros import (
    RosTestNode,
    allocate_domain,
    finish_launch,
    launch_graph,
    policy_final_weights_version,
)

from naf_ros.envs import ARM7_FIXED_ID
from naf_ros.envs.arm import ArmModel
from naf_ros.envs.sim import ArmSim
from naf_ros.envs.task import ReachTask
from naf_ros.ros import qos
from naf_ros.ros.codec import decode_transition
from naf_ros.ros.names import (
    JOINT_STATES_TOPIC,
    TRANSITIONS_TOPIC,
    WEIGHTS_TOPIC,
)

pytestmark = pytest.mark.graph  # starts node processes over DDS

UR5 = robots_dir() / "ur_description/urdf/ur5_robot.urdf"
TIP = "tool0"
ARM = ArmModel.from_file(UR5, tip=TIP)
N = ARM.n_joints
HOME = np.array([0.0, -1.2, 1.5, -1.87, -1.57, 0.0])  # elbow up, tool pointing down
SAFE_EFFORT = np.array([60.0, 80.0, 50.0, 10.0, 10.0, 5.0])  # N·m; holding needs <= 31, 15
ROTOR_INERTIA = np.array([1.0, 1.0, 1.0, 0.5, 0.5, 0.5])  # kg·m², the effort "hardware's"
DAMPING = np.array([10.0, 10.0, 10.0, 2.0, 2.0, 2.0])  # N·m·s/rad
CONTROL_DT = 0.02  # the environment's control period: a position target's time to arrive
MARGIN = 0.05  # safety.position_margin (the default): soft limits inside the URDF's
T, EPISODES = 10, 4
DEEP = QoSProfile(depth=5000, reliability=ReliabilityPolicy.RELIABLE)
EXTRA = "gripper_finger_joint"


class UR5Driver:
    """100 Hz ros2_control stand-in over MuJoCo physics of the UR5 URDF (module docstring).

    The brakes hold the arm until the first command arrives (an effort-driven arm would
    otherwise fall while the nodes start)."""

    def __init__(self, probe: RosTestNode, interface: str, controller: str) -> None:
        self.node = probe.node
        self.interface = interface
        self.dt = 0.01
        self.sim = ArmSim(ARM, control_dt=self.dt, command_interface=interface)
        if interface == "effort":
            dofs = [self.sim.model.joint(n).dofadr[0] for n in ARM.joint_names]
            self.sim.model.dof_armature[dofs] = ROTOR_INERTIA
            self.sim.model.dof_damping[dofs] = DAMPING
        start = HOME + np.array([0.1, -0.1, 0.1, -0.1, 0.1, -0.1])
        self.sim.reset(start, np.zeros(N), np.zeros(3))
        self.order = [EXTRA] + list(reversed(ARM.joint_names))
        self.braked = True
        self.commands: list[tuple[np.ndarray, np.ndarray]] = []  # (command, q when it came)
        self.states: list[np.ndarray] = []  # every published position
        self._lock = threading.Lock()
        self.pub = self.node.create_publisher(JointState, JOINT_STATES_TOPIC, qos.JOINT_STATES_PUB)
        self.node.create_subscription(
            Float64MultiArray, f"{controller}/commands", self._on_command, DEEP
        )
        self.timer = self.node.create_timer(self.dt, self._tick)

    def _on_command(self, msg: Float64MultiArray) -> None:
        u = np.asarray(msg.data, dtype=float)
        with self._lock:
            self.commands.append((u, self.sim.joint_positions()))
            if u.shape == (N,) and np.isfinite(u).all():
                self.sim.set_command(u)
                self.braked = False

    def _tick(self) -> None:
        with self._lock:
            if not self.braked:
                self.sim.step()
            q, qd, u = self.sim.joint_positions(), self.sim.joint_velocities(), self.sim.effort
            self.states.append(q)
        by_name = {n: (q[i], qd[i], u[i]) for i, n in enumerate(ARM.joint_names)}
        by_name[EXTRA] = (0.01, float("nan"), 0.0)
        msg = JointState()
        msg.header.stamp = self.node.get_clock().now().to_msg()
        msg.name = list(self.order)
        msg.position = [float(by_name[n][0]) for n in self.order]
        msg.velocity = [float(by_name[n][1]) for n in self.order]
        msg.effort = [float(by_name[n][2]) for n in self.order]
        self.pub.publish(msg)


@pytest.mark.parametrize("interface", ["effort", "velocity", "position"])
def test_learning_nodes_on_a_ur5_driver(interface, tmp_path):
    controller = f"forward_{interface}_controller"
    lease = allocate_domain()
    probe = RosTestNode(lease.domain_id, name="ur5_driver")
    driver = UR5Driver(probe, interface, controller)
    trans = probe.collect(Float64MultiArray, TRANSITIONS_TOPIC, qos.TRANSITIONS)
    weights = probe.collect(Float32MultiArray, WEIGHTS_TOPIC, qos.LATCHED)
    homing = ["naf_policy.homing_tolerance=0.08", "naf_policy.homing_timeout=15.0"]
    if interface == "effort":  # PD gains in N·m/rad and N·m·s/rad for the drives above
        homing += ["naf_policy.homing_kp=30.0", "naf_policy.homing_kd=10.0"]
        homing += [f"safety.effort={SAFE_EFFORT.tolist()}"]
    sets = [
        f"env.id={ARM7_FIXED_ID}", f"arm.tip={TIP}", f"arm.command_interface={interface}",
        f"naf_policy.home_position={HOME.tolist()}", *homing,
        "agent.hidden=[16, 16]", f"env.max_episode_steps={T}",
        "agent.warmup_steps=20", "agent.batch_size=16",
        "train.eval_every=100", "learner.checkpoint_every_s=1000",
    ]  # fmt: skip
    proc = launch_graph(
        lease.domain_id, tmp_path, "--skip", "sim_bridge", "--skip", "dynamics_fitter",
        "--skip", "ilqg_explorer", "--controller-name", controller,
        "--episodes", str(EPISODES), "--robot-description", str(UR5), sets=sets,
    )  # fmt: skip
    try:
        out = finish_launch(proc, 150)
    finally:
        msgs, n_weights = trans.snapshot(), len(weights)
        with driver._lock:
            commands = list(driver.commands)
            states = np.array(driver.states)
        probe.close()
        lease.release()
    assert proc.returncode == 0, out
    assert commands, "the driver never got a command"

    # Transitions of the UR5's size, every step of every episode, reached the learner.
    task = ReachTask(ARM)
    tr = [decode_transition(m, task.obs_dim, N) for m in msgs]
    assert [t["seq"] for t in tr] == list(range(EPISODES * T)), "gap in transitions"
    assert all(np.all(np.abs(t["action"]) <= 1.0) for t in tr)
    assert all(np.isfinite(t["obs"]).all() and np.isfinite(t["next_obs"]).all() for t in tr)
    # Weights came back, and the policy acted with them.
    assert n_weights > 0, out
    assert policy_final_weights_version(tmp_path) > 0  # its own closing line

    cmds = np.array([c for c, _ in commands])
    assert cmds.shape[1:] == (N,) and np.isfinite(cmds).all(), "malformed or non-finite command"
    if interface == "effort":
        assert np.all(np.abs(cmds) <= np.minimum(SAFE_EFFORT, ARM.effort_limits) + 1e-9)
    elif interface == "velocity":
        assert np.all(np.abs(cmds) <= ARM.velocity_limits + 1e-9)
        assert np.abs(cmds).max() > 0.3 * ARM.velocity_limits.min()  # it does command
    else:
        step = ARM.velocity_limits * CONTROL_DT
        # Inside the soft limits (or on the way back inside, one step at most) ...
        assert np.all(cmds >= ARM.joint_lower + MARGIN - step - 1e-9)
        assert np.all(cmds <= ARM.joint_upper - MARGIN + step + 1e-9)
        # ... and one period at the velocity limit from a position the arm was measured at.
        gap = np.abs((cmds[:, None, :] - states[None, :, :]) / step).max(axis=2).min(axis=1)
        assert gap.max() <= 1.0 + 1e-9, gap.max()
        assert np.abs(np.diff(states, axis=0)).max() > 0.1 * step.min()  # the arm moves
