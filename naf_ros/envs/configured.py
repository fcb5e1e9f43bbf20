"""The reaching environment, its task and episode length as the configuration defines them.

One place turns the ``env`` and ``arm`` sections into the environment's constructor kwargs,
so the in-process trainer's ``gym.make``, the sim bridge's environment and the learning
nodes' task are built from exactly the same arm: control period, reward weights, target and
the user's arm description (``arm.model``: a file, or the ``robot_description`` string a
node received) cannot disagree between them. The learning side only needs the task
(observation, reward and its derivatives, forward kinematics), not an environment.

Light to import: gymnasium and MuJoCo only when called.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any

from naf_ros.config import ArmConfig, Config, ConfigError, EnvConfig

if TYPE_CHECKING:
    from naf_ros.envs.reacher_env import ArmReachEnv
    from naf_ros.envs.task import ReachTask

REACHER_ENTRY_POINT = "naf_ros.envs.reacher_env:Reacher3DOFEnv"
ARM_ENTRY_POINT = "naf_ros.envs.reacher_env:ArmReachEnv"
DEFAULT_EPISODE_STEPS = 50
# ``arm.model`` naming the topic instead of a file (ROS nodes only).
ROBOT_DESCRIPTION = "robot_description"
EXAMPLE_ARM_ID = "NafRos/Arm7Reach-v0"
# arm.<key> -> ArmReachEnv keyword; the first five describe the arm itself.
ARM_DESCRIPTION_KEYS = ("model", "tip", "tip_offset", "base", "joints")
ARM_KEYS = ARM_DESCRIPTION_KEYS + ("command_interface", "gravity_compensation")
# Registry kwargs that describe the shipped arm (its limits, home pose, workspace): another
# arm (arm.model) must not inherit them, so they fall back to the constructor's defaults
# (the description's limits, its home keyframe or zero, reachable targets) unless env.kwargs
# sets them.
SHIPPED_ARM_KWARGS = ("effort", "velocity", "home", "target_box")


def uses_robot_description(cfg: Config) -> bool:
    """True when the arm comes from the ``robot_description`` topic (nodes must fetch it)."""
    return cfg.arm.model == ROBOT_DESCRIPTION


def _entry_point(env_id: str) -> str | None:
    import gymnasium as gym

    import naf_ros.envs  # noqa: F401  (registers the reacher ids)

    return gym.spec(env_id).entry_point if env_id in gym.registry else None


def _set_arm_keys(arm: ArmConfig) -> dict[str, Any]:
    """The arm keys that differ from the schema's defaults (``description_timeout`` is only
    how long a node waits, not part of the arm)."""
    default = ArmConfig()
    return {k: getattr(arm, k) for k in ARM_KEYS if getattr(arm, k) != getattr(default, k)}


def arm_kwargs(cfg: Config, description: str | None = None) -> dict[str, Any]:
    """The ``arm`` section as constructor kwargs of the configured environment ({} if unset).

    ``description`` is the XML a node received on ``robot_description`` (used when
    ``arm.model`` names that topic). ConfigError, naming the key, for keys the environment
    cannot take: any with the planar reacher (it has its own arm) or a non-reacher id.
    """
    chosen = _set_arm_keys(cfg.arm)
    if not chosen:
        return {}
    env_id = cfg.env.id
    entry = _entry_point(env_id)
    key = next(iter(chosen))
    if entry == REACHER_ENTRY_POINT:
        for key in chosen:
            if key in ARM_DESCRIPTION_KEYS or not _accepts(REACHER_ENTRY_POINT, key):
                what = "has its own arm" if key in ARM_DESCRIPTION_KEYS else "has no such option"
                raise ConfigError(
                    f"arm.{key}: the planar 3-DOF reacher {what}; use an arm "
                    f"environment id such as {EXAMPLE_ARM_ID}"
                )
    elif entry != ARM_ENTRY_POINT:
        raise ConfigError(
            f"arm.{key}: env.id {env_id!r} is not a naf_ros arm environment; use an arm "
            f"environment id such as {EXAMPLE_ARM_ID}"
        )
    else:
        for key in chosen:
            if not _accepts(ARM_ENTRY_POINT, key):
                raise ConfigError(f"arm.{key}: {env_id!r} has no such option")
    out = dict(chosen)
    if out.get("model") == ROBOT_DESCRIPTION:
        if description is None:
            raise ConfigError(
                f"arm.model: {ROBOT_DESCRIPTION!r} is a ROS topic; the in-process trainer "
                "needs a file path"
            )
        out["model"] = description
    elif "model" in out:
        out["model"] = str(Path(out["model"]).expanduser())
    env_kwargs = cfg.env.kwargs or {}
    both = [k for k in out if k in env_kwargs]
    if both:
        raise ConfigError(f"arm.{both[0]}: also set in env.kwargs; set it in one place")
    if "model" in out:
        out.update({k: None for k in SHIPPED_ARM_KWARGS if k not in env_kwargs})
    return out


def _accepts(entry_point: str, key: str) -> bool:
    """Whether the environment class's constructor takes keyword ``key``."""
    import importlib

    module, name = entry_point.split(":")
    cls = getattr(importlib.import_module(module), name)
    return key in inspect.signature(cls.__init__).parameters


