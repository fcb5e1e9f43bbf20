"""Pure bookkeeping over the transition stream: sequence tracking and episode assembly.

The ROS nodes only adapt messages; the rules that decide what is accepted, what counts as a
gap and when an episode is complete live here so they are testable without DDS. Every
rejection comes back with a reason string for the nodes to count on ``/diagnostics``.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

# --- sequence tracking -------------------------------------------------------------------------
OK, GAP, RESTART = "ok", "gap", "restart"
DUPLICATE, LATE, TOO_MANY_PRODUCERS = "duplicate", "out_of_order", "too_many_producers"


@dataclass(frozen=True)
class SeqVerdict:
    """What to do with one sequence number: accepted or not, why, and how many were lost."""

    accepted: bool
    status: str
    missing: int = 0


class SequenceTracker:
    """Per-producer contiguous sequence numbers (``seq`` from 0, +1 per transition).

    A reliable stream delivers in order, so anything behind the expected number is either a
    duplicate or a late copy of a number already declared lost; both are dropped. A jump
    ahead is a gap: the missing numbers are declared lost (counted, never waited for), so a
    lockstep producer waiting on our progress is never blocked by a loss. ``seq == 0`` at
    the first step of episode 0 after more than one transition marks a restarted producer.
    """

    def __init__(self, max_producers: int = 256, max_lost_ranges: int = 256) -> None:
        self.max_producers = int(max_producers)
        self.max_lost_ranges = int(max_lost_ranges)
        self._next: dict[int, int] = {}
        self._lost: dict[int, deque[tuple[int, int]]] = {}
        self.gaps = 0
        self.lost = 0
        self.restarts = 0

    def check(self, producer: int, seq: int, restart_hint: bool = False) -> SeqVerdict:
        """Classify ``seq`` and advance the producer's state if it is accepted."""
        expected = self._next.get(producer)
        if expected is None:
            if len(self._next) >= self.max_producers:
                return SeqVerdict(False, TOO_MANY_PRODUCERS)
            self._lost[producer] = deque(maxlen=self.max_lost_ranges)
            expected = 0
        if seq == expected:
            self._next[producer] = seq + 1
            return SeqVerdict(True, OK)
        if seq > expected:
            missing = seq - expected
            self._lost[producer].append((expected, seq - 1))
            self._next[producer] = seq + 1
            self.gaps += 1
            self.lost += missing
            return SeqVerdict(True, GAP, missing)
        if seq == 0 and restart_hint and expected > 1:
            self._next[producer] = 1
            self._lost[producer].clear()
            self.restarts += 1
            return SeqVerdict(True, RESTART)
        if any(lo <= seq <= hi for lo, hi in self._lost[producer]):
            return SeqVerdict(False, LATE)
        return SeqVerdict(False, DUPLICATE)

    def last_seq(self, producer: int) -> int:
        """Highest number accounted for (received or declared lost); -1 if none yet."""
        return self._next.get(producer, 0) - 1

    @property
    def producers(self) -> list[int]:
        return sorted(self._next)

    def state_dict(self) -> dict:
        return {
            "next": dict(self._next),
            "gaps": self.gaps,
            "lost": self.lost,
            "restarts": self.restarts,
        }

    def load_state_dict(self, state: dict) -> None:
        self._next = {int(k): int(v) for k, v in state["next"].items()}
        self._lost = {p: deque(maxlen=self.max_lost_ranges) for p in self._next}
        self.gaps, self.lost = int(state["gaps"]), int(state["lost"])
        self.restarts = int(state["restarts"])

    def set_next(self, producer: int, next_seq: int) -> None:
        """Resume a producer's state (e.g. from what a checkpoint had trained on)."""
        self._next[int(producer)] = int(next_seq)
        self._lost.setdefault(int(producer), deque(maxlen=self.max_lost_ranges))


