"""Is a joint state plausible for this arm? The check before anything is commanded from it.

A driver that reports a joint outside its range by more than a slack, or a speed no real arm
reaches, is broken or mis-mapped (wrong joint order, degrees for radians); computing a command
from such a state is never safe. Separate from the envelope (:mod:`naf_ros.core.safety`): the
envelope shapes a command, this decides whether a state may be used at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class StatePlausibility:
    """Finite is not enough: a joint state 1e300 rad from home is a broken driver or a bad
    message, and acting on it would feed garbage to the policy and the learner. A state is
    plausible when every position lies within the joint's hard range widened by
    ``position_slack`` (or within ``unlimited_position`` rad for a continuous joint) and
    every speed is at most ``max_velocity``."""

    lower: tuple[float, ...]
    upper: tuple[float, ...]
    position_slack: float = 0.5
    max_velocity: float = 100.0
    unlimited_position: float = 1e4

    def __post_init__(self) -> None:
        if len(self.lower) != len(self.upper):
            raise ValueError("plausibility: lower and upper need one value per joint")
        for key in ("position_slack", "max_velocity", "unlimited_position"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"plausibility.{key}: {value!r} must be finite and > 0")

    @classmethod
    def from_arm(cls, arm: Any, **kwargs: float) -> StatePlausibility:
        return cls(
            tuple(float(v) for v in arm.joint_lower),
            tuple(float(v) for v in arm.joint_upper),
            **kwargs,
        )

    def check(self, q: np.ndarray, qd: np.ndarray) -> str | None:
        """None if plausible, else a one-line reason naming the first offending joint."""
        lower = np.asarray(self.lower)
        upper = np.asarray(self.upper)
        lo = np.where(np.isfinite(lower), lower - self.position_slack, -self.unlimited_position)
        hi = np.where(np.isfinite(upper), upper + self.position_slack, self.unlimited_position)
        q = np.asarray(q, dtype=np.float64)
        qd = np.asarray(qd, dtype=np.float64)
        if not (np.isfinite(q).all() and np.isfinite(qd).all()):
            return "non-finite joint state"
        bad = np.flatnonzero((q < lo) | (q > hi))
        if bad.size:
            j = int(bad[0])
            return f"joint {j} position {q[j]:.4g} rad outside [{lo[j]:.4g}, {hi[j]:.4g}]"
        bad = np.flatnonzero(np.abs(qd) > self.max_velocity)
        if bad.size:
            j = int(bad[0])
            return f"joint {j} speed {abs(qd[j]):.4g} rad/s above {self.max_velocity:.4g}"
        return None
