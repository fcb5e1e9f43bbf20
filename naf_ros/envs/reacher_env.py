"""Gymnasium reaching environments: any MJCF or URDF arm in 3D, and the paper's 3-DOF reacher.

Observation and reward come from the task (:mod:`naf_ros.envs.task`: joint states + target
only); the physics from :class:`~naf_ros.envs.sim.ArmSim`. Both read the arm through one
:class:`~naf_ros.envs.arm.ArmModel`, the path a user's own arm file takes too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np

from naf_ros.config import EFFORT
from naf_ros.envs.arm import DEFAULT_TIP_SITE, ArmModel, LimitSpec, asset_path
from naf_ros.envs.command import ArmCommand
from naf_ros.envs.sim import ArmSim
from naf_ros.envs.task import ReacherTask, ReachTask, TargetBox

__all__ = ["ARM7_MODEL_FILE", "ArmReachEnv", "Reacher3DOFEnv", "arm_from_kwargs"]

ARM7_MODEL_FILE = "arm7dof.xml"
HOME_KEY = "home"  # an MJCF keyframe of this name gives the default home pose

# The constructor arguments that describe the arm (the rest describe the task and episodes).
ARM_KEYS = ("model", "tip", "tip_offset", "base", "joints", "effort", "velocity")


def arm_from_kwargs(kwargs: Mapping[str, Any]) -> ArmModel:
    """The arm an :class:`ArmReachEnv` with these constructor kwargs loads (the nodes rebuild
    the task from the same kwargs without making the environment)."""
    options = {k: kwargs[k] for k in ARM_KEYS if k in kwargs and k != "model"}
    model = kwargs.get("model")
    return ArmModel.load(model if model is not None else asset_path(ARM7_MODEL_FILE), **options)


def _home_from_keyframe(arm: ArmModel) -> np.ndarray | None:
    m = arm.mj_model
    key = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_KEY, HOME_KEY)
    if key < 0:
        return None
    return np.array([m.key_qpos[key, m.joint(n).qposadr[0]] for n in arm.joint_names])


class ArmReachEnv(gym.Env):
    """Reach a target with the tip of any serial arm; actions are normalised in [-1, 1]^n.

    ``command_interface`` (``effort``/``velocity``/``position``) is what an action commands
    (:class:`~naf_ros.envs.command.ArmCommand`: a full action is the effort limit, the
    velocity limit, or a target that far one period ahead) and how the sim is driven;
    ``gravity_compensation`` (effort only; None: where the model has gravity) adds the
    model's gravity torque to every effort command. Velocity and position need velocity
    limits (the description's, else ``velocity``).

    ``model`` is a path or an XML string (MJCF or URDF; default: the shipped 7-DOF arm) and
    ``tip``/``tip_offset``/``base``/``joints``/``effort``/``velocity`` go to
    :meth:`ArmModel.load`. ``fixed_target`` selects the single-target variant (its
    initial-state distribution is deliberately narrow, as time-varying linear models need);
    otherwise each episode's target is a reachable tip position, inside ``target_box``
    when given. Episodes start at ``home`` (default: the MJCF keyframe ``home``, else a URDF's
    ros2_control initial values, else zero clipped into the limits) plus uniform noise,
    clipped into the joint limits.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        model: str | None = None,
        tip: str | None = None,
        tip_offset: Sequence[float] | None = None,
        base: str | None = None,
        joints: Sequence[str] | None = None,
        effort: LimitSpec = None,
        velocity: LimitSpec = None,
        fixed_target: Sequence[float] | None = None,
        target_box: TargetBox | None = None,
        home: Sequence[float] | None = None,
        control_dt: float = 0.02,
        init_qpos_noise: float = 0.1,
        init_qvel_noise: float = 0.005,
        ctrl_cost_weight: float = 0.02,
        gravity_compensation: bool | None = None,
        command_interface: str = EFFORT,
    ) -> None:
        kwargs = dict(model=model, tip=tip, tip_offset=tip_offset, base=base, joints=joints)
        kwargs.update(effort=effort, velocity=velocity)
        arm = arm_from_kwargs({k: v for k, v in kwargs.items() if v is not None})
        self._setup(
            ReachTask(arm, ctrl_cost_weight=ctrl_cost_weight),
            control_dt,
            command_interface,
            gravity_compensation,
            fixed_target,
            init_qpos_noise,
            init_qvel_noise,
        )
        self.target_box = target_box
        home = _home_from_keyframe(arm) if home is None else np.asarray(home, dtype=float)
        if home is None:
            home = arm.initial_positions
        if home is None:
            home = np.zeros(arm.n_joints)
        if home.shape != (arm.n_joints,):
            raise ValueError(f"home: {home.tolist()} is not {arm.n_joints} joint positions")
        self.home = np.clip(home, arm.joint_lower, arm.joint_upper)

    def _setup(
        self,
        task: ReachTask,
        control_dt: float,
        command_interface: str,
        gravity_compensation: bool | None,
        fixed_target: Sequence[float] | None,
        init_qpos_noise: float,
        init_qvel_noise: float,
    ) -> None:
        self.task = task
        self.sim = ArmSim(task.arm, control_dt, task.dims, command_interface)
        self.command = ArmCommand(
            task.arm, command_interface, self.sim.control_dt, gravity_compensation
        )
        self.fixed_target = None if fixed_target is None else np.asarray(fixed_target, float)
        if self.fixed_target is not None and self.fixed_target.shape != (task.dims,):
            raise ValueError(f"fixed_target: {fixed_target!r} is not {task.dims} coordinates")
        self.init_qpos_noise = float(init_qpos_noise)
        self.init_qvel_noise = float(init_qvel_noise)
        n = task.n_joints
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(n,), dtype=np.float64)
        self.observation_space = gym.spaces.Box(
            -np.inf, np.inf, shape=(task.obs_dim,), dtype=np.float64
        )
        self._obs = np.zeros(task.obs_dim)

    def sample_target(self) -> np.ndarray:
        if self.fixed_target is not None:
            return self.fixed_target.copy()
        return self.task.sample_target(self.np_random, self.target_box)

    def _initial_joint_state(self) -> tuple[np.ndarray, np.ndarray]:
        n = self.task.n_joints
        q = self.home + self.np_random.uniform(-self.init_qpos_noise, self.init_qpos_noise, n)
        qd = self.np_random.uniform(-self.init_qvel_noise, self.init_qvel_noise, n)
        return np.clip(q, self.task.arm.joint_lower, self.task.arm.joint_upper), qd

    def _observe(self) -> np.ndarray:
        return self.task.observation(
            self.sim.joint_positions(), self.sim.joint_velocities(), self.sim.target
        )

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        q, qd = self._initial_joint_state()
        target = self.sample_target()
        if options and "target" in options:
            target = np.asarray(options["target"], float)
        self.sim.reset(q, qd, target)
        self._obs = self._observe()
        return self._obs.copy(), {"tip_distance": float(self.task.tip_distance(self._obs))}

    def step(self, action):
        action = np.clip(np.asarray(action, dtype=float), -1.0, 1.0)
        reward = float(self.task.reward(self._obs, action))
        self.sim.set_command(self.command.command(action, self.sim.joint_positions()))
        self.sim.step()
        self._obs = self._observe()
        info = {"tip_distance": float(self.task.tip_distance(self._obs))}
        return self._obs.copy(), reward, False, False, info

    # --- hooks for the true-model variant (paper §6.2) --------------------------------------
    def get_sim_state(self) -> np.ndarray:
        return self.sim.get_state()

    def set_sim_state(self, state: np.ndarray) -> None:
        self.sim.set_state(state)
        self._obs = self._observe()


