"""When a realtime arm may start its next training episode: once the learner caught up (no ROS).

On a robot, transitions arrive at the control rate whether the learner is ready or not; a
learner slower than I updates per transition then trains on fewer updates per transition
than the algorithm of the benchmarks. Slowing the control loop is not an option (the arm
moves in physical time), but the pause between episodes is free: with ``catch_up_ratio`` c
in (0, 1] the policy holds the next training episode until the learner reports at least
c times the updates per transition it plans for this arm (I, or I + I*l while imagining),
over the whole run so far. The learner goes on updating while no new transition comes in
and credits those updates to the arms that sent the last ones, so the figure rises while
the arm rests. ``max_wait_s`` bounds the hold: a learner that stopped (or one that never
reports this arm) must not park the arm forever.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CatchUp:
    """The rule; ``ratio`` 0 switches it off."""

    ratio: float
    max_wait_s: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.ratio <= 1.0:
            raise ValueError(f"catch_up_ratio: {self.ratio} is not in [0, 1]")
        if self.max_wait_s <= 0:
            raise ValueError(f"catch_up_timeout: {self.max_wait_s} must be > 0")

    @property
    def enabled(self) -> bool:
        return self.ratio > 0

    def caught_up(self, achieved: float | None, target: float | None, unseen: int = 0) -> bool:
        """True if the learner's figure for this arm reaches ``ratio`` of its target.

        No figure (the learner is not warm yet, so no update is due, or it has not heard
        of this arm) or no positive target means there is nothing to catch up with. A
        figure from before the learner had all our transitions (``unseen`` > 0 of them
        missing) is too high to go by: the missing ones have had no update yet.
        """
        if not self.enabled or achieved is None or target is None or target <= 0:
            return True
        return unseen <= 0 and achieved >= self.ratio * target
