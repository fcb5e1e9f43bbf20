"""Imagination rollouts (paper §5.2): roll the current policy through a model into R_f.

Q-learning needs on-policy *mistakes*, so the rolled-out actions carry exploration noise; the
end of an imagined rollout is a truncation, never a terminal, so targets bootstrap through it.
The noise is either i.i.d. Gaussian (a float scale) or a :class:`RolloutNoise`: the configured
exploration process, one independent copy per rollout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch


class RolloutNoise:
    """The exploration process of ``exploration.kind``, batched over rollouts.

    Every rollout has its own state n (zero at its start) advanced as n <- (1 - theta) n + e,
    like the real episodes' :mod:`naf_ros.core.noise`: Gaussian innovations of std ``scale``
    for 'ou' (theta = ``ou_theta``) and 'gaussian' (theta = 1), e ~ N(0, c P(x)^-1) for
    'precision' (sampled by a triangular solve on L(x), never by inverting P; c =
    scale^2 / mean tr(P^-1)/n over the batch keeps the overall size at ``scale``), and none
    for 'none'.
    """

    def __init__(
        self,
        kind: str,
        n_rollouts: int,
        act_dim: int,
        scale: float,
        theta: float,
        rng: np.random.Generator,
        lower: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        if kind == "precision" and lower is None:
            raise ValueError("precision noise needs L(x)")
        self.kind, self.scale, self.rng, self.lower = kind, float(scale), rng, lower
        self.theta = 1.0 if kind == "gaussian" else float(theta)
        self.state = np.zeros((int(n_rollouts), int(act_dim)))

    def innovation(self, x: np.ndarray) -> np.ndarray:
        shape = (len(x), self.state.shape[1])
        if self.kind == "none":
            return np.zeros(shape)
        if self.kind != "precision":
            return self.scale * self.rng.standard_normal(shape)
        L = torch.as_tensor(np.array(self.lower(x), np.float64))
        eye = torch.eye(shape[1], dtype=L.dtype).expand_as(L)
        inv_l = torch.linalg.solve_triangular(L, eye, upper=False)  # tr(P^-1) = |L^-1|_F^2
        mean_trace = float((inv_l**2).sum(dim=(1, 2)).mean()) / shape[1]
        z = torch.as_tensor(self.rng.standard_normal(shape)).unsqueeze(-1)
        y = torch.linalg.solve_triangular(L.transpose(1, 2), z, upper=True)[..., 0]
        c = self.scale**2 / mean_trace if np.isfinite(mean_trace) and mean_trace > 0 else 0.0
        out = np.sqrt(c) * y.numpy()
        return np.where(np.isfinite(out), out, 0.0)

    def __call__(self, x: np.ndarray, rollout: np.ndarray) -> np.ndarray:
        """Noise for states ``x`` of rollouts ``rollout`` (indices into the batch)."""
        n = (1.0 - self.theta) * self.state[rollout] + self.innovation(x)
        self.state[rollout] = n
        return n


def imagine(
    model: Any,
    policy,
    reward,
    states: np.ndarray,
    steps: np.ndarray,
    length: int,
    horizon: int | None,
    noise: float | RolloutNoise,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Roll ``policy`` (batched mu) ``length`` steps through ``model`` from ``states``.

    ``noise`` is an i.i.d. Gaussian scale or a :class:`RolloutNoise` with one state per
    start. Time-varying models stop at their horizon. Returns stacked transitions (terminal =
    0: the end of an imagined rollout is a truncation, so targets bootstrap through it).
    """
    obs, act, rew, nxt, stp = [], [], [], [], []
    x = np.asarray(states, dtype=np.float64)
    t = np.asarray(steps, dtype=np.int64)
    rollout = np.arange(len(x))
    for _ in range(length):
        if horizon is not None:
            alive = t < horizon
            x, t, rollout = x[alive], t[alive], rollout[alive]
        if len(x) == 0:
            break
        u = policy(x)
        if isinstance(noise, RolloutNoise):
            u = u + noise(x, rollout)
        elif noise > 0:
            u = u + noise * rng.standard_normal(u.shape)
        u = np.clip(u, -1.0, 1.0)
        x_next = model.predict(t, x, u)
        ok = np.isfinite(x_next).all(axis=1)
        obs.append(x[ok])
        act.append(u[ok])
        rew.append(np.asarray(reward(x[ok], u[ok]), dtype=np.float64))
        nxt.append(x_next[ok])
        stp.append(t[ok])
        x, t, rollout = x_next[ok], t[ok] + 1, rollout[ok]
    if not obs:
        return {
            "obs": np.zeros((0, states.shape[1])),
            "action": np.zeros((0, 0)),
            "reward": np.zeros(0),
            "next_obs": np.zeros((0, states.shape[1])),
            "step": np.zeros(0, np.int64),
        }
    return {
        "obs": np.concatenate(obs),
        "action": np.concatenate(act),
        "reward": np.concatenate(rew),
        "next_obs": np.concatenate(nxt),
        "step": np.concatenate(stp),
    }
