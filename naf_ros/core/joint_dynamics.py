"""Time-varying linear dynamics of the arm's joint state, seen through the task's observation.

Why: the reacher's observation (cos q, sin q, q̇, target, tip - target) is nonlinear in the
joint angles, while one control period of arm physics is close to linear in (q, q̇, u). A
time-varying linear model of the joint state therefore predicts the fingertip about twenty
times better per step than one of the observation (``naf-ros bench model-error``), and the
task's forward kinematics turns every predicted joint state into a consistent observation
(cos² + sin² = 1, tip = FK(q)) whose reward is exact for that state. It needs only what a
real arm gives: joint positions, velocities and the kinematic model.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from naf_ros.core.dynamics import (
    DynamicsFitError,
    DynamicsPrior,
    LinearGaussianDynamics,
    fit_linear_gaussian,
)


class JointTask(Protocol):
    """The part of the task this model needs (``naf_ros.envs.task.ReacherTask`` has it)."""

    n_joints: int

    def observation(self, q: np.ndarray, qd: np.ndarray, target: np.ndarray) -> np.ndarray: ...

    def joint_state_from_observation(
        self, obs: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]: ...


def wrap_angle(a: np.ndarray) -> np.ndarray:
    """Angles into [-pi, pi)."""
    return (np.asarray(a, dtype=float) + np.pi) % (2 * np.pi) - np.pi


def joint_trajectories(task: JointTask, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Episodes of observations (N, T+1, nx) as joint states (N, T+1, 2n) plus the angle branch.

    Angles come back from atan2 in (-pi, pi]; a linear model needs them continuous. Each
    episode is unwrapped along time (the arm moves continuously) and shifted by whole turns
    so that it starts on the branch of the episodes' circular mean start angle. Returns
    ``(Z, angle_ref)``; ``angle_ref`` (T+1, n) is the mean angle per step, which puts new
    observations on the model's branch.
    """
    q, qd, _ = task.joint_state_from_observation(np.asarray(X, dtype=float))
    q = np.unwrap(q, axis=1)
    start = np.angle(np.exp(1j * q[:, 0]).mean(axis=0))
    q = q - 2 * np.pi * np.round((q[:, :1] - start) / (2 * np.pi))
    return np.concatenate([q, qd], axis=-1), q.mean(axis=0)


class JointSpaceDynamics:
    """Observation in, observation out; a :class:`LinearGaussianDynamics` of (q, q̇) inside."""

    def __init__(self, model: LinearGaussianDynamics, angle_ref: np.ndarray, task: JointTask):
        n = task.n_joints
        if model.nx != 2 * n or angle_ref.shape != (model.horizon + 1, n):
            raise DynamicsFitError(
                f"joint-space model: state {model.nx} / angle reference {angle_ref.shape} do "
                f"not fit a {n}-joint arm over {model.horizon} steps"
            )
        self.model, self.angle_ref, self.task = model, np.asarray(angle_ref, float), task

    @property
    def horizon(self) -> int:
        return self.model.horizon

    def joint_state(self, t: int | np.ndarray, x: np.ndarray) -> np.ndarray:
        """Observations at steps ``t`` as joint states on the model's angle branch."""
        return self._split(t, x)[0]

    def predict(self, t: int | np.ndarray, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Mean next observation: the joint state steps linearly, the task observes it."""
        z, target = self._split(t, np.asarray(x, dtype=float))
        z_next = self.model.predict(t, z, u)
        n = self.task.n_joints
        return self.task.observation(z_next[..., :n], z_next[..., n:], target)

    def _split(self, t: int | np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(joint state on the model's branch, target) of observations at steps ``t``."""
        q, qd, target = self.task.joint_state_from_observation(x)
        ref = self.angle_ref[np.clip(np.asarray(t), 0, self.horizon)]
        return np.concatenate([ref + wrap_angle(q - ref), qd], axis=-1), target

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {**self.model.to_arrays(), "angle_ref": self.angle_ref.copy()}

    @classmethod
    def from_arrays(cls, d: dict[str, Any], task: JointTask) -> JointSpaceDynamics:
        arrays = {k: v for k, v in d.items() if k != "angle_ref"}
        return cls(LinearGaussianDynamics.from_arrays(arrays), np.asarray(d["angle_ref"]), task)


def fit_joint_space(
    task: JointTask,
    X: np.ndarray,
    U: np.ndarray,
    prior: DynamicsPrior | None = None,
    reg: float = 1e-6,
    min_episodes: int = 2,
) -> JointSpaceDynamics:
    """Fit the joint-space model to the latest episodes; ``prior`` learns from them too.

    The prior pools joint states of the last ``prior.max_episodes`` episodes, as the
    observation-space fit does with observations. Raises :class:`DynamicsFitError`.
    """
    Z, ref = joint_trajectories(task, X)
    if prior is not None:
        prior.update(Z, U)
    model = fit_linear_gaussian(Z, U, prior, reg=reg, min_episodes=min_episodes)
    return JointSpaceDynamics(model, ref, task)


JOINT_PREFIX = "joint_"


def add_joint_arrays(arrays: dict[str, np.ndarray], model: JointSpaceDynamics) -> None:
    """Carry the joint-space model alongside an observation-space one (one message)."""
    arrays.update({JOINT_PREFIX + k: v for k, v in model.to_arrays().items()})


def joint_model_from_arrays(arrays: dict[str, Any], task: JointTask) -> JointSpaceDynamics | None:
    """The joint-space model in ``arrays`` (see :func:`add_joint_arrays`), or None if absent.

    Raises ValueError/DynamicsFitError when it is there but malformed.
    """
    if JOINT_PREFIX + "F" not in arrays:
        return None
    n = len(JOINT_PREFIX)
    return JointSpaceDynamics.from_arrays(
        {k[n:]: v for k, v in arrays.items() if k.startswith(JOINT_PREFIX)}, task
    )
