"""Homing, a real arm's reset: a PD law towards a home pose and the rule for when it is done.

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

HOME = "home"
TIMEOUT = "timeout"


@dataclass(frozen=True)
class Homing:
    """PD gains and the completion rule of homing to ``home`` (joint angles, rad)."""

    home: np.ndarray
    kp: float
    kd: float
    tolerance: float
    velocity_tolerance: float
    timeout: float

    def error(self, q: np.ndarray) -> np.ndarray:
        """``home - q`` wrapped to (-pi, pi]: a continuous joint goes the short way round."""
        d = np.asarray(self.home, dtype=float) - np.asarray(q, dtype=float)
        return np.arctan2(np.sin(d), np.cos(d))

    def effort(self, q: np.ndarray, qd: np.ndarray) -> np.ndarray:
        return self.kp * self.error(q) - self.kd * np.asarray(qd, dtype=float)

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