class Reacher3DOFEnv(ArmReachEnv):
    """The paper's 3-DOF planar reacher (:class:`ReacherTask`): targets in the xy-plane, drawn
    uniformly in angle and radius within the arm's reach; episodes start around zero.
    ``velocity`` gives the joints velocity limits (rad/s; the MJCF has none), which the
    velocity and position ``command_interface`` need."""

    def __init__(
        self,
        fixed_target: tuple[float, float] | None = None,
        control_dt: float = 0.02,
        init_qpos_noise: float = 0.1,
        init_qvel_noise: float = 0.005,
        ctrl_cost_weight: float = 0.02,
        model_path: str | None = None,
        command_interface: str = EFFORT,
        velocity: LimitSpec = None,
    ) -> None:
        path = model_path if model_path is not None else asset_path("reacher3dof.xml")
        arm = ArmModel.from_file(path, tip=DEFAULT_TIP_SITE, velocity=velocity)
        task = ReacherTask(arm, ctrl_cost_weight=ctrl_cost_weight)
        self._setup(
            task, control_dt, command_interface, None, fixed_target, init_qpos_noise,
            init_qvel_noise,
        )  # fmt: skip
        self.target_box = None
        self.home = np.zeros(task.n_joints)

    def sample_target(self) -> np.ndarray:
        if self.fixed_target is not None:
            return self.fixed_target.copy()
        reach = self.task.arm.reach
        radius = self.np_random.uniform(0.15 * reach, 0.9 * reach)
        angle = self.np_random.uniform(-np.pi, np.pi)
        return np.array([radius * np.cos(angle), radius * np.sin(angle)])

    def _initial_joint_state(self) -> tuple[np.ndarray, np.ndarray]:
        n = self.task.n_joints
        q = self.np_random.uniform(-self.init_qpos_noise, self.init_qpos_noise, n)
        qd = self.np_random.uniform(-self.init_qvel_noise, self.init_qvel_noise, n)
        return q, qd
