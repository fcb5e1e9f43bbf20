"""Reacher environments; importing this module registers them with Gymnasium.

Registration is by entry-point string, so importing this package does not import MuJoCo
(nodes that only need the task module stay light).
"""

import gymnasium as gym

EPISODE_STEPS = 50
REACHER_ID = "NafRos/Reacher3DOF-v0"
REACHER_FIXED_ID = "NafRos/Reacher3DOFFixed-v0"
FIXED_TARGET = (0.10, 0.20)  # the single-target variant's goal (m, base frame)


def register_envs() -> None:
    """Register the package's environments (idempotent)."""
    if REACHER_ID not in gym.registry:
        gym.register(
            REACHER_ID,
            entry_point="naf_ros.envs.reacher_env:Reacher3DOFEnv",
            max_episode_steps=EPISODE_STEPS,
        )
    if REACHER_FIXED_ID not in gym.registry:
        gym.register(
            REACHER_FIXED_ID,
            entry_point="naf_ros.envs.reacher_env:Reacher3DOFEnv",
            max_episode_steps=EPISODE_STEPS,
            kwargs={"fixed_target": FIXED_TARGET, "init_qpos_noise": 0.02},
        )


register_envs()
