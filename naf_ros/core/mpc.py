"""iLQG in model-predictive mode on the true model (paper §8.6).

For random targets or varied starts one time-varying controller cannot serve every episode,
so the paper re-plans from the current state at every step. Each call: roll the warm-started
plan through the model, linearise along it, solve the finite-horizon LQR on the quadratised
reward, and accept the new plan by a backtracking line search on the model's own return.
"""

from __future__ import annotations

import numpy as np

from naf_ros.core.ilqg import (
    QuuNotPositiveDefinite,
    backward_pass,
    propagate,
    quadratize_reward,
)


class MPCController:
    """Receding-horizon iLQR; ``act(t, x, rng)`` like a linear-Gaussian controller's."""

    def __init__(
        self,
        model,
        task,
        act_dim: int,
        plan_horizon: int = 10,
        iterations: int = 1,
        noise_std: float = 0.0,
    ) -> None:
        self.model, self.task = model, task
        self.H, self.iterations, self.noise_std = int(plan_horizon), int(iterations), noise_std
        self.plan = np.zeros((self.H, act_dim))
        self.failures = 0

    def reset(self) -> None:
        self.plan[:] = 0.0

    def _rollout(self, x0: np.ndarray, actions: np.ndarray, feedback=None):
        xs, us, total = [x0], [], 0.0
        x = x0
        for k in range(len(actions)):
            u = actions[k]
            if feedback is not None:
                gains, x_ref = feedback
                u = u + gains[k] @ (x - x_ref[k])
            u = np.clip(u, -1.0, 1.0)
            total += float(self.task.reward(x, u))
            x = self.model.predict(k, x, u)[0]
            xs.append(x)
            us.append(u)
        return np.array(xs), np.array(us), total

    def _improve(self, x0: np.ndarray, u_nom: np.ndarray) -> np.ndarray:
        x_nom, u_nom, ret_nom = self._rollout(x0, u_nom)
        dyn = self.model.linearize(x_nom, u_nom)
        traj, _ = propagate(
            dyn,
            np.zeros((len(u_nom), u_nom.shape[1], x0.size)),
            u_nom,
            np.broadcast_to(1e-8 * np.eye(u_nom.shape[1]), (len(u_nom),) + (u_nom.shape[1],) * 2),
        )
        C, c, _, _ = quadratize_reward(self.task.reward_derivatives, traj)
        try:
            res = backward_pass(dyn, C, c)
        except QuuNotPositiveDefinite:
            self.failures += 1
            return u_nom
        step = np.einsum("tij,tj->ti", res.K, x_nom[:-1]) + res.a - u_nom
        gains = (res.K, x_nom[:-1])
        for alpha in (1.0, 0.5, 0.25, 0.1):
            _, u_new, ret = self._rollout(x0, u_nom + alpha * step, gains)
            if ret > ret_nom:
                return u_new
        return u_nom

    def act(
        self, t: int, x: np.ndarray, rng: np.random.Generator | None = None, noise: bool = True
    ) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        if t == 0:
            self.reset()
        plan = self.plan.copy()
        for _ in range(self.iterations):
            plan = self._improve(x, plan)
        self.plan = np.concatenate([plan[1:], plan[-1:]])
        u = plan[0]
        if noise and self.noise_std > 0 and rng is not None:
            u = u + self.noise_std * rng.standard_normal(u.shape)
        return np.clip(np.where(np.isfinite(u), u, 0.0), -1.0, 1.0)
