"""The simulator as the dynamics model (paper §6.2: imagination's best case)."""

from __future__ import annotations

import numpy as np

from naf_ros.config import ConfigError
from naf_ros.core.dynamics import LinearGaussianDynamics


class TrueSimModel:
    """The simulator as the model: set the state an observation describes, step, observe.

    Only environments whose observation determines the physics state (the package's reacher:
    joint angles, velocities and target) can serve; others get a clear config error.
    """

    def __init__(self, env_id: str, env_kwargs: dict) -> None:
        import gymnasium as gym

        import naf_ros.envs  # noqa: F401  (registers the reacher ids)

        self.env = gym.make(env_id, **env_kwargs).unwrapped
        if not (hasattr(self.env, "sim") and hasattr(self.env, "task")):
            raise ConfigError(
                f"model_based.model: 'true' needs an environment whose observation sets the "
                f"simulator state (NafRos reacher); {env_id!r} has none"
            )
        self.task = self.env.task
        self.sim = self.env.sim
        self.command = self.env.command

    def predict(self, t, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(x)
        u = np.atleast_2d(u)
        out = np.empty_like(x)
        for i in range(len(x)):
            q, qd, target = self.task.joint_state_from_observation(x[i])
            self.sim.reset(q, qd, target)
            self.sim.set_command(self.command.command(u[i], q))
            self.sim.step()
            out[i] = self.task.observation(
                self.sim.joint_positions(), self.sim.joint_velocities(), self.sim.target
            )
        return out

    def linearize(
        self, x_traj: np.ndarray, u_traj: np.ndarray, eps: float = 1e-5, noise_var: float = 1e-6
    ) -> LinearGaussianDynamics:
        """Finite-difference Jacobians along a nominal trajectory (iLQG on the true model)."""
        T, nx, nu = len(u_traj), x_traj.shape[1], u_traj.shape[1]
        F = np.zeros((T, nx, nx + nu))
        f = np.zeros((T, nx))
        for t in range(T):
            xu = np.concatenate([x_traj[t], u_traj[t]])
            pert = np.concatenate([xu + eps * np.eye(nx + nu), xu - eps * np.eye(nx + nu)])
            nxt = self.predict(t, pert[:, :nx], pert[:, nx:])
            F[t] = ((nxt[: nx + nu] - nxt[nx + nu :]) / (2 * eps)).T
            f[t] = self.predict(t, x_traj[t], u_traj[t])[0] - F[t] @ xu
        N = np.broadcast_to(noise_var * np.eye(nx), (T, nx, nx)).copy()
        return LinearGaussianDynamics(
            F=F, f=f, N=N, x0_mean=x_traj[0].copy(), x0_cov=noise_var * np.eye(nx)
        )
