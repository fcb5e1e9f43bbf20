"""The one configuration schema, shared by the trainer CLI, the ROS nodes and the launchers.

Sections are dataclasses; every field carries its validator so an unknown key, a wrong type
or an impossible value stops with one line naming the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

# The command interfaces of a ros2_control ForwardCommandController (arm.command_interface);
# the safety envelope, the command mapping and the sim share these names.
EFFORT, VELOCITY, POSITION = "effort", "velocity", "position"
INTERFACES = (EFFORT, VELOCITY, POSITION)


def check_interface(interface: str) -> str:
    """The interface name, or a one-line ValueError listing the valid ones."""
    if interface not in INTERFACES:
        raise ValueError(f"command_interface: {interface!r} is not one of {', '.join(INTERFACES)}")
    return interface


class ConfigError(ValueError):
    """A configuration problem; the message is one line naming the key."""


def _check(ok, allowed: str):
    return {"check": ok, "allowed": allowed}


POS_INT = _check(lambda v: v > 0, "an integer > 0")
NONNEG_INT = _check(lambda v: v >= 0, "an integer >= 0")
POS = _check(lambda v: v > 0, "a number > 0")
NONNEG = _check(lambda v: v >= 0, "a number >= 0")
UNIT = _check(lambda v: 0 <= v <= 1, "a number in [0, 1]")
GAMMA = _check(lambda v: 0 <= v < 1, "a number in [0, 1)")
TAU = _check(lambda v: 0 < v <= 1, "a number in (0, 1]")


# Below SVG(1)-ER's sigma ceiling exp(core.svg.LOG_STD_MAX) = 1.65, so the floor leaves the
# learned sigma room (test_svg checks the two stay apart).
POLICY_STD_CEILING = 1.6


def _choice(*options: str):
    return _check(lambda v: v in options, "one of " + ", ".join(options))


@dataclass
class EnvConfig:
    id: str = field(default="NafRos/Reacher3DOFFixed-v0")
    kwargs: dict = field(default_factory=dict)
    max_episode_steps: int | None = field(default=None, metadata=POS_INT)


@dataclass
class AgentConfig:
    # naf: Q from the normalized advantage function (the paper's method); ddpg: deterministic
    # actor + Q critic (the paper's Table 1 baseline), same hidden sizes, I, tau and Adam;
    # svg1er: SVG(1) with experience replay (Heess et al. 2015), a Gaussian policy improved
    # through a learned one-step model and V(x); it explores with exploration.kind 'policy'.
    algorithm: str = field(default="naf", metadata=_choice("naf", "ddpg", "svg1er"))
    hidden: list = field(default_factory=lambda: [200, 200])
    shared_trunk: bool = False
    batch_norm: bool = False
    lr: float = field(default=1e-3, metadata=POS)
    actor_lr: float | None = field(default=None, metadata=POS)  # ddpg's actor; None: lr
    gamma: float = field(default=0.98, metadata=GAMMA)
    tau: float = field(default=0.005, metadata=TAU)
    batch_size: int = field(default=64, metadata=POS_INT)
    updates_per_step: int = field(default=5, metadata=POS_INT)
    max_log_diag: float = field(default=4.0, metadata=POS)
    grad_clip: float | None = field(default=None, metadata=POS)
    replay_capacity: int = field(default=1_000_000, metadata=POS_INT)
    warmup_steps: int = field(default=500, metadata=NONNEG_INT)
    # Where the learner (and the in-process trainer) trains; acting and published weights
    # stay on the CPU. A CUDA device torch cannot see stops the learner at start.
    device: str = field(
        default="cpu",
        metadata=_check(
            lambda v: v in ("cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit()),
            "cpu, cuda or cuda:N",
        ),
    )
    # torch.compile the fused update: opt-in, for CUDA; on a small CPU it compiles for
    # minutes and runs no faster (falls back to eager where no compiler works).
    compile: bool = False
    # svg1er only (naf/ddpg ignore them). The floor of its Gaussian policy's sigma (pre-tanh):
    # its exploration magnitude (a collapsed sigma stops exploring and zeroes every old row's
    # pi/mu), below the ceiling e^0.5 of core/svg.py. The truncation of the importance
    # weights pi/mu (bounded variance, a little bias; >= 1 so on-policy rows weigh 1).
    policy_std_min: float = field(
        default=0.1, metadata=_check(lambda v: 0 < v < POLICY_STD_CEILING, "a number in (0, 1.6)")
    )
    importance_cap: float = field(default=5.0, metadata=_check(lambda v: v >= 1, "a number >= 1"))


@dataclass
class ExplorationConfig:
    # policy: the agent's own stochastic policy explores (svg1er only; scale is then unused,
    # its magnitude is agent.policy_std_min, the floor of the policy's sigma)
    kind: str = field(
        default="ou", metadata=_choice("ou", "precision", "gaussian", "none", "policy")
    )
    scale: float = field(default=0.3, metadata=NONNEG)
    ou_theta: float = field(default=0.15, metadata=TAU)
    precision_ema: float = field(default=0.01, metadata=TAU)


@dataclass
class ModelBasedConfig:
    enabled: bool = False
    model: str = field(default="linear", metadata=_choice("linear", "nn", "true"))
    # What the linear model's imagination rollouts step: the arm's joint state, observed
    # through the task's kinematics, or the observation vector itself (iLQG always plans on
    # the observation-space fit).
    linear_state: str = field(default="joint", metadata=_choice("joint", "observation"))
    episodes_per_fit: int = field(default=5, metadata=POS_INT)
    rollout_length: int = field(default=10, metadata=POS_INT)
    rollout_every: int = field(default=10, metadata=POS_INT)
    rollout_batch: int = field(default=10, metadata=POS_INT)
    imagination_updates_per_step: int | None = field(default=None, metadata=NONNEG_INT)
    imagination_capacity: int = field(default=100_000, metadata=POS_INT)
    imagination_off_after: int | None = field(default=None, metadata=NONNEG_INT)
    # How imagined actions explore: 'gaussian' adds i.i.d. N(0, exploration.scale^2) per step
    # (the benchmarks' setting); 'exploration' runs the configured exploration.kind in each
    # rollout (OU correlated along it, precision N(0, c P(x)^-1), none).
    imagination_noise: str = field(default="gaussian", metadata=_choice("gaussian", "exploration"))
    # R_f keeps the rollouts of the last k models (None: until the ring overwrites them);
    # a rollout of an old model describes dynamics the arm may no longer be near.
    imagination_model_age: int | None = field(default=None, metadata=POS_INT)
    ilqg_probability: float = field(default=0.0, metadata=UNIT)
    ilqg_mode: str = field(default="trajectory", metadata=_choice("trajectory", "mpc"))
    mpc_horizon: int = field(default=10, metadata=POS_INT)
    kl_step: float = field(default=1.0, metadata=POS)
    prior_episodes: int = field(default=20, metadata=POS_INT)
    # The dynamics prior: one Gaussian over (x, u, x') pooled across steps ('pooled'), or over
    # each step's deviations from its own mean ('per_step_centred': only the covariance's
    # shape is shared, so a trajectory sweeping the state space does not inflate it).
    prior: str = field(default="pooled", metadata=_choice("pooled", "per_step_centred"))
    reg: float = field(default=1e-6, metadata=NONNEG)


@dataclass
class TrainConfig:
    episodes: int = field(default=300, metadata=POS_INT)
    max_steps: int | None = field(default=None, metadata=POS_INT)
    eval_every: int = field(default=10, metadata=POS_INT)
    eval_episodes: int = field(default=5, metadata=POS_INT)
    seed: int = field(default=0, metadata=NONNEG_INT)
    run_dir: str = "runs/latest"
    progress: bool = True
    torch_threads: int = field(default=1, metadata=POS_INT)


@dataclass
class SafetyConfig:
    """The envelope between policy and arm (naf_ros.core.safety); lists are per joint."""

    effort: list | None = None
    soft_lower: list | None = None
    soft_upper: list | None = None
    position_margin: float = field(default=0.05, metadata=NONNEG)
    velocity: float | None = field(default=None, metadata=POS)
    restoring_gain: float = field(default=0.0, metadata=NONNEG)
    command_timeout: float | None = field(default=0.5, metadata=POS)
    safe_exploration: bool = False
    safe_exploration_return: float = -5.0


@dataclass
class ArmConfig:
    """The arm: its description (overriding the environment's own) and how it is commanded.

    ``model``: '' keeps the arm the ``env.id`` environment ships; a path to a URDF or MJCF
    file; or ``robot_description``, the std_msgs/String that robot_state_publisher latches on
    the ``robot_description`` topic of the arm's namespace (ROS nodes only). ``tip`` is a
    site, or a link/body plus ``tip_offset`` (m, in that link's frame); ``base`` the frame
    the task works in; ``joints`` the actuated joints by name (default: the chain from base
    to tip). ``command_interface`` is what the ForwardCommandController takes: effort (N·m),
    velocity (rad/s) or position (rad). ``gravity_compensation`` (effort only) adds the
    model's gravity torque to every command; None: on where the model has gravity.
    """

    model: str = ""
    tip: str | None = None
    tip_offset: list | None = None
    base: str | None = None
    joints: list | None = None
    command_interface: str = field(default=EFFORT, metadata=_choice(*INTERFACES))
    gravity_compensation: bool | None = None
    description_timeout: float = field(default=10.0, metadata=POS)


@dataclass
class BagConfig:
    """rosbag2 (MCAP) recording of experience and warm starts from recorded bags."""

    record: str | None = None
    warm_start: list = field(default_factory=list)


@dataclass
class Config:
    env: EnvConfig = field(default_factory=EnvConfig)
    agent: AgentConfig = field(default_factory=AgentConfig)
    exploration: ExplorationConfig = field(default_factory=ExplorationConfig)
    model_based: ModelBasedConfig = field(default_factory=ModelBasedConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    bag: BagConfig = field(default_factory=BagConfig)
    arm: ArmConfig = field(default_factory=ArmConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SECTIONS = get_type_hints(Config)


def _type_ok(value: Any, hint: Any) -> bool:
    text = str(hint)
    if value is None:
        return "None" in text
    if "bool" in text:
        return isinstance(value, bool)
    if "int" in text and "float" not in text:
        return isinstance(value, int) and not isinstance(value, bool)
    if "float" in text:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if "str" in text:
        return isinstance(value, str)
    if "list" in text:
        return isinstance(value, (list, tuple))
    if "dict" in text:
        return isinstance(value, dict)
    return True


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


def _build_section(cls, name: str, values: Any):
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"{name}: expected a mapping of keys, got {type(values).__name__}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"{name}.{key}: unknown key; allowed keys: {', '.join(fields)}")
        if not _type_ok(value, hints[key]):
            raise ConfigError(f"{name}.{key}: expected {_type_name(hints[key])}, got {value!r}")
        meta = fields[key].metadata
        if value is not None and meta and not meta["check"](value):
            raise ConfigError(f"{name}.{key}: {value!r} is not allowed; must be {meta['allowed']}")
        if "float" in str(hints[key]) and isinstance(value, int):
            value = float(value)
        kwargs[key] = list(value) if isinstance(value, tuple) else value
    return cls(**kwargs)


def config_from_dict(data: dict | None) -> Config:
    """Validate a nested mapping into a :class:`Config` (missing keys take defaults)."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError("config: expected a mapping at the top level")
    sections = {}
    for key, values in data.items():
        if key not in SECTIONS:
            raise ConfigError(f"{key}: unknown section; allowed sections: {', '.join(SECTIONS)}")
        sections[key] = _build_section(SECTIONS[key], key, values)
    cfg = Config(**sections)
    if cfg.agent.hidden == [] or not all(isinstance(h, int) and h > 0 for h in cfg.agent.hidden):
        raise ConfigError(f"agent.hidden: {cfg.agent.hidden!r} must be a list of integers > 0")
    if cfg.agent.algorithm == "ddpg" and cfg.exploration.kind == "precision":
        raise ConfigError(
            "exploration.kind: 'precision' needs NAF's P(x), which agent.algorithm 'ddpg' does "
            "not have; use ou, gaussian or none"
        )
    _check_svg(cfg)
    return cfg


def _check_svg(cfg: Config) -> None:
    """SVG(1)-ER's combinations: its Gaussian policy is its exploration (the replay's
    importance weights need that density), it learns its own model, and batch norm would make
    the inferred policy noise depend on the minibatch."""
    svg = cfg.agent.algorithm == "svg1er"
    kind = cfg.exploration.kind
    if not svg and kind == "policy":
        raise ConfigError(
            f"exploration.kind: 'policy' needs a stochastic policy, which agent.algorithm "
            f"{cfg.agent.algorithm!r} does not have; use it with svg1er"
        )
    if not svg:
        return
    if kind != "policy":
        if kind == "precision":
            raise ConfigError(
                "exploration.kind: 'precision' needs NAF's P(x), which agent.algorithm 'svg1er' "
                "does not have; svg1er explores with its own Gaussian policy: use policy"
            )
        raise ConfigError(
            f"exploration.kind: {kind!r} does not fit agent.algorithm 'svg1er', which explores "
            "with its own Gaussian policy (its importance weights need that density); use policy"
        )
    if cfg.model_based.enabled:
        raise ConfigError(
            "model_based.enabled: NAF's imagination rollouts; agent.algorithm 'svg1er' learns "
            "its own one-step model instead; set it to false"
        )
    if cfg.agent.batch_norm:
        raise ConfigError("agent.batch_norm: not supported by agent.algorithm 'svg1er'")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``section.key=value`` with the value parsed as YAML (so 1e-3, true, [64, 64] work)."""
    if "=" not in text:
        raise ConfigError(f"{text}: overrides look like section.key=value")
    key, raw = text.split("=", 1)
    path = key.strip().split(".")
    if len(path) != 2:
        raise ConfigError(f"{key}: overrides look like section.key=value")
    value = yaml.safe_load(raw) if raw.strip() else None
    if isinstance(value, str) and path[1] != "id":
        try:
            value = float(value)
        except ValueError:
            pass
    return path, value


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or defaults), apply ``section.key=value`` overrides, validate."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    for text in overrides or []:
        (section, key), value = parse_override(text)
        data.setdefault(section, {})
        if not isinstance(data[section], dict):
            raise ConfigError(f"{section}: expected a mapping")
        data[section][key] = value
    return config_from_dict(data)


def flatten(cfg: Config) -> dict[str, Any]:
    """``{"agent.lr": 1e-3, ...}``: the form ROS parameters take."""
    out = {}
    for section, values in cfg.to_dict().items():
        for key, value in values.items():
            out[f"{section}.{key}"] = value
    return out
