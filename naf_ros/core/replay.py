"""Fixed-capacity ring buffer of transitions, numpy-backed so it checkpoints as plain arrays."""

from __future__ import annotations

import numpy as np
import torch

FIELDS = ("obs", "action", "reward", "next_obs", "terminal", "step")
FLOAT_FIELDS = ("obs", "action", "reward", "next_obs", "terminal")  # what an update reads
# Optional column: the behaviour policy's log-density of the stored action (SVG(1)-ER's
# importance weights); NaN where it is unknown (bags, old checkpoints).
BEHAVIOUR_LOGP = "behaviour_logp"
F32_MAX = float(np.finfo(np.float32).max)


def storable(*values) -> bool:
    """Finite and inside float32 range: a finite double beyond it would be inf in R."""
    with np.errstate(invalid="ignore"):
        return all((np.abs(np.asarray(v, np.float64)) <= F32_MAX).all() for v in values)


def _storable_rows(values: np.ndarray) -> np.ndarray:
    arr = np.asarray(values, np.float64)
    with np.errstate(invalid="ignore"):  # NaN compares False: rejected like inf
        return (np.abs(arr) <= F32_MAX).all(axis=tuple(range(1, arr.ndim)))


class ReplayBuffer:
    """Stores (x, u, r, x', terminal, t) as float32; rejects (and counts) transitions that are
    non-finite or beyond float32 range.

    ``terminal`` is 1 only for true terminal states; a time-limit truncation is stored as 0
    so that the target bootstraps through it. With ``behaviour_logp`` each row also keeps the
    log-density the acting policy gave its action (an off-policy agent's importance weights);
    that column may be NaN (unknown) and is not checked for storability.
    """

    def __init__(
        self, obs_dim: int, act_dim: int, capacity: int, behaviour_logp: bool = False
    ) -> None:
        self.obs_dim, self.act_dim, self.capacity = obs_dim, act_dim, int(capacity)
        self.has_behaviour_logp = bool(behaviour_logp)
        float_fields = FLOAT_FIELDS + ((BEHAVIOUR_LOGP,) if behaviour_logp else ())
        self._fields = FIELDS + ((BEHAVIOUR_LOGP,) if behaviour_logp else ())
        # The float fields are column blocks of one row-major array, so a minibatch is one
        # gather and one copy to the training device (sample_tensors).
        widths = (obs_dim, act_dim, 1, obs_dim, 1) + ((1,) if behaviour_logp else ())
        self._rows = np.zeros((self.capacity, sum(widths)), np.float32)
        self._columns: dict[str, slice] = {}
        start = 0
        for name, width in zip(float_fields, widths):
            self._columns[name] = slice(start, start + width)
            start += width
        self.obs = self._rows[:, self._columns["obs"]]
        self.action = self._rows[:, self._columns["action"]]
        self.reward = self._rows[:, self._columns["reward"].start]
        self.next_obs = self._rows[:, self._columns["next_obs"]]
        self.terminal = self._rows[:, self._columns["terminal"].start]
        if behaviour_logp:
            self.behaviour_logp = self._rows[:, self._columns[BEHAVIOUR_LOGP].start]
        self.step = np.zeros(self.capacity, np.int32)
        self._staging: dict[int, tuple[np.ndarray, dict[str, torch.Tensor]]] = {}
        self.size = 0
        self.cursor = 0
        self.rejected = 0
        self.added = 0

    def __len__(self) -> int:
        return self.size

    def add(
        self,
        obs,
        action,
        reward,
        next_obs,
        terminal: bool,
        step: int = 0,
        behaviour_logp: float | None = None,
    ) -> bool:
        """Append one transition; returns False (and counts it) if it is not storable.
        ``behaviour_logp`` (None: unknown, stored as NaN) only where the buffer has it."""
        obs = np.asarray(obs, np.float64)
        action = np.asarray(action, np.float64)
        next_obs = np.asarray(next_obs, np.float64)
        if (
            obs.shape != (self.obs_dim,)
            or next_obs.shape != (self.obs_dim,)
            or action.shape != (self.act_dim,)
            or not storable(obs, action, next_obs, reward)
        ):
            self.rejected += 1
            return False
        i = self.cursor
        self.obs[i], self.action[i], self.reward[i] = obs, action, reward
        self.next_obs[i], self.terminal[i], self.step[i] = next_obs, float(terminal), step
        if self.has_behaviour_logp:
            self.behaviour_logp[i] = np.nan if behaviour_logp is None else behaviour_logp
        self.cursor = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        self.added += 1
        return True

    def add_batch(
        self, obs, action, reward, next_obs, terminal, step=None, behaviour_logp=None
    ) -> int:
        """Vectorised add (imagination rollouts); unstorable rows are dropped and counted."""
        obs, action, next_obs = (np.asarray(a, np.float64) for a in (obs, action, next_obs))
        reward = np.asarray(reward, np.float64).reshape(-1)
        terminal = np.asarray(terminal, np.float64).reshape(-1)
        step = np.zeros(len(reward), np.int32) if step is None else np.asarray(step).reshape(-1)
        ok = (
            _storable_rows(obs)
            & _storable_rows(action)
            & _storable_rows(next_obs)
            & _storable_rows(reward)
        )
        self.rejected += int((~ok).sum())
        idx = np.flatnonzero(ok)
        if len(idx) > self.capacity:
            idx = idx[-self.capacity :]
        slots = (self.cursor + np.arange(len(idx))) % self.capacity
        self.obs[slots], self.action[slots] = obs[idx], action[idx]
        self.reward[slots], self.next_obs[slots] = reward[idx], next_obs[idx]
        self.terminal[slots], self.step[slots] = terminal[idx], step[idx]
        if self.has_behaviour_logp:
            logp = np.full(len(reward), np.nan)
            if behaviour_logp is not None:
                logp = np.asarray(behaviour_logp, np.float64).reshape(-1)
            self.behaviour_logp[slots] = logp[idx]
        self.cursor = int((self.cursor + len(idx)) % self.capacity)
        self.size = min(self.size + len(idx), self.capacity)
        self.added += len(idx)
        return len(idx)

    def keep_latest(self, n: int) -> None:
        """Forget all but the ``n`` most recently added rows (oldest first afterwards)."""
        n = max(0, min(int(n), self.size))
        if n == self.size:
            return
        order = (np.arange(self.size - n, self.size) + (self.cursor - self.size)) % self.capacity
        for name in self._fields:
            arr = getattr(self, name)
            arr[:n] = arr[order]
        self.size, self.cursor = n, n % self.capacity

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        idx = rng.integers(0, self.size, size=batch_size)
        return {name: getattr(self, name)[idx] for name in self._fields}

    def sample_tensors(
        self,
        batch_size: int,
        rng: np.random.Generator,
        device: torch.device,
        reuse: bool = False,
    ) -> dict[str, torch.Tensor]:
        """:meth:`sample`'s draw (same indices for the same ``rng``) as float32 tensors on
        ``device``, copied there in one transfer; ``step`` is left out (updates ignore it).

        ``reuse=True`` (CPU only; elsewhere ignored) gathers into a staging array kept per
        batch size and returns views of it, so the *next* reusing call overwrites this
        batch: for loops that consume each batch before drawing the next (the learner's).
        Why: the column views and the allocation cost more than the gather itself, a
        measurable share of a fast update at 2x64.
        """
        idx = rng.integers(0, self.size, size=batch_size)
        if reuse and device.type == "cpu":
            staged = self._staging.get(batch_size)
            if staged is None:
                rows = np.empty((batch_size, self._rows.shape[1]), np.float32)
                staged = self._staging[batch_size] = (
                    rows,
                    self._columns_of(torch.from_numpy(rows)),
                )
            np.take(self._rows, idx, axis=0, out=staged[0])
            return dict(staged[1])
        return self._columns_of(torch.from_numpy(self._rows[idx]).to(device))

    def _columns_of(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {name: rows[:, cols] for name, cols in self._columns.items()}
        out["reward"], out["terminal"] = out["reward"][:, 0], out["terminal"][:, 0]
        if self.has_behaviour_logp:
            out[BEHAVIOUR_LOGP] = out[BEHAVIOUR_LOGP][:, 0]
        return out

    def state_dict(self) -> dict:
        n = self.size
        order = (np.arange(n) + (self.cursor - n)) % self.capacity  # oldest first
        data = {name: getattr(self, name)[order].copy() for name in self._fields}
        data.update(capacity=self.capacity, rejected=self.rejected, added=self.added)
        return data

    def load_state_dict(self, data: dict) -> None:
        self.__init__(self.obs_dim, self.act_dim, int(data["capacity"]), self.has_behaviour_logp)
        n = len(data["reward"])
        self.add_batch(
            data["obs"],
            data["action"],
            data["reward"],
            data["next_obs"],
            data["terminal"],
            data["step"],
            data.get(BEHAVIOUR_LOGP),  # a checkpoint without the column: unknown (NaN)
        )
        self.rejected, self.added = int(data["rejected"]), int(data["added"])
        assert self.size == min(n, self.capacity)
