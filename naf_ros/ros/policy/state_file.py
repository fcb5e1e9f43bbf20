"""The policy node's own state across restarts (parameter ``persist``).

What a restarted policy must not forget: how many training episodes it has run (so the run
ends after ``train.episodes`` in total and transition episode numbers keep increasing, which
is how the learner tells a restarted producer from a re-sent one), the steps taken, and
whether safe exploration has already been passed. Kept in
``<train.run_dir>/naf_policy_<arm_index>_state.pt`` through a :class:`CheckpointFile`
(newest plus ``.prev``); a file of another arm or kind is refused like a damaged one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diagnostic_msgs.msg import DiagnosticStatus

from naf_ros.ros.diagnostics import Diagnostics
from naf_ros.ros.persist import CheckpointFile

STATE_KIND = "naf_ros-policy-state"


@dataclass
class PolicyState:
    """What survives a restart of one arm's policy."""

    episode: int
    env_steps: int
    safe_passed: bool


class PolicyStateFile:
    """Loads and saves one arm's :class:`PolicyState`; save failures go to ``/diagnostics``."""

    def __init__(self, run_dir: str | Path, arm_index: int, diag: Diagnostics, logger: Any) -> None:
        self.arm_index = arm_index
        self.diag = diag
        self.logger = logger
        self.file = CheckpointFile(Path(run_dir) / f"naf_policy_{arm_index}_state.pt", logger.error)

    @property
    def loaded_from(self) -> Path | None:
        return self.file.loaded_from

    def load(self) -> PolicyState | None:
        """The newest usable state of this arm (falling back to ``.prev``), or None."""
        found: list[PolicyState] = []

        def apply(p: dict) -> None:
            if p.get("kind") != STATE_KIND or int(p["arm_index"]) != self.arm_index:
                raise ValueError(f"not this arm's policy state ({p.get('kind')!r})")
            found.append(
                PolicyState(int(p["episode"]), int(p["env_steps"]), bool(p["safe_passed"]))
            )

        self.file.load(apply)
        return found[-1] if found else None

    def save(self, state: PolicyState) -> None:
        """Save; a failure is reported (log, ``/diagnostics``), never raised."""
        ok = self.file.save(
            {
                "kind": STATE_KIND,
                "arm_index": self.arm_index,
                "episode": state.episode,
                "env_steps": state.env_steps,
                "safe_passed": state.safe_passed,
            }
        )
        if ok:
            self.diag.clear("state")
        else:
            self.diag.problem(
                "state", DiagnosticStatus.WARN, f"state not saved: {self.file.last_error}"
            )
            self.logger.warning(
                f"state not saved: {self.file.last_error}", throttle_duration_sec=30.0
            )
        self.diag.values.update(self.file.diagnostics("state"))
