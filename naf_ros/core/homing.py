"""Homing, a real arm's reset: a law towards a home pose and the rule for when it is done.

The law is the command interface's natural one: effort, PD; velocity, ``kp * error`` capped
at the velocity limit; position, the measured position stepped that far towards home in one
control period (so the arm, not the target, leads: a target never runs away from the arm).

A simulator resets by teleporting; a real arm has to be driven back. Homing is finished
when the arm *is* at home (every joint within ``tolerance`` rad, wrapped) and *still*
(every joint slower than ``velocity_tolerance`` rad/s) — a fixed duration is not enough, as a
slow or blocked arm would start its episode anywhere — and only once a homing command has
reached a listening driver (an arm that already rests at home proves nothing about who
receives the episode's commands). If that does not happen within ``timeout`` s, homing has
failed. Pure numpy: the node feeds it joint states and delivery facts; tests drive it directly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from naf_ros.config import EFFORT, VELOCITY

HOME = "home"
TIMEOUT = "timeout"


@dataclass(frozen=True)
class Homing:
    """Gains and the completion rule of homing to ``home`` (joint angles, rad).

    ``interface`` is the arm's command interface; velocity and position also need the
    per-joint ``velocity_limit`` (rad/s) and position the ``control_dt`` (s)."""

    home: np.ndarray
    kp: float
    kd: float
    tolerance: float
    velocity_tolerance: float
    timeout: float
    interface: str = EFFORT
    velocity_limit: np.ndarray | None = None
    control_dt: float = 0.02

    def error(self, q: np.ndarray) -> np.ndarray:
        """``home - q`` wrapped to (-pi, pi]: a continuous joint goes the short way round."""
        d = np.asarray(self.home, dtype=float) - np.asarray(q, dtype=float)
        return np.arctan2(np.sin(d), np.cos(d))

    def effort(self, q: np.ndarray, qd: np.ndarray) -> np.ndarray:
        return self.kp * self.error(q) - self.kd * np.asarray(qd, dtype=float)

    def command(self, q: np.ndarray, qd: np.ndarray) -> np.ndarray:
        """This step's homing command for the arm's interface (module docstring)."""
        if self.interface == EFFORT:
            return self.effort(q, qd)
        limit = np.asarray(self.velocity_limit, dtype=float)
        velocity = np.clip(self.kp * self.error(q), -limit, limit)
        if self.interface == VELOCITY:
            return velocity
        return np.asarray(q, dtype=float) + velocity * self.control_dt

    def at_home(self, q: np.ndarray, qd: np.ndarray) -> bool:
        """Within ``tolerance`` of home and slower than ``velocity_tolerance``, every joint."""
        return bool(
            np.all(np.abs(self.error(q)) <= self.tolerance)
            and np.all(np.abs(np.asarray(qd, dtype=float)) <= self.velocity_tolerance)
        )

    def verdict(self, q: np.ndarray, qd: np.ndarray, elapsed: float, delivered: bool) -> str | None:
        """:data:`HOME`, :data:`TIMEOUT`, or None to keep homing.

        ``delivered``: a homing command was acknowledged by a subscribed driver. Being home
        wins over a timeout that ran out at the same state.
        """
        if delivered and self.at_home(q, qd):
            return HOME
        if elapsed >= self.timeout:
            return TIMEOUT
        return None
