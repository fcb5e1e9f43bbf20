"""No transition lost: the producer's outbox and re-send rules, the consumer's sequencer.

DDS "reliable" only holds while both ends live. When the learner dies, everything it had
received since its last checkpoint dies with it, so the producer (naf_policy) keeps every
transition it published in an :class:`Outbox` until the learner reports it *durable*
(contained in a checkpoint) on ``/naf/learner_progress``, and re-sends what a (re)started
learner has not got; :class:`Producer` holds those rules (numbering, acknowledgements, when
to re-send what). The consumer side (:class:`Sequencer`) turns the resulting stream —
live transitions, re-sent ones, duplicates, in any interleaving — back into each producer's
sequence, in order and exactly once:

1. ``seq == expected``: released, followed by any held successors.
2. ``seq > expected``: held (the producer will re-send the missing ones). Only after
   ``gap_timeout_s`` without the gap filling (or ``max_held`` held) are the missing numbers
   declared lost, counted, and the held ones released. ``gap_timeout_s == 0`` declares gaps
   at once (a stream without an outbox behind it).
3. ``seq < expected`` or already held: a duplicate (or a late copy of a number declared
   lost): dropped and counted.
4. ``seq == 0`` at ``t == 0`` with an episode number newer than any seen from that producer
   (or episode 0 after more than one transition, for producers that do not persist their
   episode count): the producer restarted. Its old sequence can never be completed, so a
   pending gap of it is declared lost, and the new sequence starts.

Pure Python: the nodes feed it; tests drive it without DDS.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from naf_ros.core.episodes import GAP, OK, RESTART, TOO_MANY_PRODUCERS, SequenceTracker


# --- producer side ----------------------------------------------------------------------------
@dataclass(slots=True)
class OutboxEntry:
    seq: int
    data: np.ndarray  # the transition message's data (its layout is the same for all)
    sent: float  # monotonic time of the last (re-)send


class Outbox:
    """Published transitions not yet acknowledged as durable, oldest first, bounded.

    Overflow drops the oldest entry (it was sent at least once; it is only at risk if the
    learner dies before checkpointing it) and is counted so the node can report it.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"outbox capacity {capacity} must be >= 1")
        self.capacity = int(capacity)
        self._items: deque[OutboxEntry] = deque()
        self.overflow = 0
        self.resent = 0
        self.acked_through = -1

    def __len__(self) -> int:
        return len(self._items)

    def add(self, seq: int, data: np.ndarray, now: float | None = None) -> bool:
        """Keep one published transition; returns False if that pushed out the oldest."""
        if self._items and seq != self._items[-1].seq + 1:
            self._items.clear()  # a new sequence (producer restart): the old one is moot
        self._items.append(OutboxEntry(int(seq), data, time.monotonic() if now is None else now))
        if len(self._items) > self.capacity:
            self._items.popleft()
            self.overflow += 1
            return False
        return True

    def ack(self, seq: int) -> int:
        """Forget everything up to ``seq`` (durable at the learner); returns how many."""
        n = 0
        while self._items and self._items[0].seq <= seq:
            self._items.popleft()
            n += 1
        self.acked_through = max(self.acked_through, int(seq))
        return n

    def after(self, seq: int, limit: int | None = None) -> list[OutboxEntry]:
        """Entries with a sequence number above ``seq``, oldest first (at most ``limit``)."""
        if not self._items or self._items[-1].seq <= seq:
            return []
        start = max(0, seq + 1 - self._items[0].seq)
        stop = len(self._items) if limit is None else min(len(self._items), start + limit)
        return [self._items[i] for i in range(start, stop)]

    def oldest_after(self, seq: int) -> OutboxEntry | None:
        got = self.after(seq, 1)
        return got[0] if got else None

    @property
    def first_seq(self) -> int | None:
        return self._items[0].seq if self._items else None

    @property
    def last_seq(self) -> int | None:
        return self._items[-1].seq if self._items else None


