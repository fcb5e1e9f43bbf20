"""MuJoCo physics of an arm, shared by the Gymnasium environments and the ROS sim bridge.

One class owns stepping so that a control period means exactly the same physics in the
in-process trainer and in the node graph (lockstep mode relies on that). It simulates any
arm an :class:`ArmModel` describes (MJCF or URDF), built from the same description the task's
kinematics read, driven through the command interface a ros2_control ForwardCommandController
would claim (:mod:`naf_ros.envs.command`):

- ``effort``: motors (``ctrlrange`` = the effort limits). No gravity compensation in the sim:
  like a plain effort interface (a UR's or Kinova's), the command has to carry the gravity
  torque (``ArmCommand`` adds it); the planar reacher has no gravity anyway.
- ``velocity``: a stiff velocity servo per joint, ``force = (kv + d) v_cmd - kv qd`` (``d`` the
  joint's damping, fed forward as a driver's friction model would), and
- ``position``: a PD servo per joint, ``force = kp (q_cmd - q) - kv qd``, stiff enough that a
  target one control period ahead is (nearly) reached within the period;

both capped at the effort limits (``forcerange``) with MuJoCo's gravity compensation on: the
driver's own controller holds the arm up, as a real velocity or position interface does.
Actuators for the chosen interface are added for the chain joints that have none; a file's
effort motor on a chain joint is its drive's description (effort limit) and becomes the
servo; a servo of another kind is an error. A mocap ``target`` body is added where the file
has none.
"""

from __future__ import annotations

import mujoco
import numpy as np

from naf_ros.config import EFFORT, POSITION, VELOCITY, check_interface
from naf_ros.envs.arm import ArmModel, ArmModelError

TARGET_BODY = "target"
# Servo bandwidth x control period: 6 reaches ~98% of a step within one period, critically
# damped, and stays well inside the integrators' stability (the shipped arms: omega*h <= 1.5).
SERVO_BANDWIDTH = 6.0
INERTIA_SAMPLES = 32  # configurations whose median joint inertia sets the servo gains


def _kind(act: mujoco.MjsActuator) -> str | None:
    """``effort``/``velocity``/``position`` for a motor or MuJoCo's servo shortcuts."""
    if act.gaintype != mujoco.mjtGain.mjGAIN_FIXED:
        return None
    if act.biastype == mujoco.mjtBias.mjBIAS_NONE:
        return EFFORT
    if act.biastype == mujoco.mjtBias.mjBIAS_AFFINE and act.biasprm[0] == 0:
        if act.biasprm[1] < 0:
            return POSITION
        if act.biasprm[1] == 0 and act.biasprm[2] < 0:
            return VELOCITY
    return None


