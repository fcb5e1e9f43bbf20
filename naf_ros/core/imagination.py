"""Imagination rollouts (paper §5.2): roll the current policy through a model into R_f.

Q-learning needs on-policy *mistakes*, so the rolled-out actions carry exploration noise; the
end of an imagined rollout is a truncation, never a terminal, so targets bootstrap through it.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def imagine(
    model: Any,
    policy,
    reward,
    states: np.ndarray,
    steps: np.ndarray,
    length: int,
    horizon: int | None,
    noise_scale: float,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Roll ``policy`` (batched mu) ``length`` steps through ``model`` from ``states``.

    Time-varying models stop at their horizon. Returns stacked transitions (terminal = 0:
    the end of an imagined rollout is a truncation, so targets bootstrap through it).
    """
    obs, act, rew, nxt, stp = [], [], [], [], []
    x = np.asarray(states, dtype=np.float64)
    t = np.asarray(steps, dtype=np.int64)
    for _ in range(length):
        if horizon is not None:
            alive = t < horizon
            x, t = x[alive], t[alive]
        if len(x) == 0:
            break
        u = policy(x)
        if noise_scale > 0:
            u = u + noise_scale * rng.standard_normal(u.shape)
        u = np.clip(u, -1.0, 1.0)
        x_next = model.predict(t, x, u)
        ok = np.isfinite(x_next).all(axis=1)
        obs.append(x[ok])
        act.append(u[ok])
        rew.append(np.asarray(reward(x[ok], u[ok]), dtype=np.float64))
        nxt.append(x_next[ok])
        stp.append(t[ok])
        x, t = x_next[ok], t[ok] + 1
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
