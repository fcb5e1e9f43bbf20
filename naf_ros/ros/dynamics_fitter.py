"""Dynamics fitter node: time-varying linear-Gaussian models from the transition stream.

Algorithm 2's ``M <- FitLocalLinearDynamics(B_f)`` as a node: complete episodes are assembled
per producer from ``/naf/transitions``; every ``model_based.episodes_per_fit`` of them the
model is refitted (NIW MAP with a prior pooled over ``model_based.prior_episodes``) and
published latched on ``/naf/dynamics_model`` with an increasing ``version``. A failed fit
keeps the previous model. Besides the model arrays the message carries a few ``sample_*``
statistics of the fitted episodes (returns, controller ids, action mean/variance), which
the iLQG explorer uses for its step adaptation and initial controller.

Re-sent transitions (the policy's outbox after a learner restart) are duplicates here and
dropped by the :class:`~naf_ros.core.delivery.Sequencer`. With ``persist`` the node keeps
its state in ``<train.run_dir>/dynamics_fitter_checkpoint.pt`` (model version, prior
history, pending episodes, sequence state, the last model) after every fit, every
``checkpoint_every_s`` while episodes complete, and at shutdown; on restart it resumes from
it and re-publishes its last model.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.node import Node
from std_msgs.msg import Float64, Float64MultiArray

from naf_ros.config import ConfigError
from naf_ros.core.delivery import Sequencer
from naf_ros.core.dynamics import DynamicsPrior
from naf_ros.core.episodes import GAP, RESTART
from naf_ros.core.joint_dynamics import add_joint_arrays
from naf_ros.core.model_fit import FitOutcome, FitStep, one_step_rmse
from naf_ros.envs.configured import episode_steps, reacher_task
from naf_ros.ros import qos
from naf_ros.ros.codec import pack_arrays
from naf_ros.ros.description import arm_description
from naf_ros.ros.diagnostics import Diagnostics
from naf_ros.ros.messages import parse_transition, publish_scalar
from naf_ros.ros.names import MODEL_TOPIC, TRANSITIONS_TOPIC, metric_topic
from naf_ros.ros.params import declare, declare_config
from naf_ros.ros.persist import CheckpointFile
from naf_ros.ros.runtime import exit_process, run_node

CHECKPOINT_NAME = "dynamics_fitter_checkpoint.pt"
CHECKPOINT_KIND = "naf_ros-dynamics_fitter"


# --- the node ---------------------------------------------------------------------------------
class DynamicsFitterNode(Node):
    """Assembles episodes, fits M every n of them, publishes it latched with a version."""

    def __init__(self, **kwargs) -> None:
        super().__init__("dynamics_fitter", **kwargs)
        self.cfg = declare_config(self)
        mb = self.cfg.model_based
        if mb.model != "linear":
            self.get_logger().warning(
                f"model_based.model={mb.model!r}: only the fitted linear model travels on "
                f"{MODEL_TOPIC}; fitting that"
            )
            mb.model = "linear"  # this node's own copy of the config
        self.task = reacher_task(self.cfg, arm_description(self, self.cfg))
        self.obs_dim, self.act_dim = self.task.obs_dim, self.task.act_dim
        self.horizon = episode_steps(self.cfg.env)
        self.n_per_fit = mb.episodes_per_fit
        self.sequencer = Sequencer()  # gaps declared at once: nobody re-sends for us
        components = int(declare(self, "prior_components", 1))
        if components < 1:
            raise ConfigError(f"prior_components: {components} must be an integer >= 1")
        # With model_based.linear_state 'joint' the message also carries a joint-space model,
        # fitted with its own prior, for the learner's imagination rollouts.
        self.components = components
        self.fit_step = self._new_fit_step()
        self.version = 0
        self.last_rmse = float("nan")
        self.last_arrays: dict[str, np.ndarray] | None = None
        self.persist = bool(declare(self, "persist", False))
        self.checkpoint_every_s = float(declare(self, "checkpoint_every_s", 2.0))
        self._last_save = 0.0
        self._dirty = False  # anything arrived since the last save
        self.checkpoint = CheckpointFile(
            Path(self.cfg.train.run_dir) / CHECKPOINT_NAME, self.get_logger().error
        )
        self.resumed = False
        self.diag = Diagnostics(self)
        self._model_pub = self.create_publisher(Float64MultiArray, MODEL_TOPIC, qos.LATCHED)
        self._fits_pub = self.create_publisher(Float64, metric_topic("model_fits"), qos.METRICS)
        self._rmse_pub = self.create_publisher(Float64, metric_topic("model_rmse"), qos.METRICS)
        if self.persist:
            self._resume()
            # The first episodes are saved before the first fit; importing torch then would
            # hold up that fit (and the controller the policies wait for) by seconds.
            self.checkpoint.warm_up()
        self.create_subscription(
            Float64MultiArray, TRANSITIONS_TOPIC, self._on_transition, qos.TRANSITIONS
        )
        self._refresh_diagnostics()
        self.get_logger().info(
            f"fitting T={self.horizon} linear-Gaussian models every {self.n_per_fit} episodes "
            f"(obs {self.obs_dim}, act {self.act_dim})"
            + (f"; state in {self.checkpoint.path}" if self.persist else "")
        )

    def _new_fit_step(self) -> FitStep:
        return FitStep(
            self.cfg, self.task, self.obs_dim, self.act_dim, self.horizon, self.components
        )

    # --- persistence --------------------------------------------------------------------------
    def payload(self) -> dict:
        return {
            "kind": CHECKPOINT_KIND,
            "dims": [self.obs_dim, self.act_dim, self.horizon],
            "version": self.version,
            "fit": self.fit_step.state_dict(),
            "model": self.last_arrays,
            "last_rmse": self.last_rmse,
            "fit_failures": dict(self.fit_step.fitter.failures),
            "tracker": self.sequencer.tracker.state_dict(),
            "last_episode": dict(self.sequencer.last_episode),
        }

    def _apply(self, p: dict) -> None:
        """All-or-nothing restore (raises if the payload does not fit this node)."""
        if p.get("kind") != CHECKPOINT_KIND:
            raise ValueError(f"not a dynamics_fitter checkpoint (kind {p.get('kind')!r})")
        if list(p["dims"]) != [self.obs_dim, self.act_dim, self.horizon]:
            raise ValueError(f"dims {p['dims']} != {[self.obs_dim, self.act_dim, self.horizon]}")
        if not isinstance(p["fit"]["prior"], DynamicsPrior):
            raise TypeError("prior is not a DynamicsPrior")
        fit_step = self._new_fit_step()
        fit_step.load_state_dict(p["fit"])
        fit_step.fitter.failures.update({str(k): int(v) for k, v in p["fit_failures"].items()})
        sequencer = Sequencer()
        sequencer.tracker.load_state_dict(p["tracker"])
        sequencer.last_episode = {int(k): int(v) for k, v in p["last_episode"].items()}
        model = p["model"]
        if model is not None:
            model = {k: np.asarray(v) for k, v in model.items()}
        self.version = int(p["version"])
        self.fit_step, self.sequencer, self.last_arrays = fit_step, sequencer, model
        self.last_rmse = float(p["last_rmse"])

    def _resume(self) -> None:
        if self.checkpoint.load(self._apply) is None:
            return
        self.resumed = True
        self.get_logger().info(
            f"resumed from {self.checkpoint.loaded_from}: model v{self.version}, "
            f"{len(self.fit_step.batch)} pending episodes, "
            f"prior over {self.fit_step.fitter.prior.n_episodes}"
        )
        if self.last_arrays is not None:
            self._model_pub.publish(pack_arrays(self.last_arrays))  # latched, for restarted peers

    def save(self) -> None:
        if not self.persist:
            return
        self._last_save = time.monotonic()
        self._dirty = False
        self.checkpoint.save_and_report(self.payload(), self.diag)

    def safe_stop(self) -> None:
        """Save what arrived since the last save; nothing new, nothing to write (a node
        stopped before any input then exits at once instead of importing torch to save)."""
        if self._dirty:
            self.save()

    # --- input --------------------------------------------------------------------------------
    def _refresh_diagnostics(self) -> None:
        v = self.diag.values
        tracker = self.sequencer.tracker
        fitter = self.fit_step.fitter
        v["episodes_completed"] = self.fit_step.assembler.completed
        v["episodes_pending"] = len(self.fit_step.batch)
        v["model_version"] = self.version
        v["model_rmse"] = f"{self.last_rmse:.6g}"
        v["prior_episodes"] = fitter.prior.n_episodes
        v["gaps"] = tracker.gaps
        v["lost_transitions"] = tracker.lost
        v["producer_restarts"] = tracker.restarts
        v["resumed"] = self.resumed
        if self.persist:
            v.update(self.checkpoint.diagnostics())
        for reason, n in fitter.failures.items():
            v[f"fit_failures/{reason}"] = n
        if fitter.failures or tracker.gaps:
            self.diag.level = DiagnosticStatus.WARN
            self.diag.message = f"{sum(fitter.failures.values())} failed fits, {tracker.gaps} gaps"

    def _on_transition(self, msg: Float64MultiArray) -> None:
        try:
            self._handle(msg)
        except Exception as exc:  # noqa: BLE001 - no input may kill the node
            self.diag.reject("internal_error", f"{type(exc).__name__}: {exc}")
        self._refresh_diagnostics()

    def _handle(self, msg: Float64MultiArray) -> None:
        tr, header, reason = parse_transition(msg, self.obs_dim, self.act_dim)
        if header is None:
            self.diag.reject(reason)
            return
        producer, seq, episode, t = header
        self._dirty = True
        deliveries, rejected = self.sequencer.offer(producer, seq, episode, t, (tr, reason))
        if rejected:
            self.diag.reject(rejected, f"producer {producer} seq {seq}")
        changed = fitted = False
        for d in deliveries:
            if d.status == GAP:
                self.get_logger().warning(
                    f"gap: producer {d.producer} lost {d.missing} transitions before seq {d.seq}",
                    throttle_duration_sec=2.0,
                )
            elif d.status == RESTART:
                self.get_logger().warning(f"producer {d.producer} restarted (seq 0)")
            item, why = d.payload
            if item is None:
                self.diag.reject(why, f"producer {d.producer} seq {d.seq}")
                continue
            outcome, completed, reasons = self.fit_step.feed(item)
            for r in reasons:
                self.diag.reject(r, f"producer {d.producer} episode {d.episode} t {item['t']}")
            changed |= completed
            if outcome is not None:
                fitted |= self.publish(outcome)
        # Every model is saved; pending episodes at most every checkpoint_every_s (they are
        # cheap to lose: the next fit just waits for a few more).
        if fitted or changed and time.monotonic() - self._last_save >= self.checkpoint_every_s:
            self.save()

    def publish(self, outcome: FitOutcome) -> bool:
        """A successful fit goes out latched with the next version; a failed one is logged."""
        if not outcome.ok:
            self.get_logger().error(
                f"fit failed ({outcome.error}); keeping model version {self.version}"
            )
            return False
        self.version += 1
        arrays = outcome.observed.to_arrays()
        arrays["version"] = float(self.version)
        arrays.update(outcome.stats.to_arrays())
        if outcome.joint is not None:
            add_joint_arrays(arrays, outcome.joint)
        self._model_pub.publish(pack_arrays(arrays))
        self.last_arrays = arrays
        X = np.stack([e.obs for e in outcome.episodes])
        U = np.stack([e.actions for e in outcome.episodes])
        self.last_rmse = one_step_rmse(outcome.observed, X, U)
        publish_scalar(self._fits_pub, self.version)
        publish_scalar(self._rmse_pub, self.last_rmse)
        self.get_logger().info(
            f"model v{self.version} from {len(outcome.episodes)} episodes (one-step RMSE "
            f"{self.last_rmse:.2e}, prior over {self.fit_step.fitter.prior.n_episodes})"
        )
        return True


def main(args: list[str] | None = None) -> None:
    exit_process(run_node(DynamicsFitterNode, args))


if __name__ == "__main__":
    main()
