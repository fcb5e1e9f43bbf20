"""The learner's bookkeeping of its input stream, apart from learning itself (no ROS).

:class:`Accounts` holds, per producer, the last sequence number trained on (what progress
messages and checkpoints report); :class:`UpdateRatio` measures the updates each producer's
transitions actually got against the configured I (realtime learning must show whether it
keeps the algorithm of the benchmarks).
"""

from __future__ import annotations

import threading


class Accounts:
    """Per producer: the last sequence number accounted for and its episode.

    Written by the worker thread, read by the executor thread (progress messages), hence the
    lock; a checkpoint holds the same numbers as the learning state it was saved with.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.processed: dict[int, int] = {}
        self.last_episode: dict[int, int] = {}

    def account(self, producer: int, seq: int, episode: int) -> None:
        with self._lock:
            self.processed[producer] = seq
            self.last_episode[producer] = episode

    def copies(self) -> tuple[dict[int, int], dict[int, int]]:
        with self._lock:
            return dict(self.processed), dict(self.last_episode)

    def load(self, processed: dict, last_episode: dict) -> None:
        with self._lock:
            self.processed = {int(k): int(v) for k, v in processed.items()}
            self.last_episode = {int(k): int(v) for k, v in last_episode.items()}


class UpdateRatio:
    """Achieved updates per real transition, per producer and overall, against the target
    the algorithm asks for (I, or I + I·l while imagining): whether realtime learning keeps
    up with the arms.

    Each learn() call's updates are shared equally among the transitions added since the
    previous call; a call that follows no new transition (realtime, the learner is ahead)
    credits the producers of the last batch that had some. Only transitions added while R
    is warm count (no update is due before). Lockstep gives exactly the target. Written by
    the worker thread, read by the executor thread, hence the lock.
    """

    ALL = -1  # the overall account's key

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._totals: dict[int, list[float]] = {}  # key -> [transitions, updates, target]
        self._marks: dict[int, list[float]] = {}  # the totals at the last report
        self._last_shares: dict[int, int] = {}

    def record(self, added: dict[int, int], updates: int, target: int) -> None:
        """``added`` transitions per producer since the previous call, ``updates`` done for
        them, ``target`` updates the algorithm plans per transition."""
        with self._lock:
            shares = added or self._last_shares
            n = sum(shares.values())
            if not n:
                return
            if added:
                self._last_shares = dict(added)
            for key, k in [*shares.items(), (self.ALL, n)]:
                tot = self._totals.setdefault(key, [0.0, 0.0, 0.0])
                tot[1] += updates * k / n
                if added:
                    tot[0] += k
                    tot[2] += target * k

    def run_totals(self, pending: dict[int, int] | None = None) -> dict[int, tuple[float, float]]:
        """Per account, (updates per transition, mean target) over the whole run so far.

        Unlike :meth:`take`'s windows this figure moves while no transition comes in (the
        learner's updates then go to the last producers), which is what a realtime policy
        waiting for the learner to catch up must see (:mod:`naf_ros.core.catch_up`).
        ``pending``: transitions per producer added but not yet recorded (no update yet);
        they count, or a figure published between adding and learning would be too high.
        """
        pending = pending or {}
        with self._lock:
            out = {}
            for key, tot in self._totals.items():
                extra = sum(pending.values()) if key == self.ALL else pending.get(key, 0)
                if tot[0] > 0:
                    out[key] = (tot[1] / (tot[0] + extra), tot[2] / tot[0])
            return out

    def take(self) -> tuple[dict[int, float], float | None]:
        """Updates per transition since each account's last report that had transitions
        (an account without new transitions keeps accruing), and the mean target for the
        overall window. Keys are producers, :attr:`ALL` the overall figure."""
        out: dict[int, float] = {}
        target = None
        with self._lock:
            for key, tot in self._totals.items():
                mark = self._marks.get(key, [0.0, 0.0, 0.0])
                transitions = tot[0] - mark[0]
                if transitions <= 0:
                    continue
                out[key] = (tot[1] - mark[1]) / transitions
                if key == self.ALL:
                    target = (tot[2] - mark[2]) / transitions
                self._marks[key] = list(tot)
        return out, target


# --- the node ---------------------------------------------------------------------------------