def make_kwargs(cfg: Config, description: str | None = None) -> dict[str, Any]:
    """What ``gym.make(cfg.env.id, **...)`` takes: ``env.kwargs`` plus the ``arm`` section
    (the registry adds its own kwargs underneath)."""
    return {**(cfg.env.kwargs or {}), **arm_kwargs(cfg, description)}


def reacher_env_kwargs(
    cfg: Config, description: str | None = None, require_registered: bool = True
) -> dict[str, Any]:
    """All constructor kwargs of the configured reacher: registry kwargs, ``env.kwargs``, then
    the ``arm`` section.

    The learning-side nodes only need the task, so they accept an unregistered id
    (``require_registered=False``: kwargs then come from the config alone).
    """
    import gymnasium as gym

    import naf_ros.envs  # noqa: F401  (registers the reacher ids)

    env_id = cfg.env.id
    kwargs: dict[str, Any] = {}
    if env_id in gym.registry:
        spec = gym.spec(env_id)
        if spec.entry_point not in (REACHER_ENTRY_POINT, ARM_ENTRY_POINT):
            raise ConfigError(
                f"env.id: {env_id!r} is not a naf_ros reacher; the ROS graph simulates and "
                "learns those tasks only (their reward must be computable from observations)"
            )
        kwargs.update(spec.kwargs or {})
    elif require_registered:
        raise ConfigError(f"env.id: {env_id!r} is not a registered environment")
    kwargs.update(make_kwargs(cfg, description))
    return kwargs


def is_arm_env(cfg: Config) -> bool:
    """True for an :class:`ArmReachEnv` id (3-D reach), False for the planar reacher."""
    return _entry_point(cfg.env.id) == ARM_ENTRY_POINT


def make_reacher(cfg: Config, description: str | None = None, **overrides: Any) -> ArmReachEnv:
    """The configured reacher itself, without gym's wrappers (the sim bridge steps it):
    :class:`ArmReachEnv` for arm ids, :class:`Reacher3DOFEnv` for the planar one.
    ``overrides`` replace constructor kwargs (e.g. the bridge's ``fixed_target``)."""
    from naf_ros.envs.arm import ArmModelError
    from naf_ros.envs.reacher_env import ArmReachEnv, Reacher3DOFEnv

    kwargs = {**reacher_env_kwargs(cfg, description), **overrides}
    cls = ArmReachEnv if is_arm_env(cfg) else Reacher3DOFEnv
    try:
        return cls(**kwargs)
    except ArmModelError as exc:
        raise ConfigError(f"arm: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"env.id: {cfg.env.id!r} could not be created ({exc})") from None


def episode_steps(env_cfg: EnvConfig) -> int:
    """Episode length T: ``env.max_episode_steps``, else the registered time limit."""
    if env_cfg.max_episode_steps is not None:
        return int(env_cfg.max_episode_steps)
    import gymnasium as gym

    import naf_ros.envs  # noqa: F401

    if env_cfg.id in gym.registry and gym.spec(env_cfg.id).max_episode_steps:
        return int(gym.spec(env_cfg.id).max_episode_steps)
    return DEFAULT_EPISODE_STEPS


def reacher_task(cfg: Config, description: str | None = None) -> ReachTask:
    """The task the configured environment uses, so rewards and derivatives match the sim's:
    the 3-D reach of an arm environment's arm (the ``arm`` section's, when set), else the
    planar 3-DOF reacher's. ``description``: the ``robot_description`` XML a node received.
    A description that cannot serve as the arm is a one-line ConfigError."""
    from naf_ros.envs.arm import ArmModel, ArmModelError
    from naf_ros.envs.task import ReacherTask, ReachTask

    weight_key, default_weight = "ctrl_cost_weight", 0.02
    kwargs = reacher_env_kwargs(cfg, description, require_registered=False)
    weight = float(kwargs.get(weight_key, default_weight))
    try:
        if is_arm_env(cfg):
            from naf_ros.envs.reacher_env import arm_from_kwargs

            return ReachTask(arm_from_kwargs(kwargs), ctrl_cost_weight=weight)
        return ReacherTask(ArmModel.from_mjcf(kwargs.get("model_path")), ctrl_cost_weight=weight)
    except ArmModelError as exc:
        raise ConfigError(f"arm: {exc}") from None