class ArmSim:
    """MuJoCo arm with a mocap target, commanded through ``command_interface`` (module
    docstring) and stepped one control period at a time.

    ``target_dims`` is how many base-frame coordinates the target has (2: the planar
    reacher's xy-plane). The driver holds the arm up (MuJoCo's gravity compensation, exactly
    :meth:`ArmModel.gravity_effort` at every physics step) under velocity and position only
    (``driver_gravity_compensation``).
    """

    def __init__(
        self,
        arm: ArmModel,
        control_dt: float = 0.02,
        target_dims: int = 3,
        command_interface: str = EFFORT,
    ) -> None:
        self.arm = arm
        self.target_dims = int(target_dims)
        self.command_interface = check_interface(command_interface)
        self.driver_gravity_compensation = command_interface != EFFORT and arm.has_gravity
        self._servo_gains = (
            self._gains(control_dt) if command_interface != EFFORT else np.zeros((arm.n_joints, 2))
        )
        self.model = self._build()
        self.data = mujoco.MjData(self.model)
        substeps = control_dt / self.model.opt.timestep
        if substeps < 1 or abs(substeps - round(substeps)) > 1e-6:
            raise ValueError(
                f"control_dt={control_dt} must be a whole multiple of the physics timestep "
                f"{self.model.opt.timestep}"
            )
        self.n_substeps = int(round(substeps))
        self.control_dt = self.n_substeps * self.model.opt.timestep
        m = self.model
        ids = [m.joint(n).id for n in self.arm.joint_names]
        self._qpos_idx = np.array([m.jnt_qposadr[j] for j in ids])
        self._qvel_idx = np.array([m.jnt_dofadr[j] for j in ids])
        self._act_idx = np.array([self._motor(j) for j in ids])
        self._gear = np.array(
            [m.actuator_gear[a, 0] * m.actuator_gainprm[a, 0] for a in self._act_idx]
        )
        self._length_gear = np.array([m.actuator_gear[a, 0] for a in self._act_idx])
        self._mocap = m.body(TARGET_BODY).mocapid[0]
        if self._mocap < 0:
            raise ArmModelError(f"{self.arm.source}: body {TARGET_BODY!r} is not a mocap body")
        # The base is fixed to the world: its pose at the reference configuration is the pose.
        mujoco.mj_kinematics(m, self.data)
        self._base = m.body(self.arm.base).id
        self._base_pos = self.data.xpos[self._base].copy()
        self._base_rot = self.data.xmat[self._base].reshape(3, 3).copy()
        self._effort = np.zeros(self.arm.n_joints)
        self.command = np.zeros(self.arm.n_joints)

    def _gains(self, control_dt: float) -> np.ndarray:
        """(n, 2) servo gains: velocity ``(kv, d)``, position ``(kp, kv)``, from the median
        joint-space inertia over configurations within the limits (it varies with pose)."""
        m = self.arm.mj_model
        d = mujoco.MjData(m)
        dofs = [m.joint(n).dofadr[0] for n in self.arm.joint_names]
        rng = np.random.default_rng(0)
        lo = np.where(np.isfinite(self.arm.joint_lower), self.arm.joint_lower, -np.pi)
        hi = np.where(np.isfinite(self.arm.joint_upper), self.arm.joint_upper, np.pi)
        full = np.zeros((m.nv, m.nv))
        inertia = []
        for _ in range(INERTIA_SAMPLES):
            d.qpos[:] = m.qpos0
            for name, q in zip(self.arm.joint_names, rng.uniform(lo, hi)):
                d.qpos[m.joint(name).qposadr[0]] = q
            mujoco.mj_forward(m, d)
            mujoco.mj_fullM(m, d, full)
            inertia.append(np.diag(full)[dofs])
        inertia = np.median(inertia, axis=0)
        omega = SERVO_BANDWIDTH / control_dt
        damping = np.array([m.dof_damping[j] for j in dofs])
        if self.command_interface == VELOCITY:
            return np.stack([inertia * omega, damping], axis=1)
        return np.stack([inertia * omega**2, 2.0 * inertia * omega], axis=1)

    def _motor(self, joint: int) -> int:
        m = self.model
        for a in range(m.nu):
            if (
                m.actuator_trntype[a] == mujoco.mjtTrn.mjTRN_JOINT
                and m.actuator_trnid[a, 0] == joint
            ):
                return a
        raise AssertionError("every chain joint has a motor after _build")

    def _build(self) -> mujoco.MjModel:
        """The arm's own spec plus the interface's actuators and a target."""
        spec = self.arm.spec()
        interface = self.command_interface
        driven: dict[str, mujoco.MjsActuator] = {}
        for act in spec.actuators:
            if act.trntype == mujoco.mjtTrn.mjTRN_JOINT and act.target in self.arm.joint_names:
                kind = _kind(act)
                if kind != interface and not (kind == EFFORT and interface != EFFORT):
                    wanted = "an effort motor" if interface == EFFORT else f"a {interface} servo"
                    raise ArmModelError(
                        f"{self.arm.source}: actuator {act.name!r} on joint {act.target!r} is "
                        f"not {wanted}; the sim commands {interface}s"
                    )
                driven[act.target] = act
        limits = dict(zip(self.arm.joint_names, self.arm.effort_limits))
        for k, name in enumerate(self.arm.joint_names):
            act = driven.get(name)
            if interface == EFFORT:
                if act is None:
                    spec.add_actuator(
                        name=f"{name}_motor",
                        target=name,
                        trntype=mujoco.mjtTrn.mjTRN_JOINT,
                        ctrllimited=mujoco.mjtLimited.mjLIMITED_TRUE,
                        ctrlrange=[-limits[name], limits[name]],
                    )
                continue
            if act is not None and _kind(act) == interface:
                continue  # the file's own servo, with its own gains
            if act is None:
                act = spec.add_actuator(
                    name=f"{name}_{interface}",
                    target=name,
                    trntype=mujoco.mjtTrn.mjTRN_JOINT,
                )
            self._make_servo(act, limits[name], *self._servo_gains[k])
        if not any(b.name == TARGET_BODY for b in spec.bodies):
            target = spec.worldbody.add_body(name=TARGET_BODY, mocap=True)
            target.add_geom(
                type=mujoco.mjtGeom.mjGEOM_SPHERE,
                size=[0.015, 0, 0],
                contype=0,
                conaffinity=0,
                rgba=[0.2, 0.9, 0.2, 0.6],
            )
        if interface != EFFORT and spec.option.integrator == mujoco.mjtIntegrator.mjINT_EULER:
            # The servos' velocity terms implicit: a stiff kv stays stable at the timestep.
            spec.option.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
        if self.driver_gravity_compensation:
            for body in spec.bodies:
                if body.name not in (spec.worldbody.name, TARGET_BODY) and not body.mocap:
                    body.gravcomp = 1.0
        try:
            return spec.compile()
        except Exception as err:
            raise ArmModelError(f"{self.arm.source}: MuJoCo cannot simulate it: {err}") from None

    def _make_servo(self, act: mujoco.MjsActuator, limit: float, a: float, b: float) -> None:
        """Turn ``act`` into this interface's servo: velocity ``(kv, d)``, position ``(kp, kv)``."""
        act.gear = [1.0, 0, 0, 0, 0, 0]
        act.gaintype = mujoco.mjtGain.mjGAIN_FIXED
        act.biastype = mujoco.mjtBias.mjBIAS_AFFINE
        act.ctrllimited = mujoco.mjtLimited.mjLIMITED_FALSE
        act.forcelimited = mujoco.mjtLimited.mjLIMITED_TRUE
        act.forcerange = [-limit, limit]
        gain, bias = np.zeros(10), np.zeros(10)
        if self.command_interface == VELOCITY:
            gain[0], bias[2] = a + b, -a
        else:
            gain[0], bias[1], bias[2] = a, -a, -b
        act.gainprm, act.biasprm = gain, bias

    @property
    def joint_names(self) -> tuple[str, ...]:
        return self.arm.joint_names

    @property
    def time(self) -> float:
        return float(self.data.time)

    def reset(self, q: np.ndarray, qd: np.ndarray, target: np.ndarray) -> None:
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[self._qpos_idx] = q
        self.data.qvel[self._qvel_idx] = qd
        self.set_target(target)
        if self.command_interface == EFFORT:
            self.set_effort(np.zeros(self.arm.n_joints))
        else:  # at rest: zero velocity, or hold where it starts
            self.set_command(q if self.command_interface == POSITION else np.zeros(len(q)))
        mujoco.mj_forward(self.model, self.data)

    def set_target(self, target: np.ndarray) -> None:
        """Place the target (``target_dims`` base-frame coordinates; the rest stays)."""
        target = np.asarray(target, dtype=float)[: self.target_dims]
        if self._base == 0:
            self.data.mocap_pos[self._mocap, : self.target_dims] = target
            return
        point = np.zeros(3)
        point[: self.target_dims] = target
        self.data.mocap_pos[self._mocap] = self._base_pos + self._base_rot @ point

    @property
    def target(self) -> np.ndarray:
        """The target in base-frame coordinates (``target_dims`` of them)."""
        pos = self.data.mocap_pos[self._mocap]
        if self._base != 0:
            pos = self._base_rot.T @ (pos - self._base_pos)
        return pos[: self.target_dims].copy()

    def set_effort(self, effort: np.ndarray) -> np.ndarray:
        """Apply joint efforts (N·m), clipped to the model's limits; non-finite -> zero."""
        if self.command_interface != EFFORT:
            raise ValueError(f"the sim takes {self.command_interface} commands, not efforts")
        e = np.asarray(effort, dtype=float)
        e = np.where(np.isfinite(e), e, 0.0)
        e = np.clip(e, -self.arm.effort_limits, self.arm.effort_limits)
        self._effort = e
        self.command = e
        self.data.ctrl[self._act_idx] = e / self._gear
        return e

    def set_command(self, command: np.ndarray) -> np.ndarray:
        """Apply one command of the sim's interface (what the controller would forward);
        a non-finite entry means zero effort / zero velocity / hold that joint where it is."""
        if self.command_interface == EFFORT:
            return self.set_effort(command)
        c = np.asarray(command, dtype=float)
        keep = 0.0 if self.command_interface == VELOCITY else self.joint_positions()
        c = np.where(np.isfinite(c), c, keep)
        self.command = c
        self.data.ctrl[self._act_idx] = c * self._length_gear
        return c

    @property
    def effort(self) -> np.ndarray:
        """The joint efforts the actuators apply: the commanded (clipped) effort under the
        effort interface, the servos' force (after the last step) otherwise."""
        if self.command_interface == EFFORT:
            return self._effort
        return self.data.actuator_force[self._act_idx] * self._length_gear

    def step(self) -> None:
        """Advance exactly one control period of physics with the current effort."""
        mujoco.mj_step(self.model, self.data, nstep=self.n_substeps)

    def joint_positions(self) -> np.ndarray:
        return self.data.qpos[self._qpos_idx].copy()

    def joint_velocities(self) -> np.ndarray:
        return self.data.qvel[self._qvel_idx].copy()

    def get_state(self) -> np.ndarray:
        """Full physics state for cloning (true-model rollouts)."""
        return np.concatenate([[self.data.time], self.data.qpos, self.data.qvel, self.target])

    def set_state(self, state: np.ndarray) -> None:
        nq, nv = self.model.nq, self.model.nv
        self.data.time = state[0]
        self.data.qpos[:] = state[1 : 1 + nq]
        self.data.qvel[:] = state[1 + nq : 1 + nq + nv]
        self.set_target(state[1 + nq + nv :])
        mujoco.mj_forward(self.model, self.data)
