"""Building Gymnasium environments from config, with the checks NAF needs (box spaces)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from naf_ros.config import ArmConfig, Config, ConfigError, EnvConfig


def make_env(cfg: EnvConfig, arm: ArmConfig | None = None) -> gym.Env:
    """``gym.make`` with one-line errors for ids that do not exist and non-box spaces.

    ``arm``: the config's arm section, merged into the kwargs exactly as the ROS nodes merge
    it (:func:`naf_ros.envs.configured.make_kwargs`), so both paths build the same arm.
    """
    import naf_ros.envs  # noqa: F401  (registers the package's reacher)
    from naf_ros.envs.arm import ArmModelError
    from naf_ros.envs.configured import make_kwargs

    if cfg.id not in gym.registry:
        close = [
            k for k in gym.registry if cfg.id.split("/")[-1].split("-")[0].lower() in k.lower()
        ]
        hint = f"; similar: {', '.join(sorted(close)[:5])}" if close else ""
        raise ConfigError(f"env.id: {cfg.id!r} is not a registered Gymnasium environment{hint}")
    kwargs = make_kwargs(Config(env=cfg, arm=arm if arm is not None else ArmConfig()))
    if cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = cfg.max_episode_steps
    try:
        env = gym.make(cfg.id, **kwargs)
    except ArmModelError as exc:  # the user's arm description: name it, not the env id
        raise ConfigError(f"arm: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any construction failure is a config problem
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"env.id: {cfg.id!r} could not be created ({msg})") from None
    for name in ("observation_space", "action_space"):
        space = getattr(env, name)
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            env.close()
            raise ConfigError(
                f"env.id: {cfg.id!r} has a non-box {name} ({space}); NAF needs 1-D Box spaces"
            )
    if not (np.isfinite(env.action_space.low).all() and np.isfinite(env.action_space.high).all()):
        env.close()
        raise ConfigError(f"env.id: {cfg.id!r} has unbounded actions; NAF needs finite bounds")
    return env


class ActionScaler:
    """Maps normalised actions in [-1, 1] to the environment's box and back."""

    def __init__(self, space: gym.spaces.Box) -> None:
        self.low = space.low.astype(np.float64)
        self.high = space.high.astype(np.float64)

    def to_env(self, action: np.ndarray) -> np.ndarray:
        a = np.clip(action, -1.0, 1.0)
        return self.low + (a + 1.0) * 0.5 * (self.high - self.low)

    def to_normalised(self, env_action: np.ndarray) -> np.ndarray:
        return np.clip(2.0 * (env_action - self.low) / (self.high - self.low) - 1.0, -1.0, 1.0)


def episode_limit(env: gym.Env) -> int | None:
    """The TimeLimit of an environment, if it has one (time-varying models need it)."""
    spec = getattr(env, "spec", None)
    return getattr(spec, "max_episode_steps", None) if spec is not None else None


def tip_distance(info: dict, obs: np.ndarray) -> float:
    """Fingertip-to-target distance when the environment reports it, else NaN."""
    if "tip_distance" in info:
        return float(info["tip_distance"])
    if "reward_dist" in info:  # Gymnasium Reacher: reward_dist = -|tip - target|
        return float(-info["reward_dist"])
    return float("nan")
