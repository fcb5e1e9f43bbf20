"""Real reacher rollouts as test data, shared by the unit tests and the node tests.

The unit tests of the core (learner, episode assembly) and the tests of the nodes that wrap
it feed the same kind of data: episodes of ``NafRos/Reacher3DOFFixed-v0`` driven by
temporally correlated random actions, so a fitted model has something smooth to fit.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from std_msgs.msg import Float64MultiArray

import naf_ros.envs  # noqa: F401  (registers the reacher)
from naf_ros.core.dynamics import DynamicsPrior, fit_linear_gaussian
from naf_ros.core.joint_dynamics import add_joint_arrays, fit_joint_space
from naf_ros.envs.task import ReacherTask
from naf_ros.ros.codec import pack_arrays

ENV_ID = "NafRos/Reacher3DOFFixed-v0"
T = 50  # the fixed-target reacher's episode length


def rollouts(n_episodes: int, seed: int = 0, producer: int = 0) -> list[dict]:
    """Real env transitions with temporally correlated random actions, seq from 0."""
    env = gym.make(ENV_ID)
    rng = np.random.default_rng(seed)
    out, seq = [], 0
    for ep in range(n_episodes):
        obs, _ = env.reset(seed=seed * 1000 + ep)
        noise = np.zeros(3)
        for t in range(T):
            noise = 0.8 * noise + 0.3 * rng.standard_normal(3)
            action = np.clip(noise, -1.0, 1.0)
            nxt, reward, term, trunc, _ = env.step(action)
            out.append(
                dict(
                    producer=producer,
                    seq=seq,
                    episode=ep,
                    t=t,
                    obs=obs,
                    action=action,
                    reward=float(reward),
                    next_obs=nxt,
                    terminal=term,
                    truncated=trunc,
                )
            )
            seq, obs = seq + 1, nxt
    env.close()
    return out


def episode_arrays(
    n: int, seed: int, horizon: int = T
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """X (n, H+1, 13), U (n, H, 3), R (n, H) from the real env with OU-like random actions."""
    env = gym.make(ENV_ID, max_episode_steps=horizon)
    rng = np.random.default_rng(seed)
    H = horizon
    X, U, R = np.zeros((n, H + 1, 13)), np.zeros((n, H, 3)), np.zeros((n, H))
    for e in range(n):
        X[e, 0], _ = env.reset(seed=seed * 1000 + e)
        noise = np.zeros(3)
        for t in range(H):
            noise = 0.8 * noise + 0.3 * rng.standard_normal(3)
            U[e, t] = np.clip(noise, -1.0, 1.0)
            X[e, t + 1], R[e, t], *_ = env.step(U[e, t])
    env.close()
    return X, U, R


def fitted_model_message(data: list[dict], version: int, joint: bool = False) -> Float64MultiArray:
    """A linear-Gaussian model fitted to ``data`` (whole episodes), as the fitter sends it."""
    X = np.array(
        [
            [tr["obs"] for tr in data[e * T : (e + 1) * T]] + [data[(e + 1) * T - 1]["next_obs"]]
            for e in range(len(data) // T)
        ]
    )
    U = np.array([[tr["action"] for tr in data[e * T : (e + 1) * T]] for e in range(len(X))])
    prior = DynamicsPrior()
    prior.update(X, U)
    arrays = fit_linear_gaussian(X, U, prior=prior).to_arrays()
    if joint:
        add_joint_arrays(arrays, fit_joint_space(ReacherTask(), X, U, DynamicsPrior()))
    arrays["version"] = float(version)
    return pack_arrays(arrays)
