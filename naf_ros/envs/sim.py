"""MuJoCo physics of an arm, shared by the Gymnasium environments and the ROS sim bridge.

One class owns stepping so that a control period means exactly the same physics in the
in-process trainer and in the node graph (lockstep mode relies on that). It simulates any
arm an :class:`ArmModel` describes (MJCF or URDF), built from the same description the task's
kinematics read: effort motors are added for the chain joints that have none (``ctrlrange`` =
the effort limits), and a mocap ``target`` body where the file has none.
"""

from __future__ import annotations

import mujoco
import numpy as np

from naf_ros.envs.arm import ArmModel, ArmModelError

TARGET_BODY = "target"


class ArmSim:
    """Effort-controlled MuJoCo arm with a mocap target, stepped one control period at a time.

    ``gravity_compensation`` (default: on where the model has gravity) holds the arm up as a
    gravity-compensated effort interface does (Franka's, or a driver adding the model's
    gravity torques): MuJoCo's per-body gravity compensation applies exactly the bias force at
    zero velocity (:meth:`ArmModel.gravity_effort`) at every physics step, outside the effort
    limits, so commanded efforts act on a weightless arm. ``target_dims`` is how many base-
    frame coordinates the target has (2: the planar reacher's xy-plane).
    """

    def __init__(
        self,
        arm: ArmModel,
        control_dt: float = 0.02,
        target_dims: int = 3,
        gravity_compensation: bool | None = None,
    ) -> None:
        self.arm = arm
        self.target_dims = int(target_dims)
        self.gravity_compensation = (
            self.arm.has_gravity if gravity_compensation is None else bool(gravity_compensation)
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
        self._mocap = m.body(TARGET_BODY).mocapid[0]
        if self._mocap < 0:
            raise ArmModelError(f"{self.arm.source}: body {TARGET_BODY!r} is not a mocap body")
        # The base is fixed to the world: its pose at the reference configuration is the pose.
        mujoco.mj_kinematics(m, self.data)
        self._base = m.body(self.arm.base).id
        self._base_pos = self.data.xpos[self._base].copy()
        self._base_rot = self.data.xmat[self._base].reshape(3, 3).copy()
        self.effort = np.zeros(self.arm.n_joints)

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
        """The arm's own spec plus what effort control and a target need."""
        spec = self.arm.spec()
        driven: dict[str, object] = {}
        for act in spec.actuators:
            if act.trntype == mujoco.mjtTrn.mjTRN_JOINT and act.target in self.arm.joint_names:
                if (
                    act.gaintype != mujoco.mjtGain.mjGAIN_FIXED
                    or act.biastype != mujoco.mjtBias.mjBIAS_NONE
                ):
                    raise ArmModelError(
                        f"{self.arm.source}: actuator {act.name!r} on joint {act.target!r} is not "
                        "an effort motor; the sim commands efforts"
                    )
                driven[act.target] = act
        for name, limit in zip(self.arm.joint_names, self.arm.effort_limits):
            if name not in driven:
                spec.add_actuator(
                    name=f"{name}_motor",
                    target=name,
                    trntype=mujoco.mjtTrn.mjTRN_JOINT,
                    ctrllimited=mujoco.mjtLimited.mjLIMITED_TRUE,
                    ctrlrange=[-limit, limit],
                )
        if not any(b.name == TARGET_BODY for b in spec.bodies):
            target = spec.worldbody.add_body(name=TARGET_BODY, mocap=True)
            target.add_geom(
                type=mujoco.mjtGeom.mjGEOM_SPHERE,
                size=[0.015, 0, 0],
                contype=0,
                conaffinity=0,
                rgba=[0.2, 0.9, 0.2, 0.6],
            )
        if self.gravity_compensation:
            for body in spec.bodies:
                if body.name not in (spec.worldbody.name, TARGET_BODY) and not body.mocap:
                    body.gravcomp = 1.0
        try:
            return spec.compile()
        except Exception as err:
            raise ArmModelError(f"{self.arm.source}: MuJoCo cannot simulate it: {err}") from None

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
        self.set_effort(np.zeros(self.arm.n_joints))
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
        e = np.asarray(effort, dtype=float)
        e = np.where(np.isfinite(e), e, 0.0)
        e = np.clip(e, -self.arm.effort_limits, self.arm.effort_limits)
        self.effort = e
        self.data.ctrl[self._act_idx] = e / self._gear
        return e

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