class Producer:
    """The producer half of the protocol: sequence numbers, the outbox, acknowledgements from
    the learner's progress, and when to re-send what.

    Why a class of its own: these rules decide whether a transition can be lost, and they
    are easier to trust when driven step by step without DDS (test_delivery.py) than through
    a node. The node parses progress messages, publishes, and serialises every call with one
    lock (this class is not thread-safe); ``warn`` receives the log lines worth a warning.

    - :meth:`add` numbers a published transition (0, 1, ... for this process) and keeps it.
    - :meth:`on_progress` takes one learner progress report: ``acked`` (trained on; lockstep
      pacing) and ``durable`` (checkpointed: the outbox forgets up to it). A new
      ``learner_id`` is a (re)started learner: it may be behind, so everything after what it
      reports is re-sent. A report whose ``last_episode`` predates our first transition is
      about a previous run of this producer and acknowledges nothing of ours.
    - :meth:`due_resend`, called periodically, returns the next batch to re-send: after a new
      learner appeared, or when a live learner (reports keep coming) acknowledged nothing new
      for ``resend_timeout`` s although something sent that long ago is unacknowledged.
    - :attr:`fruitless` counts those fallback re-sends in a row that the learner did not
      acknowledge (reset by any new acknowledgement or learner). A learner that stays alive
      but never takes a re-send may not know our writer at all; the node then replaces its
      writer (``renew_writer_after``), which makes DDS announce and pair it afresh.
    """

    def __init__(
        self,
        capacity: int,
        resend_timeout: float,
        resend_batch: int,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        if resend_batch < 1:
            raise ValueError(f"resend batch {resend_batch} must be >= 1")
        self.outbox = Outbox(capacity)
        self.resend_timeout = float(resend_timeout)
        self.resend_batch = int(resend_batch)
        self._warn = warn if warn is not None else (lambda _msg: None)
        self.seq = 0  # the next transition's sequence number
        self.first_episode: int | None = None  # episode field of our first transition
        self.episode_hint: int | None = None  # newest episode of ours the learner reported
        self.learner_id: float | None = None
        self.acked = -1  # the learner trained on everything up to here
        self.durable = -1  # ... and checkpointed everything up to here
        self.stale = False  # pacing gave up on the learner until it acknowledges again
        self.last_progress = 0.0  # monotonic time of the last progress report
        self.last_ack_change = time.monotonic()
        self.last_resend = 0.0
        self.fruitless = 0
        self._resend_from: int | None = None

    def add(self, episode: int, data: np.ndarray, now: float | None = None) -> bool:
        """Keep transition number :attr:`seq` (just published) and advance the numbering.

        Returns False if the full outbox dropped its oldest entry for it (counted in
        ``outbox.overflow``).
        """
        if self.first_episode is None:
            self.first_episode = int(episode)
        kept = self.outbox.add(self.seq, data, now)
        self.seq += 1
        return kept

    def on_progress(
        self,
        learner_id: float | None,
        last_seq: int | None,
        durable_seq: int | None = None,
        last_episode: int | None = None,
        now: float | None = None,
    ) -> None:
        """One progress report; ``last_seq`` None when it has no entry for this producer."""
        now = time.monotonic() if now is None else now
        ack = durable = -1
        if last_seq is not None:
            stale = False
            if last_episode is not None:
                self.episode_hint = max(self.episode_hint or -1, int(last_episode))
                stale = self.first_episode is None or last_episode < self.first_episode
            if not stale:
                ack = int(last_seq)
                durable = ack if durable_seq is None else int(durable_seq)
        self.last_progress = now
        if learner_id is not None and learner_id != self.learner_id:
            restarted = self.learner_id is not None
            self.learner_id = learner_id
            self.acked = ack  # a restarted learner may be behind the old one
            self.last_ack_change = now
            self.fruitless = 0
            if self.seq and self.seq - 1 > ack:
                self._resend_from = ack + 1
                self._warn(
                    f"learner {'restarted' if restarted else 'appeared'} at seq {ack}: "
                    f"re-sending {self.seq - 1 - ack} transitions"
                )
            self.stale = False
        elif ack > self.acked:
            self.acked = ack
            self.last_ack_change = now
            self.fruitless = 0
            self.stale = False
        elif learner_id is None:  # a learner without heartbeats: any report is a sign of life
            self.stale = False
        if durable >= 0:
            self.outbox.ack(durable)
            self.durable = durable

    def due_resend(
        self, can_send: Callable[[], bool], now: float | None = None
    ) -> list[OutboxEntry]:
        """The next batch to re-send (oldest first, at most ``resend_batch``), marked sent.

        ``can_send`` is asked only when there is something to re-send (it may be costly,
        e.g. a graph query whether the learner is subscribed); False postpones the batch.
        """
        now = time.monotonic() if now is None else now
        ack, start = self.acked, self._resend_from
        # Fallback: the learner is alive (reports arrive) but acknowledges nothing new of
        # what we sent; a silent learner is dead, and its successor's new id triggers the
        # re-send instead.
        alive = now - self.last_progress < self.resend_timeout
        fallback = False
        if start is None and self.learner_id is not None and alive:
            oldest = self.outbox.oldest_after(ack)
            quiet = now - max(self.last_ack_change, self.last_resend)
            if oldest is not None and now - oldest.sent > self.resend_timeout:
                if quiet > self.resend_timeout:
                    start = ack + 1
                    fallback = True
                    self._warn(
                        f"learner acknowledged nothing after seq {ack} for {quiet:.1f} s; "
                        "re-sending"
                    )
        if start is None or not can_send():
            return []
        batch = self.outbox.after(start - 1, self.resend_batch)
        if fallback and batch:
            self.fruitless += 1
        for entry in batch:
            entry.sent = now
        self.outbox.resent += len(batch)
        self.last_resend = now
        more = batch[-1].seq + 1 if len(batch) == self.resend_batch else None
        if self._resend_from == start or self._resend_from is None:
            self._resend_from = more
        return batch

    def writer_renewed(self, now: float | None = None) -> None:
        """The node replaced its writer: start counting afresh, and wait a full
        ``resend_timeout`` before the next fallback re-send, so the learner can learn of
        the new writer before anything goes through it."""
        self.fruitless = 0
        self.last_resend = time.monotonic() if now is None else now

    def unacked(self) -> bool:
        """Something sent is not yet trained on by the learner."""
        return self.outbox.oldest_after(self.acked) is not None


# --- consumer side ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Delivery:
    """One sequence number handed on, in order: its payload, and how it was accounted."""

    producer: int
    seq: int
    episode: int
    payload: Any
    status: str  # OK, GAP (``missing`` numbers before it were declared lost) or RESTART
    missing: int = 0


@dataclass
class _Held:
    episode: int
    payload: Any


class Sequencer:
    """Per-producer in-order, exactly-once delivery over a :class:`SequenceTracker`.

    The tracker keeps the counters (gaps, lost, restarts) and the duplicate/late rules; this
    class adds holding out-of-order numbers until their gap fills or times out, and the
    restart rule that needs episode numbers (module docstring).
    """

    def __init__(
        self,
        gap_timeout_s: float = 0.0,
        max_held: int = 100_000,
        tracker: SequenceTracker | None = None,
    ) -> None:
        self.gap_timeout_s = float(gap_timeout_s)
        self.max_held = int(max_held)
        self.tracker = tracker or SequenceTracker()
        self.last_episode: dict[int, int] = {}
        self._held: dict[int, dict[int, _Held]] = {}
        self._held_since: dict[int, float] = {}

    # --- state ------------------------------------------------------------------------------
    def expected(self, producer: int) -> int | None:
        return self.tracker.last_seq(producer) + 1 if producer in self.tracker.producers else None

    def resume(self, producer: int, last_seq: int, last_episode: int | None) -> None:
        """Continue a producer's sequence after ``last_seq`` (e.g. from a checkpoint)."""
        self.tracker.set_next(producer, int(last_seq) + 1)
        if last_episode is not None:
            self.last_episode[int(producer)] = int(last_episode)

    @property
    def held(self) -> int:
        return sum(len(h) for h in self._held.values())

    # --- input ------------------------------------------------------------------------------
    def offer(
        self,
        producer: int,
        seq: int,
        episode: int,
        t: int,
        payload: Any = None,
        now: float | None = None,
    ) -> tuple[list[Delivery], str | None]:
        """Take one arrival; returns (deliveries now in order, reject reason or None)."""
        now = time.monotonic() if now is None else now
        tracker = self.tracker
        expected = self.expected(producer)
        if expected is None and producer not in self._held:
            if len(set(tracker.producers) | set(self._held)) >= tracker.max_producers:
                return [], TOO_MANY_PRODUCERS
        if self._is_restart(producer, seq, episode, t, expected):
            out = self._flush(producer)
            if (self.expected(producer) or 0) > 1:
                verdict = tracker.check(producer, 0, restart_hint=True)  # also forgets lost ranges
            else:  # the old sequence had a single transition: the tracker cannot tell
                tracker.set_next(producer, 0)
                verdict = tracker.check(producer, 0)
                tracker.restarts += 1
            assert verdict.accepted
            self.last_episode[producer] = int(episode)
            out.append(Delivery(producer, 0, int(episode), payload, RESTART))
            return out, None
        held = self._held.get(producer, {})
        if expected is not None and seq < expected or seq in held:
            verdict = tracker.check(producer, seq) if seq not in held else None
            return [], "duplicate" if verdict is None else verdict.status
        if self.gap_timeout_s > 0 and seq != (expected or 0):
            held = self._held.setdefault(producer, {})
            if not held:
                self._held_since[producer] = now
            held[seq] = _Held(int(episode), payload)
            if len(held) > self.max_held:
                return self._declare_gap(producer, now), None
            return [], None
        out = [self._accept(producer, seq, int(episode), payload)]
        out += self._release_contiguous(producer)
        return out, None

    def expire(self, now: float | None = None) -> list[Delivery]:
        """Declare gaps that waited ``gap_timeout_s`` lost; returns what that released."""
        now = time.monotonic() if now is None else now
        out: list[Delivery] = []
        for producer in list(self._held):
            if self._held.get(producer) and now - self._held_since[producer] >= self.gap_timeout_s:
                out += self._declare_gap(producer, now)
        return out

    # --- internals --------------------------------------------------------------------------
    def _is_restart(self, producer: int, seq: int, episode: int, t: int, expected) -> bool:
        if seq != 0 or t != 0 or expected is None:
            return False
        last = self.last_episode.get(producer)
        if last is not None and episode > last:
            return True
        return episode == 0 and expected > 1 and (last is None or last > 0)

    def _accept(self, producer: int, seq: int, episode: int, payload: Any) -> Delivery:
        verdict = self.tracker.check(producer, seq)
        assert verdict.accepted and verdict.status in (OK, GAP), verdict
        prev = self.last_episode.get(producer)
        self.last_episode[producer] = episode if prev is None else max(prev, episode)
        return Delivery(producer, seq, episode, payload, verdict.status, verdict.missing)

    def _release_contiguous(self, producer: int) -> list[Delivery]:
        held = self._held.get(producer)
        out: list[Delivery] = []
        while held:
            nxt = self.tracker.last_seq(producer) + 1
            item = held.pop(nxt, None)
            if item is None:
                break
            out.append(self._accept(producer, nxt, item.episode, item.payload))
        return out

    def _declare_gap(self, producer: int, now: float) -> list[Delivery]:
        """Give up on the missing numbers before the lowest held one; release onwards."""
        held = self._held[producer]
        lowest = min(held)
        item = held.pop(lowest)
        out = [self._accept(producer, lowest, item.episode, item.payload)]
        out += self._release_contiguous(producer)
        if held:
            self._held_since[producer] = now  # the next gap gets its own full wait
        return out

    def _flush(self, producer: int) -> list[Delivery]:
        """A restarted producer never re-sends its old sequence: release what is held."""
        out: list[Delivery] = []
        while self._held.get(producer):
            out += self._declare_gap(producer, 0.0)
        return out

    def pending(self) -> Iterator[tuple[int, int]]:
        """(producer, held count) for diagnostics."""
        for producer, held in self._held.items():
            if held:
                yield producer, len(held)