# --- episode assembly --------------------------------------------------------------------------
@dataclass
class Episode:
    """One complete episode: x_0..x_T (T+1, nx), u_0..u_{T-1}, rewards and controller ids."""

    producer: int
    episode: int
    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    controllers: np.ndarray
    terminal: bool

    @property
    def length(self) -> int:
        return len(self.actions)

    @property
    def ret(self) -> float:
        return float(self.rewards.sum())


@dataclass
class _Open:
    episode: int
    obs: list
    actions: list
    rewards: list
    controllers: list


class EpisodeAssembler:
    """Builds complete, fixed-length episodes from an (already de-duplicated) stream.

    A time-varying model needs every episode to cover t = 0..T-1 exactly, so an episode is
    complete only when t = T-1 arrives with ``truncated`` or ``terminal``. Anything else —
    a start we never saw, a skipped step, a state that does not continue the previous
    ``next_obs``, an early or late end, non-finite values — drops the episode with a reason.
    One episode is open per producer; memory stays bounded.
    """

    def __init__(self, obs_dim: int, act_dim: int, horizon: int, atol: float = 1e-6) -> None:
        if horizon < 1:
            raise ValueError("horizon must be >= 1")
        self.obs_dim, self.act_dim, self.horizon = int(obs_dim), int(act_dim), int(horizon)
        self.atol = float(atol)
        self._open: dict[int, _Open] = {}
        self.completed = 0

    def feed(self, tr: dict) -> tuple[Episode | None, list[str]]:
        """Add one decoded transition; returns (complete episode or None, drop reasons)."""
        reasons: list[str] = []
        producer, ep, t = int(tr["producer"]), int(tr["episode"]), int(tr["t"])
        obs = np.asarray(tr["obs"], dtype=float)
        action = np.asarray(tr["action"], dtype=float)
        next_obs = np.asarray(tr["next_obs"], dtype=float)
        if (
            obs.shape != (self.obs_dim,)
            or next_obs.shape != (self.obs_dim,)
            or action.shape != (self.act_dim,)
            or not (np.isfinite(obs).all() and np.isfinite(next_obs).all())
            or not (np.isfinite(action).all() and np.isfinite(tr["reward"]))
        ):
            return None, ["non_finite_or_shape"]
        cur = self._open.get(producer)
        if t == 0:
            if cur is not None:
                reasons.append("incomplete_episode")
            cur = self._open[producer] = _Open(ep, [obs], [], [], [])
        elif cur is None or cur.episode != ep:
            if cur is not None:
                del self._open[producer]
                reasons.append("incomplete_episode")
            return None, [*reasons, "episode_start_missing"]
        elif t != len(cur.actions):
            del self._open[producer]
            return None, ["episode_step_missing"]
        elif np.max(np.abs(cur.obs[-1] - obs)) > self.atol * (1.0 + np.max(np.abs(obs))):
            del self._open[producer]
            return None, ["discontinuous_state"]
        cur.actions.append(action)
        cur.rewards.append(float(tr["reward"]))
        cur.controllers.append(float(tr.get("controller", 0.0)))
        cur.obs.append(next_obs)
        ended = bool(tr["terminal"]) or bool(tr["truncated"])
        if not ended and len(cur.actions) < self.horizon:
            return None, reasons
        del self._open[producer]
        if not ended:
            return None, [*reasons, "episode_too_long"]
        if len(cur.actions) != self.horizon:
            return None, [*reasons, "episode_too_short"]
        self.completed += 1
        return (
            Episode(
                producer=producer,
                episode=ep,
                obs=np.stack(cur.obs),
                actions=np.stack(cur.actions),
                rewards=np.asarray(cur.rewards),
                controllers=np.asarray(cur.controllers),
                terminal=bool(tr["terminal"]),
            ),
            reasons,
        )

    @property
    def open_episodes(self) -> int:
        return len(self._open)


def stack_episodes(episodes: list[Episode]) -> tuple[np.ndarray, np.ndarray]:
    """X (N, T+1, nx) and U (N, T, nu), the layout the dynamics fit takes."""
    return np.stack([e.obs for e in episodes]), np.stack([e.actions for e in episodes])
