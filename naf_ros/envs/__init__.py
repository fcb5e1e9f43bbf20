"""Reaching environments; importing this module registers them with Gymnasium.

Registration is by entry-point string, so importing this package does not import MuJoCo
(nodes that only need the configuration stay light).
"""

import gymnasium as gym

EPISODE_STEPS = 50
REACHER_ID = "NafRos/Reacher3DOF-v0"
REACHER_FIXED_ID = "NafRos/Reacher3DOFFixed-v0"
FIXED_TARGET = (0.10, 0.20)  # the single-target variant's goal (m, base frame)

# The shipped 7-DOF arm (Panda kinematics, naf_ros/envs/assets/arm7dof.xml), reaching in 3D.
ARM7_ID = "NafRos/Arm7Reach-v0"
ARM7_FIXED_ID = "NafRos/Arm7ReachFixed-v0"
# The Panda's published joint velocity limits (rad/s): MJCF has no field for them.
ARM7_VELOCITY = (2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61)
# 25 cm from the tip at the home pose (0.307, 0, 0.487), in front of and below it.
ARM7_FIXED_TARGET = (0.45, 0.15, 0.35)
# Random targets: reachable tip positions in a box in front of the arm (m, base frame).
ARM7_TARGET_BOX = ((0.3, -0.3, 0.2), (0.6, 0.3, 0.6))


def register_envs() -> None:
    """Register the package's environments (idempotent)."""
    specs = {
        REACHER_ID: ("Reacher3DOFEnv", {}),
        REACHER_FIXED_ID: (
            "Reacher3DOFEnv",
            {"fixed_target": FIXED_TARGET, "init_qpos_noise": 0.02},
        ),
        ARM7_ID: (
            "ArmReachEnv",
            {"velocity": ARM7_VELOCITY, "target_box": ARM7_TARGET_BOX},
        ),
        ARM7_FIXED_ID: (
            "ArmReachEnv",
            {"velocity": ARM7_VELOCITY, "fixed_target": ARM7_FIXED_TARGET, "init_qpos_noise": 0.02},
        ),
    }
    for env_id, (cls, kwargs) in specs.items():
        if env_id not in gym.registry:
            gym.register(
                env_id,
                entry_point=f"naf_ros.envs.reacher_env:{cls}",
                max_episode_steps=EPISODE_STEPS,
                kwargs=kwargs or None,
            )


register_envs()
