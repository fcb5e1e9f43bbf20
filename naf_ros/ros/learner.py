"""Learner node: NAF updates (Algorithm 1) with imagination rollouts (Algorithm 2) over ROS.

Transitions from ``/naf/transitions`` are put back into each producer's order on the
executor thread by a :class:`~naf_ros.core.delivery.Sequencer` (duplicates, late copies and
malformed messages dropped and counted; out-of-order ones held until the producer re-sends
what is missing, for at most ``gap_timeout_s``; gaps counted and reported) and queued for a
worker thread that owns all learning state. Per real transition it adds the sample to the
replay R, every ``model_based.rollout_every`` transitions rolls the current mu through the
latest model from ``/naf/dynamics_model`` into the fictional buffer R_f, and does I·l
updates from R_f plus I from R. Keeping updates off the executor thread means an update
burst never starves the subscription queues.

``mode=lockstep`` does exactly that, in arrival order, and publishes ``/naf/learner_progress``
after each batch so a lockstep policy can hold the update-to-data ratio. ``mode=realtime``
adds whatever arrived and keeps updating continuously, like learning next to a real robot.

``/naf/learner_progress`` (latched, also re-published every second) tells each producer
``last_seq`` (highest contiguous seq trained on), ``durable_seq`` (highest contained in a
checkpoint: the producer's outbox may forget up to there), ``last_episode`` (so a restarted
producer is told apart from a re-sent one) and this process's ``learner_id`` (a new id
means a restarted learner: producers re-send what it lacks).

Weights go out on ``/naf/weights`` at startup and every ``weights_every_updates`` updates.
Checkpoints (agent, R, R_f, state buffers, the fitted model, counters, per-producer sequence
state, RNGs) are written every ``checkpoint_every_s`` and on shutdown, the previous one kept
as ``.prev``, and resumed on start; an unusable checkpoint is renamed aside (never
overwritten) and ``.prev`` is used instead. A failing save (read-only folder, full disk) is
reported on ``/diagnostics`` and learning goes on. With ``bag.record`` every transition
trained on is also recorded to rosbag2 segments ``<run_dir>/<bag.record>/transitions_NNNN``,
one closed per checkpoint. ``bag.warm_start`` bags fill R before a fresh start.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import torch
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.node import Node
from rclpy.publisher import Publisher
from std_msgs.msg import Float32MultiArray, Float64, Float64MultiArray

from naf_ros.bag.segments import SegmentedBag
from naf_ros.config import ConfigError
from naf_ros.core.accounting import Accounts, UpdateRatio
from naf_ros.core.delivery import Sequencer
from naf_ros.core.dynamics import LinearGaussianDynamics
from naf_ros.core.episodes import GAP, RESTART
from naf_ros.core.joint_dynamics import joint_model_from_arrays
from naf_ros.core.learner import Learner
from naf_ros.core.model_fit import fit_state_kind
from naf_ros.core.replay import storable
from naf_ros.envs.configured import episode_steps, reacher_task
from naf_ros.ros import qos
from naf_ros.ros.codec import CodecError, pack_arrays, unpack_arrays
from naf_ros.ros.description import arm_description
from naf_ros.ros.diagnostics import Diagnostics
from naf_ros.ros.messages import parse_transition, publish_scalar
from naf_ros.ros.names import (
    LEARNER_METRICS,
    MODEL_TOPIC,
    PROGRESS_TOPIC,
    TRANSITIONS_TOPIC,
    WEIGHTS_TOPIC,
    metric_topic,
    producer_metric_topic,
)
from naf_ros.ros.params import declare, declare_config
from naf_ros.ros.persist import CheckpointFile
from naf_ros.ros.rematch import WatchedSubscription
from naf_ros.ros.runtime import exit_process, run_node

MODES = ("lockstep", "realtime")
CHECKPOINT_NAME = "learner_checkpoint.pt"
CHECKPOINT_KIND = "naf_ros-learner"
MAX_BATCH = 2000  # transitions drained per worker iteration (bounds progress latency)
BAG_PREFIX = "transitions"


def fits_replay(tr: dict) -> bool:
    """Refused here (and counted on /diagnostics) rather than silently by R."""
    return storable(tr["obs"], tr["action"], tr["next_obs"], tr["reward"])


class LearnerNode(Node):
    """Thin ROS adapter around :class:`~naf_ros.core.learner.Learner`: transitions and
    models in (ordered by the sequencer, queued for the worker thread), weights, progress and
    metrics out."""

    def __init__(self, **kwargs) -> None:
        super().__init__("learner", **kwargs)
        self.cfg = declare_config(self)
        self.mode = str(declare(self, "mode", "lockstep"))
        if self.mode not in MODES:
            raise ConfigError(f"mode: {self.mode!r} is not one of {', '.join(MODES)}")
        self.weights_every = int(declare(self, "weights_every_updates", 250))
        self.checkpoint_every_s = float(declare(self, "checkpoint_every_s", 60.0))
        run_dir = Path(str(declare(self, "run_dir", "")) or self.cfg.train.run_dir)
        resume = bool(declare(self, "resume", True))
        # 0: a jump ahead is a gap at once (no producer re-sends); > 0: wait that long for
        # the producer's outbox to fill it (the graph's YAML sets this).
        gap_timeout = float(declare(self, "gap_timeout_s", 0.0))
        max_held = int(declare(self, "max_held", 100_000))
        # A transitions publisher the graph lists but our reader has not matched for this
        # long (s): re-create the reader (naf_ros.ros.rematch; 0 = never).
        rematch_timeout = float(declare(self, "rematch_timeout_s", 5.0))
        if self.weights_every < 1:
            raise ConfigError("weights_every_updates: must be an integer >= 1")
        if gap_timeout < 0 or max_held < 1 or rematch_timeout < 0:
            raise ConfigError("gap_timeout_s and rematch_timeout_s must be >= 0 and max_held >= 1")
        torch.set_num_threads(self.cfg.train.torch_threads)
        task = reacher_task(self.cfg, arm_description(self, self.cfg))
        self.task = task
        self.reward = task.reward
        self.obs_dim, self.act_dim = task.obs_dim, task.act_dim
        self.horizon = episode_steps(self.cfg.env)
        self.run_dir = run_dir
        self.learner = self._new_learner()
        self.accounts = Accounts()
        self.checkpoint = CheckpointFile(run_dir / CHECKPOINT_NAME, self.get_logger().error)
        self.resumed = False
        self.learner_id = float(int.from_bytes(os.urandom(6), "big"))  # exact as a double
        self.diag = Diagnostics(self)
        if resume:
            self._resume()
        self.sequencer = Sequencer(gap_timeout, max_held)
        processed, last_episode = self.accounts.copies()
        for producer, last in processed.items():
            self.sequencer.resume(producer, last, last_episode.get(producer))
        extra = self.learner.counters.extra
        tracker = self.sequencer.tracker
        tracker.gaps, tracker.lost = extra.get("gaps", 0), extra.get("lost", 0)
        tracker.restarts = extra.get("restarts", 0)
        # A resumed checkpoint is durable by definition.
        self._durable: dict[int, int] = dict(processed)
        self._saved_at: tuple[int, int] = self._progress_key()
        self.bag: SegmentedBag | None = None
        if self.cfg.bag.record:
            self.bag = SegmentedBag(
                run_dir / self.cfg.bag.record, BAG_PREFIX, log=self.get_logger().warning
            )
        if not self.resumed and self.cfg.bag.warm_start:
            self._warm_start()

        self._weights_pub = self.create_publisher(Float32MultiArray, WEIGHTS_TOPIC, qos.LATCHED)
        # Latched: compatible with volatile and transient-local readers, and a restarted
        # policy sees where the learner is at once.
        self._progress_pub = self.create_publisher(Float64MultiArray, PROGRESS_TOPIC, qos.LATCHED)
        self._metric_pubs = {
            name: self.create_publisher(Float64, metric_topic(name), qos.METRICS)
            for name in LEARNER_METRICS
        }
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._worker: threading.Thread | None = None
        self.worker_error: str | None = None
        self.weights_published = 0
        self._last_weights_updates = -1
        self._metrics_last = (time.monotonic(), self.learner.agent.updates)
        self.update_ratio = UpdateRatio()
        self._producer_ratio_pubs: dict[int, Publisher] = {}
        self._added: dict[int, int] = {}  # per producer, since the last learn() (worker)
        self.publish_weights()
        # Subscribe before announcing ourselves, so producers that re-send on seeing a new
        # learner_id find the subscription.
        self._transitions = WatchedSubscription(
            self,
            Float64MultiArray,
            TRANSITIONS_TOPIC,
            self._on_transition,
            qos.TRANSITIONS,
            rematch_timeout,
            self._on_resubscribed,
        )
        self.create_subscription(Float64MultiArray, MODEL_TOPIC, self._on_model, qos.LATCHED)
        self.publish_progress()
        self.create_timer(1.0, self._on_metrics_timer)
        if gap_timeout > 0:
            self.create_timer(min(0.5, gap_timeout / 4), self._on_expire_timer)
        self._refresh_diagnostics()
        a = self.cfg.agent
        self.get_logger().info(
            f"learner ({self.mode}): hidden {a.hidden} on {self.learner.agent.device}, "
            f"I={a.updates_per_step}, "
            f"warmup {a.warmup_steps}, model-based {self.cfg.model_based.enabled}, "
            f"checkpoint {self.checkpoint.path}"
            + (f", recording to {self.bag.folder}" if self.bag is not None else "")
        )

    def _new_learner(self) -> Learner:
        return Learner(self.cfg, self.obs_dim, self.act_dim, self.horizon, self.reward, self.task)

    def payload(self) -> dict:
        processed, last_episode = self.accounts.copies()
        return {
            "kind": CHECKPOINT_KIND,
            "learner": self.learner.state_dict(),
            "processed": processed,
            "last_episode": last_episode,
            "config": self.cfg.to_dict(),
        }

    # --- lifecycle of the worker --------------------------------------------------------------
    def start(self) -> None:
        self._worker = threading.Thread(target=self._run_worker, name="learner", daemon=True)
        self._worker.start()

    def healthy(self) -> bool:
        return self.worker_error is None

    def safe_stop(self) -> None:
        """Stop learning, then write the final checkpoint (called while ROS is still up)."""
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=60.0)
        saved = self.save_checkpoint()
        if self.bag is not None:
            # Closed segments hold what checkpoints hold; without the final checkpoint the
            # producers re-send the rest to our successor, which records it again.
            if saved:
                self.bag.close()
            else:
                self.bag.abandon()
        self.publish_progress()

    # --- checkpoints --------------------------------------------------------------------------
    def _resume(self) -> None:
        def apply(payload: dict) -> None:
            if payload.get("kind") != CHECKPOINT_KIND:
                raise ValueError(f"not a learner checkpoint (kind {payload.get('kind')!r})")
            fresh = self._new_learner()
            fresh.load_state_dict(payload["learner"])
            self.learner = fresh
            self.accounts.load(payload["processed"], payload.get("last_episode", {}))

        if self.checkpoint.load(apply) is None:
            return
        self.resumed = True
        c = self.learner.counters
        self.get_logger().info(
            f"resumed from {self.checkpoint.loaded_from}: {self.learner.agent.updates} updates, "
            f"{c.transitions} transitions, replay {len(self.learner.replay)}, "
            f"R_f {len(self.learner.fictional)}"
        )

    def _warm_start(self) -> None:
        from naf_ros.bag.format import BagError
        from naf_ros.bag.reader import warm_start_replay

        paths = self.cfg.bag.warm_start
        try:
            n = warm_start_replay(self.learner.replay, paths)
        except BagError as exc:
            self.get_logger().error(f"warm start skipped: {exc}")
            self.diag.problem("warm_start", DiagnosticStatus.WARN, f"warm start skipped: {exc}")
            return
        self.diag.values["warm_start_transitions"] = n
        self.get_logger().info(f"warm start: {n} transitions from {len(paths)} bag(s)")

    def _progress_key(self) -> tuple[int, int]:
        return self.learner.agent.updates, self.learner.counters.transitions

    def save_checkpoint(self) -> bool:
        """Only from the worker thread or after it stopped: the payload must be consistent."""
        tracker = self.sequencer.tracker
        self.learner.counters.extra.update(
            gaps=tracker.gaps, lost=tracker.lost, restarts=tracker.restarts
        )
        payload = self.payload()
        ok = self.checkpoint.save(payload)
        if not ok:
            self.get_logger().error(
                f"checkpoint failed: {self.checkpoint.last_error}; learning goes on",
                throttle_duration_sec=30.0,
            )
            self.diag.problem(
                "checkpoint",
                DiagnosticStatus.ERROR,
                f"checkpoint failed: {self.checkpoint.last_error}",
            )
            return False
        self.diag.clear("checkpoint")
        self._durable = {int(k): int(v) for k, v in payload["processed"].items()}
        self._saved_at = self._progress_key()
        if self.bag is not None:
            self.bag.rotate()  # the closed segments now hold exactly what checkpoints hold
        self.get_logger().info(
            f"checkpoint {self.checkpoint.path} ({self.checkpoint.last_bytes / 1e6:.1f} MB, "
            f"{self.learner.agent.updates} updates) in {self.checkpoint.last_seconds:.2f} s"
        )
        return True

    # --- executor-thread callbacks ------------------------------------------------------------
    def _on_transition(self, msg: Float64MultiArray) -> None:
        try:
            tr, header, reason = parse_transition(msg, self.obs_dim, self.act_dim)
            if tr is not None and not fits_replay(tr):
                tr, reason = None, "non_finite"
            if header is None:
                self.diag.reject(reason)
                return
            producer, seq, episode, t = header
            deliveries, rejected = self.sequencer.offer(
                producer, seq, episode, t, (tr, reason, msg)
            )
            if rejected:
                self.diag.reject(rejected, f"producer {producer} seq {seq}")
            self._enqueue(deliveries)
        except Exception as exc:  # noqa: BLE001 - no input may kill the node
            self.diag.reject("internal_error", f"{type(exc).__name__}: {exc}")

    def _enqueue(self, deliveries) -> None:
        tracker = self.sequencer.tracker
        for d in deliveries:
            if d.status == GAP:
                self.get_logger().warning(
                    f"gap: producer {d.producer} lost {d.missing} transitions before seq "
                    f"{d.seq} ({tracker.gaps} gaps, {tracker.lost} lost so far)",
                    throttle_duration_sec=2.0,
                )
            elif d.status == RESTART:
                self.get_logger().warning(
                    f"producer {d.producer} restarted (seq 0, episode {d.episode})"
                )
            tr, reason, msg = d.payload
            if tr is None:
                self.diag.reject(reason, f"producer {d.producer} seq {d.seq}")
            self._queue.put(("tr", d.producer, d.seq, d.episode, tr, msg, d.status))

    def _on_expire_timer(self) -> None:
        self._enqueue(self.sequencer.expire())

    def _on_model(self, msg: Float64MultiArray) -> None:
        try:
            arrays = unpack_arrays(msg)
            version = int(arrays["version"])
            model = LinearGaussianDynamics.from_arrays(arrays)
            joint = None
            if self.cfg.model_based.linear_state == "joint":
                joint = joint_model_from_arrays(arrays, self.task)
        except (CodecError, KeyError, ValueError, TypeError) as exc:
            self.diag.reject("bad_model", f"{type(exc).__name__}: {exc}")
            return
        if (model.nx, model.nu) != (self.obs_dim, self.act_dim):
            self.diag.reject("bad_model", f"model dims ({model.nx}, {model.nu})")
            return
        if joint is not None and (joint.model.nu, joint.horizon) != (self.act_dim, model.horizon):
            self.diag.reject("bad_model", f"joint model ({joint.model.nu}, T={joint.horizon})")
            return
        # Imagination steps the joint-space model when the fitter sent one (it predicts the
        # fingertip far better); an observation-space model alone still works.
        self._queue.put(("model", version, joint if joint is not None else model))

    def _on_resubscribed(self, listed: int, matched: int) -> None:
        self.get_logger().warning(
            f"{TRANSITIONS_TOPIC}: matched {matched} of {listed} publishers for "
            f"{self._transitions.watch.timeout_s} s; re-created the subscription "
            f"[{self._transitions.recreated} so far]"
        )

    def _on_metrics_timer(self) -> None:
        now, updates = time.monotonic(), self.learner.agent.updates
        self._transitions.check(now)
        t_last, u_last = self._metrics_last
        self._metrics_last = (now, updates)
        loss = self.learner.take_mean_loss()
        p = self._metric_pubs
        if loss is not None:
            publish_scalar(p["q_loss"], loss)
        publish_scalar(p["updates_per_s"], (updates - u_last) / max(now - t_last, 1e-9))
        publish_scalar(p["replay_size"], len(self.learner.replay))
        publish_scalar(p["imagination_transitions"], self.learner.counters.imagined)
        publish_scalar(p["transitions_lost"], self.sequencer.tracker.lost)
        self._report_update_ratio()
        self.publish_progress()  # heartbeat: producers can tell a silent learner from a slow one
        self._refresh_diagnostics()

    def _report_update_ratio(self) -> None:
        """Updates per transition on metric topics and /diagnostics; a WARN while the learner
        does fewer than 90% of the updates the algorithm asks for."""
        ratios, target = self.update_ratio.take()
        v = self.diag.values
        for producer, ratio in ratios.items():
            if producer == UpdateRatio.ALL:
                publish_scalar(self._metric_pubs["updates_per_transition"], ratio)
                v["updates_per_transition"] = round(ratio, 3)
                continue
            pub = self._producer_ratio_pubs.get(producer)
            if pub is None:
                topic = producer_metric_topic("updates_per_transition", producer)
                pub = self.create_publisher(Float64, topic, qos.METRICS)
                self._producer_ratio_pubs[producer] = pub
            publish_scalar(pub, ratio)
            v[f"updates_per_transition_producer_{producer}"] = round(ratio, 3)
        for producer, (ratio, _) in self.update_ratio.run_totals().items():
            key = "" if producer == UpdateRatio.ALL else f"_producer_{producer}"
            v[f"updates_per_transition_run{key}"] = round(ratio, 3)
        if target is None:
            return
        v["updates_per_transition_target"] = round(target, 3)
        overall = ratios[UpdateRatio.ALL]
        if overall < 0.9 * target:
            self.diag.problem(
                "update_ratio",
                DiagnosticStatus.WARN,
                f"learner behind the arms: {overall:.2f} updates per transition of "
                f"{target:.3g} configured",
            )
        else:
            self.diag.clear("update_ratio")

    def _planned_updates(self) -> int:
        """Updates per real transition the algorithm asks for right now (learn()'s plan)."""
        L = self.learner
        planned = self.cfg.agent.updates_per_step
        if L.imagination_active and len(L.fictional) >= self.cfg.agent.batch_size:
            planned += L.imagination_updates
        return planned

    def _learn(self) -> None:
        """learn(), and its updates credited to the transitions added since the last one."""
        losses = self.learner.learn()
        added, self._added = self._added, {}
        if self.learner.warm:
            self.update_ratio.record(added, len(losses), self._planned_updates())

    def _refresh_diagnostics(self) -> None:
        L, c = self.learner, self.learner.counters
        tracker = self.sequencer.tracker
        v = self.diag.values
        v.update(
            mode=self.mode,
            transitions=c.transitions,
            episodes=c.episodes,
            replay_size=len(L.replay),
            updates=L.agent.updates,
            skipped_updates=L.agent.skipped_updates,
            gaps=tracker.gaps,
            lost_transitions=tracker.lost,
            producer_restarts=tracker.restarts,
            held_transitions=self.sequencer.held,
            transition_publishers=self._transitions.listed,
            transition_publishers_matched=self._transitions.matched,
            transitions_resubscribed=self._transitions.recreated,
            fictional_size=len(L.fictional),
            imagination_transitions=c.imagined,
            imagination_rollouts=c.rollouts,
            imagination_active=L.imagination_active,
            model_version=L.model_version,
            model_state=fit_state_kind(L.model),
            weights_published=self.weights_published,
            checkpoints_saved=self.checkpoint.saves,
            resumed=self.resumed,
            queue=self._queue.qsize(),
            learner_id=int(self.learner_id),
        )
        v.update(self.checkpoint.diagnostics())
        if self.bag is not None:
            v.update(self.bag.diagnostics())
            if self.bag.last_error:
                self.diag.problem("bag", DiagnosticStatus.WARN, f"recording: {self.bag.last_error}")
            else:
                self.diag.clear("bag")
        if self.checkpoint.blocked:
            self.diag.problem("checkpoint", DiagnosticStatus.ERROR, self.checkpoint.blocked)
        if self.worker_error:
            self.diag.level = DiagnosticStatus.ERROR
            self.diag.message = f"learning stopped: {self.worker_error}"
        elif tracker.gaps:
            self.diag.level = DiagnosticStatus.WARN
            self.diag.message = f"{tracker.gaps} sequence gaps, {tracker.lost} transitions lost"

    # --- worker thread ------------------------------------------------------------------------
    def _drain(self, block: bool) -> list:
        items = []
        try:
            items.append(self._queue.get(timeout=0.1) if block else self._queue.get_nowait())
            while len(items) < MAX_BATCH:
                items.append(self._queue.get_nowait())
        except queue.Empty:
            pass
        return items

    def _run_worker(self) -> None:
        try:
            last_ckpt = time.monotonic()
            while not self._stop.is_set():
                realtime = self.mode == "realtime"
                items = self._drain(block=not (realtime and self.learner.warm))
                got_real = False
                for item in items:
                    if self._stop.is_set():
                        break
                    got_real |= self._process(item, learn=not realtime)
                if got_real:
                    self.publish_progress()
                if realtime:
                    self._learn()
                if self.learner.agent.updates - self._last_weights_updates >= self.weights_every:
                    self.publish_weights()
                every = self.checkpoint_every_s
                if every > 0 and time.monotonic() - last_ckpt >= every:
                    if self._progress_key() != self._saved_at and self.save_checkpoint():
                        self.publish_progress()  # producers may forget what is now durable
                    last_ckpt = time.monotonic()
        except Exception as exc:  # noqa: BLE001 - reported, then the node exits non-zero
            self.worker_error = f"{type(exc).__name__}: {exc}"
            self.get_logger().fatal(f"learner worker died:\n{traceback.format_exc()}")

    def _process(self, item: tuple, learn: bool) -> bool:
        """One queued item; returns True if it accounted for a real sequence number."""
        if item[0] == "model":
            _, version, model = item
            if version == self.learner.model_version:
                return False  # the latched copy of the model we already have
            self.learner.set_model(model, version)
            self.get_logger().info(
                f"model v{version} (T={model.horizon}, {fit_state_kind(model)} state); imagination "
                f"{'on' if self.learner.imagination_active else 'off'}"
            )
            return False
        _, producer, seq, episode, tr, msg, status = item
        if status == RESTART:
            self._durable[producer] = -1  # a new sequence: none of it is in a checkpoint yet
        if tr is not None:
            self.learner.add(tr, producer)
            self._added[producer] = self._added.get(producer, 0) + 1
            if learn:
                self._learn()
            if self.bag is not None:
                self.bag.write("transition", msg, self.bag.stamp())
        self.accounts.account(producer, seq, episode)
        return True

    def publish_progress(self) -> None:
        processed, last_episode = self.accounts.copies()
        producers = sorted(processed)
        periodic = self.checkpoint_every_s > 0
        # Without periodic checkpoints nothing becomes more durable than trained on.
        durable = [self._durable.get(p, -1) if periodic else processed[p] for p in producers]
        # Updates per transition over the run and its target, per producer (-1: none yet):
        # what a realtime policy with catch_up_ratio waits for.
        run = self.update_ratio.run_totals(dict(self._added))
        no_figure = (-1.0, -1.0)
        msg = pack_arrays(
            {
                "producers": np.array(producers, dtype=float),
                "last_seq": np.array([processed[p] for p in producers], dtype=float),
                "durable_seq": np.array(durable, dtype=float),
                "last_episode": np.array([last_episode.get(p, -1) for p in producers], float),
                "run_ratio": np.array([run.get(p, no_figure)[0] for p in producers], float),
                "run_target": np.array([run.get(p, no_figure)[1] for p in producers], float),
                "updates": float(self.learner.agent.updates),
                "transitions": float(self.learner.counters.transitions),
                "learner_id": self.learner_id,
            }
        )
        self._progress_pub.publish(msg)

    def publish_weights(self) -> None:
        """Serialise mu/V/L weights (float32) with version = update count."""
        arrays = dict(self.learner.agent.weight_arrays())
        arrays["version"] = np.float32(self.learner.agent.updates)
        self._weights_pub.publish(pack_arrays(arrays, np.float32))
        self._last_weights_updates = self.learner.agent.updates
        self.weights_published += 1


def main(args: list[str] | None = None) -> None:
    exit_process(run_node(LearnerNode, args))


if __name__ == "__main__":
    main()
