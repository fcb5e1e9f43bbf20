"""Transitions out, acknowledgements in: the policy node's side of "no transition lost".

The rules live in :class:`~naf_ros.core.delivery.Producer` (numbering, the outbox, when to
re-send); this module is what connects them to the wire: it publishes each transition and
keeps it, re-sends in bounded batches from a timer, decodes ``/naf/learner_progress`` into
this arm's acknowledgements, and says whether the learner has everything at shutdown.

Every published transition stays in the outbox until the learner reports it durable
(``durable_seq``); a learner with a new ``learner_id`` (a restart) gets what it lacks
re-sent, as does one that has acknowledged nothing for ``resend_timeout`` s; on shutdown the
node waits up to ``drain_timeout`` s for :meth:`TransitionsOut.drained`.

A live learner that acknowledges none of ``renew_writer_after`` such re-sends in a row may
never have paired with our writer (DDS endpoint discovery is two-sided, and each side can
miss the other; naf_ros.ros.rematch is the learner's half of this guard). The writer is then
replaced: a new one is announced and paired afresh, and the next re-send goes through it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.publisher import Publisher
from std_msgs.msg import Float64MultiArray

from naf_ros.core.delivery import Producer
from naf_ros.ros.codec import CodecError, unpack_arrays
from naf_ros.ros.diagnostics import Diagnostics
from naf_ros.ros.names import TRANSITIONS_TOPIC


class TransitionsOut:
    """One arm's transition stream (owned by the policy node).

    ``lock`` guards the producer and the publisher together (the episode worker, the resend
    timer and the progress callback run on different threads); ``pub`` is the node's
    transition publisher, set when the node is configured; ``subscriptions_info`` is the
    node's ``get_subscriptions_info_by_topic``.
    """

    def __init__(
        self,
        producer: Producer,
        arm_index: int,
        startup_subscribers: Sequence[str],
        subscriptions_info: Callable[[str], list],
        diag: Diagnostics,
        logger: Any,
        renew_writer_after: int = 0,
    ) -> None:
        self.producer = producer
        self.arm_index = arm_index
        self.startup_subscribers = set(startup_subscribers)
        self.subscriptions_info = subscriptions_info
        self.diag = diag
        self.logger = logger
        self.lock = threading.Lock()
        self.pub: Publisher | None = None
        self.renew_writer_after = int(renew_writer_after)
        self.writers_renewed = 0
        self._make_pub: Callable[[], Publisher] | None = None
        self._drop_pub: Callable[[Publisher], Any] | None = None
        self._layout = None  # every transition message shares one layout
        # The learner's (updates per transition, target) for our transitions over the run,
        # or (None, None), and the last seq it had then: read by the catch-up wait, replaced
        # in one assignment.
        self.learner_ratio: tuple[float | None, float | None, int] = (None, None, -1)

    def attach(
        self, make_pub: Callable[[], Publisher], drop_pub: Callable[[Publisher], Any]
    ) -> None:
        """Create the writer (``make_pub``); ``drop_pub`` destroys one being replaced."""
        with self.lock:
            self._make_pub, self._drop_pub = make_pub, drop_pub
            self.pub = make_pub()

    def _renew_writer(self) -> None:
        """Replace the writer (lock held): see the module docstring."""
        old, self.pub = self.pub, self._make_pub()
        self._drop_pub(old)
        self.producer.writer_renewed()
        self.writers_renewed += 1
        self.diag.values["transition_writers_renewed"] = self.writers_renewed
        self.logger.warning(
            f"the learner acknowledged none of {self.renew_writer_after} re-sends: replaced "
            f"the {TRANSITIONS_TOPIC} writer [{self.writers_renewed} so far]"
        )

    def publish(self, msg: Float64MultiArray, episode: int) -> None:
        """Publish transition number ``producer.seq`` (encoded into ``msg``) and keep it."""
        with self.lock:
            if self._layout is None:
                self._layout = msg.layout
            box = self.producer.outbox
            if not self.producer.add(episode, np.asarray(msg.data, dtype=np.float64)):
                self.diag.problem(
                    "outbox",
                    DiagnosticStatus.WARN,
                    f"outbox full: {box.overflow} unacknowledged transitions dropped",
                )
                self.logger.warning(
                    f"outbox full ({box.capacity}): dropped the oldest unacknowledged "
                    f"transition [{box.overflow} so far]; is the learner checkpointing?",
                    throttle_duration_sec=10.0,
                )
            self.pub.publish(msg)

    def learner_subscribed(self) -> bool:
        """A learner subscribes to /naf/transitions and our publisher has matched it."""
        infos = self.subscriptions_info(TRANSITIONS_TOPIC)
        wanted = self.startup_subscribers or {i.node_name for i in infos}
        present = {i.node_name for i in infos}
        return bool(wanted & present) and self.pub.get_subscription_count() >= len(infos)

    def resend(self) -> None:
        """Re-send what a (re)started or silent learner lacks, in bounded batches."""
        with self.lock:
            n = self.renew_writer_after
            if n > 0 and self.producer.fruitless >= n:
                # This round only replaces the writer: the next one (resend_timeout later)
                # goes through it once the learner has had time to learn of it.
                self._renew_writer()
                return
            batch = self.producer.due_resend(
                lambda: self._layout is not None and self.learner_subscribed()
            )
            for entry in batch:
                self.pub.publish(Float64MultiArray(layout=self._layout, data=entry.data))
            if batch:
                self.diag.values["outbox_resent"] = self.producer.outbox.resent

    def drained(self) -> bool:
        """True once the learner has trained on everything sent (or there is no learner)."""
        if self.producer.seq == 0:
            return True
        with self.lock:
            unacked = self.producer.unacked()
        if not unacked:
            return True
        infos = self.subscriptions_info(TRANSITIONS_TOPIC)
        return not (self.startup_subscribers & {i.node_name for i in infos})

    def on_progress(self, msg: Float64MultiArray) -> bool:
        """Acknowledgements: trained-on (lockstep pacing) and durable (outbox) per producer.

        Parsed here, judged by :meth:`Producer.on_progress` (a previous run's entry, a
        restarted learner). False (and counted as rejected) if the message is malformed.
        """
        try:
            f = unpack_arrays(msg, {"producers": None, "last_seq": None})
            producers = np.atleast_1d(f["producers"])
            columns = {"last_seq": np.atleast_1d(f["last_seq"])}
            for key in ("durable_seq", "last_episode", "run_ratio", "run_target"):
                if key in f:
                    columns[key] = np.atleast_1d(f[key])
            if producers.ndim != 1 or any(c.shape != producers.shape for c in columns.values()):
                raise CodecError("producers and per-producer columns differ in shape")
            lid = f.get("learner_id")
            lid = None if lid is None or lid.shape != () else float(lid)
            if "updates" in f and f["updates"].shape != ():
                raise CodecError(f"updates: shape {f['updates'].shape}, expected a scalar")
        except CodecError as exc:
            self.diag.reject("learner_progress", str(exc)[:200])
            return False
        hits = np.nonzero(producers == self.arm_index)[0]
        row: dict[str, int] = {}
        if hits.size:
            row = {key: int(column[hits[0]]) for key, column in columns.items()}
            if "run_ratio" in columns and "run_target" in columns:
                ratio = float(columns["run_ratio"][hits[0]])
                target = float(columns["run_target"][hits[0]])
                last = row["last_seq"]
                self.learner_ratio = (ratio, target, last) if ratio >= 0 else (None, None, last)
        with self.lock:
            self.producer.on_progress(
                lid, row.get("last_seq"), row.get("durable_seq"), row.get("last_episode")
            )
        return True

    def diagnostics(self) -> dict[str, Any]:
        """The outbox's state for ``/diagnostics``."""
        with self.lock:
            box = self.producer.outbox
            return dict(
                outbox_size=len(box),
                outbox_overflow=box.overflow,
                outbox_resent=box.resent,
                acked_seq=self.producer.acked,
                durable_seq=self.producer.durable,
            )
