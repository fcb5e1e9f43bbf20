"""Gymnasium environments for the 3-DOF reacher (random target and single fixed target)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from naf_ros.envs import FIXED_TARGET
from naf_ros.envs.sim import ReacherSim
from naf_ros.envs.task import ReacherTask

__all__ = ["FIXED_TARGET", "Reacher3DOFEnv"]


class Reacher3DOFEnv(gym.Env):
    """3-DOF planar reacher; actions are normalised efforts in [-1, 1]^3.

    Observation and reward come from :class:`ReacherTask` (joint states + target only).
    ``fixed_target`` selects the single-target variant used for the model-based work; its
    initial-state distribution is deliberately narrow, as time-varying linear models need.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        fixed_target: tuple[float, float] | None = None,
        control_dt: float = 0.02,
        init_qpos_noise: float = 0.1,
        init_qvel_noise: float = 0.005,
        ctrl_cost_weight: float = 0.02,
        model_path: str | None = None,
    ) -> None:
        self.sim = ReacherSim(model_path, control_dt=control_dt)
        self.task = ReacherTask(self.sim.arm, ctrl_cost_weight=ctrl_cost_weight)
        self.fixed_target = None if fixed_target is None else np.asarray(fixed_target, float)
        self.init_qpos_noise = float(init_qpos_noise)
        self.init_qvel_noise = float(init_qvel_noise)
        n = self.task.n_joints
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(n,), dtype=np.float64)
        self.observation_space = gym.spaces.Box(
            -np.inf, np.inf, shape=(self.task.obs_dim,), dtype=np.float64
        )
        self._obs = np.zeros(self.task.obs_dim)

    def sample_target(self) -> np.ndarray:
        if self.fixed_target is not None:
            return self.fixed_target.copy()
        reach = self.sim.arm.reach
        radius = self.np_random.uniform(0.15 * reach, 0.9 * reach)
        angle = self.np_random.uniform(-np.pi, np.pi)
        return np.array([radius * np.cos(angle), radius * np.sin(angle)])

    def _observe(self) -> np.ndarray:
        return self.task.observation(
            self.sim.joint_positions(), self.sim.joint_velocities(), self.sim.target
        )

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        n = self.task.n_joints
        q = self.np_random.uniform(-self.init_qpos_noise, self.init_qpos_noise, n)
        qd = self.np_random.uniform(-self.init_qvel_noise, self.init_qvel_noise, n)
        target = self.sample_target()
        if options and "target" in options:
            target = np.asarray(options["target"], float)
        self.sim.reset(q, qd, target)
        self._obs = self._observe()
        return self._obs.copy(), {"tip_distance": float(self.task.tip_distance(self._obs))}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=float), -1.0, 1.0)
        reward = float(self.task.reward(self._obs, action))
        self.sim.set_effort(self.task.effort_from_action(action))
        self.sim.step()
        self._obs = self._observe()
        info = {"tip_distance": float(self.task.tip_distance(self._obs))}
        return self._obs.copy(), reward, False, False, info

    # --- hooks for the true-model variant (paper §6.2) --------------------------------------
    def get_sim_state(self) -> np.ndarray:
        return self.sim.get_state()

    def set_sim_state(self, state: np.ndarray) -> None:
        self.sim.set_state(state)
        self._obs = self._observe()
