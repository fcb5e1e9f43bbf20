"""The reaching task and episode length as the configured ``env`` section defines them.

The ROS nodes rebuild exactly what the in-process trainer's ``gym.make`` would, without
making an environment: the learning side only needs the task (observation, reward and its
derivatives, forward kinematics). Light to import: gymnasium and MuJoCo only when called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from naf_ros.config import ConfigError, EnvConfig

if TYPE_CHECKING:
    from naf_ros.envs.task import ReachTask

REACHER_ENTRY_POINT = "naf_ros.envs.reacher_env:Reacher3DOFEnv"
ARM_ENTRY_POINT = "naf_ros.envs.reacher_env:ArmReachEnv"
DEFAULT_EPISODE_STEPS = 50


def reacher_env_kwargs(env_cfg: EnvConfig, require_registered: bool = True) -> dict:
    """Constructor kwargs of the configured reacher (registry kwargs + ``env.kwargs``).

    The nodes rebuild exactly what the in-process trainer's ``gym.make`` would, so control
    period, reward weights, initial-state noise and target agree between the two paths.
    The learning-side nodes only need the task, so they accept an unregistered id
    (``require_registered=False``: kwargs then come from ``env.kwargs`` alone).
    """
    import gymnasium as gym

    import naf_ros.envs  # noqa: F401  (registers the reacher ids)

    kwargs: dict = {}
    if env_cfg.id in gym.registry:
        spec = gym.spec(env_cfg.id)
        if spec.entry_point != REACHER_ENTRY_POINT:
            raise ConfigError(
                f"env.id: {env_cfg.id!r} is not the naf_ros reacher; the ROS graph simulates "
                "and learns that task only (its reward must be computable from observations)"
            )
        kwargs.update(spec.kwargs or {})
    elif require_registered:
        raise ConfigError(f"env.id: {env_cfg.id!r} is not a registered environment")
    kwargs.update(env_cfg.kwargs or {})
    return kwargs


def episode_steps(env_cfg: EnvConfig) -> int:
    """Episode length T: ``env.max_episode_steps``, else the registered time limit."""
    if env_cfg.max_episode_steps is not None:
        return int(env_cfg.max_episode_steps)
    import gymnasium as gym

    import naf_ros.envs  # noqa: F401

    if env_cfg.id in gym.registry and gym.spec(env_cfg.id).max_episode_steps:
        return int(gym.spec(env_cfg.id).max_episode_steps)
    return DEFAULT_EPISODE_STEPS


def _arm_env_kwargs(env_cfg: EnvConfig) -> dict | None:
    """Constructor kwargs when ``env.id`` is a registered :class:`ArmReachEnv`, else None."""
    import gymnasium as gym

    import naf_ros.envs  # noqa: F401

    if env_cfg.id not in gym.registry or gym.spec(env_cfg.id).entry_point != ARM_ENTRY_POINT:
        return None
    return {**(gym.spec(env_cfg.id).kwargs or {}), **(env_cfg.kwargs or {})}


def reacher_task(env_cfg: EnvConfig) -> ReachTask:
    """The task the configured environment uses, so rewards and derivatives match the sim's:
    the 3-D reach of an arm environment's arm, else the planar 3-DOF reacher's."""
    from naf_ros.envs.arm import ArmModel
    from naf_ros.envs.task import ReacherTask, ReachTask

    weight_key, default_weight = "ctrl_cost_weight", 0.02
    arm_kwargs = _arm_env_kwargs(env_cfg)
    if arm_kwargs is not None:
        from naf_ros.envs.reacher_env import arm_from_kwargs

        weight = float(arm_kwargs.get(weight_key, default_weight))
        return ReachTask(arm_from_kwargs(arm_kwargs), ctrl_cost_weight=weight)
    kwargs = reacher_env_kwargs(env_cfg, require_registered=False)
    arm = ArmModel.from_mjcf(kwargs.get("model_path"))
    return ReacherTask(arm, ctrl_cost_weight=float(kwargs.get(weight_key, default_weight)))
