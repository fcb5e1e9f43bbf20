"""MuJoCo physics of the reacher, shared by the Gymnasium environment and the ROS sim bridge.

One class owns stepping so that a control period means exactly the same physics in the
in-process trainer and in the node graph (lockstep mode relies on that).
"""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np

from naf_ros.envs.task import ArmModel, default_model_path


class ReacherSim:
    """Effort-controlled MuJoCo arm with a mocap target, stepped one control period at a time."""

    def __init__(self, model_path: str | Path | None = None, control_dt: float = 0.02) -> None:
        self.model_path = Path(model_path) if model_path is not None else default_model_path()
        self.model = mujoco.MjModel.from_xml_path(str(self.model_path))
        self.data = mujoco.MjData(self.model)
        self.arm = ArmModel.from_mjcf(self.model_path)
        substeps = control_dt / self.model.opt.timestep
        if substeps < 1 or abs(substeps - round(substeps)) > 1e-6:
            raise ValueError(
                f"control_dt={control_dt} must be a whole multiple of the physics timestep "
                f"{self.model.opt.timestep}"
            )
        self.n_substeps = int(round(substeps))
        self.control_dt = self.n_substeps * self.model.opt.timestep
        self._qpos_idx = np.array(
            [self.model.jnt_qposadr[self.model.joint(n).id] for n in self.arm.joint_names]
        )
        self._qvel_idx = np.array(
            [self.model.jnt_dofadr[self.model.joint(n).id] for n in self.arm.joint_names]
        )
        self._act_idx = np.array(
            [
                next(
                    a
                    for a in range(self.model.nu)
                    if self.model.actuator_trnid[a, 0] == self.model.joint(n).id
                )
                for n in self.arm.joint_names
            ]
        )
        self._mocap = self.model.body("target").mocapid[0]
        self.effort = np.zeros(self.arm.n_joints)

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
        self.data.mocap_pos[self._mocap, :2] = np.asarray(target, dtype=float)[:2]

    @property
    def target(self) -> np.ndarray:
        return self.data.mocap_pos[self._mocap, :2].copy()

    def set_effort(self, effort: np.ndarray) -> np.ndarray:
        """Apply joint efforts (N·m), clipped to the model's limits; non-finite -> zero."""
        e = np.asarray(effort, dtype=float)
        e = np.where(np.isfinite(e), e, 0.0)
        e = np.clip(e, -self.arm.effort_limits, self.arm.effort_limits)
        self.effort = e
        self.data.ctrl[self._act_idx] = e
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
