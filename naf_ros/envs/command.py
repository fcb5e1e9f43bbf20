"""From the policy's normalised action to what an arm's ForwardCommandController takes.

The learner, the task's reward and iLQG all work on a normalised action ``a`` in [-1, 1]^n;
only this mapping knows which command interface the arm's controller claims (ros2_control's
``effort``, ``velocity`` or ``position``) and so what a command means. One class serves the
Gymnasium environments, the true-model rollouts and the policy node, so an action means the
same command everywhere. ROS-free and MuJoCo-free apart from the arm model's gravity term.

- ``effort``: ``a * effort_limit`` (N·m or N), plus the model's gravity torque ``G(q)`` when
  gravity compensation is on (default: where the model has gravity) - a plain effort
  interface (a UR's or Kinova's under ros2_control) does not hold the arm up by itself;
- ``velocity``: ``a * velocity_limit`` (rad/s or m/s);
- ``position``: ``q + a * velocity_limit * control_dt``, a target one control period ahead,
  so a full action moves the joint at its velocity limit and zero action holds it.

Velocity limits come from the description (``ArmModel.velocity_limits``), where it has none
from ``velocity_limits`` (the ``safety.velocity`` setting), else velocity and position refuse
with one line naming the joints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from naf_ros.config import EFFORT, POSITION, VELOCITY, check_interface


def resolve_velocity_limits(
    arm: Any, fallback: float | Sequence[float] | None = None
) -> np.ndarray:
    """Per-joint velocity limits: the arm's where known (finite), else ``fallback``; ``inf``
    where neither gives one."""
    limits = np.asarray(arm.velocity_limits, dtype=float).copy()
    if fallback is not None:
        given = np.broadcast_to(np.asarray(fallback, dtype=float), limits.shape)
        limits = np.where(np.isfinite(limits), limits, given)
    return limits


class ArmCommand:
    """The action <-> command mapping of one arm under one command interface.

    ``arm`` is an :class:`~naf_ros.envs.arm.ArmModel` (anything with ``joint_names``,
    ``effort_limits``, ``velocity_limits``, ``has_gravity`` and ``gravity_effort``).
    ``gravity_compensation`` applies to ``effort`` only (None: on where the model has
    gravity). ``velocity_limits`` is the fallback for joints the description gives none.
    """

    def __init__(
        self,
        arm: Any,
        interface: str = EFFORT,
        control_dt: float = 0.02,
        gravity_compensation: bool | None = None,
        velocity_limits: float | Sequence[float] | None = None,
    ) -> None:
        self.arm = arm
        self.interface = check_interface(interface)
        if not (np.isfinite(control_dt) and control_dt > 0):
            raise ValueError(f"control_dt: {control_dt!r} must be finite and > 0")
        self.control_dt = float(control_dt)
        self.n = len(arm.joint_names)
        self.effort_limits = np.asarray(arm.effort_limits, dtype=float)
        self.velocity_limits = resolve_velocity_limits(arm, velocity_limits)
        if gravity_compensation and interface != EFFORT:
            raise ValueError(
                f"gravity_compensation: only the effort interface adds gravity torques; the "
                f"{interface} interface's controller holds the arm up itself"
            )
        self.gravity_compensation = interface == EFFORT and (
            bool(arm.has_gravity) if gravity_compensation is None else bool(gravity_compensation)
        )
        if interface != EFFORT:
            missing = [
                name
                for name, v in zip(arm.joint_names, self.velocity_limits)
                if not (np.isfinite(v) and v > 0)
            ]
            if missing:
                raise ValueError(
                    f"command_interface {interface}: joints {missing} have no velocity limit in "
                    "the description; give one (safety.velocity)"
                )

    @property
    def scale(self) -> np.ndarray:
        """Command units per unit of action: N·m, rad/s, or rad per control period."""
        if self.interface == EFFORT:
            return self.effort_limits
        if self.interface == VELOCITY:
            return self.velocity_limits
        return self.velocity_limits * self.control_dt

    def gravity(self, q: np.ndarray) -> np.ndarray:
        """The effort added to every effort command at ``q`` (zero without compensation)."""
        if not self.gravity_compensation:
            return np.zeros(np.shape(q))
        return self.arm.gravity_effort(q)

    def command(self, action: np.ndarray, q: np.ndarray | None = None) -> np.ndarray:
        """Normalised action (clipped into [-1, 1]) at measured joint positions ``q`` ->
        the command. ``q`` is needed for position and for gravity-compensated effort."""
        a = np.clip(np.asarray(action, dtype=float), -1.0, 1.0)
        if self.interface == EFFORT:
            effort = a * self.effort_limits
            if self.gravity_compensation:
                effort = effort + self.arm.gravity_effort(self._q(q))
            return effort
        if self.interface == VELOCITY:
            return a * self.velocity_limits
        return self._q(q) + a * self.scale

    def action(self, command: np.ndarray, q: np.ndarray | None = None) -> np.ndarray:
        """The inverse: the normalised action (clipped) a command amounts to at ``q``; what a
        transition records when the envelope changed the command."""
        c = np.asarray(command, dtype=float)
        if self.interface == EFFORT:
            if self.gravity_compensation:
                c = c - self.arm.gravity_effort(self._q(q))
        elif self.interface == POSITION:
            c = c - self._q(q)
        return np.clip(c / self.scale, -1.0, 1.0)

    def rest(self, q: np.ndarray | None = None) -> np.ndarray:
        """The command that asks for no motion: the holding effort (G(q) with gravity
        compensation, else zero), zero velocity, or hold at ``q``.

        Zero *effort* would let a gravity-loaded arm fall, and zero *position* would drive
        every joint to 0 rad; the safety envelope's ``hold_effort`` is :meth:`gravity`."""
        if self.interface == POSITION:
            return self._q(q).astype(float).copy()
        if self.gravity_compensation:
            return self.arm.gravity_effort(self._q(q))
        return np.zeros(self.n)

    def envelope_velocity(self, configured: float | None = None) -> np.ndarray:
        """The safety envelope's per-joint velocity limits (``configured``: ``safety.velocity``).

        Velocity and position: the command's own limits (the description's, else the
        configured one), which the commands are scaled to. Effort: the lower of the
        description's and the configured limit, ``inf`` where neither gives one - a
        description's velocity limits hold under effort too: the envelope then stops
        accelerating a joint past them, where a light wrist link under its full effort
        limit would otherwise spin up without bound within an episode."""
        if self.interface != EFFORT:
            return self.velocity_limits.copy()
        described = np.asarray(self.arm.velocity_limits, dtype=float)
        return np.minimum(described, np.inf if configured is None else float(configured))

    @property
    def hold_effort(self):
        """What the safety envelope holds an effort-commanded arm with (None: zero)."""
        return self.gravity if self.gravity_compensation else None

    def _q(self, q: np.ndarray | None) -> np.ndarray:
        if q is None:
            raise ValueError(f"the {self.interface} command needs the measured joint positions")
        q = np.asarray(q, dtype=float)
        if q.shape[-1:] != (self.n,):
            raise ValueError(f"joint positions of shape {q.shape}: last axis must be {self.n}")
        return q
