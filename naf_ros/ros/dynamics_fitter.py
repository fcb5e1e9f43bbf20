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

import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.node import Node
from std_msgs.msg import Float64, Float64MultiArray

from naf_ros.config import ConfigError
from naf_ros.core.delivery import Sequencer
from naf_ros.core.dynamics import DynamicsFitError, DynamicsPrior, fit_linear_gaussian
from naf_ros.core.episodes import GAP, RESTART, Episode, EpisodeAssembler, stack_episodes
from naf_ros.core.joint_dynamics import add_joint_arrays, fit_joint_space
from naf_ros.envs.configured import episode_steps, reacher_task
from naf_ros.ros import qos
from naf_ros.ros.codec import pack_arrays
from naf_ros.ros.diagnostics import Diagnostics
from naf_ros.ros.messages import parse_transition, publish_scalar
from naf_ros.ros.names import MODEL_TOPIC, TRANSITIONS_TOPIC, metric_topic
from naf_ros.ros.params import declare, declare_config
from naf_ros.ros.persist import CheckpointFile
from naf_ros.ros.runtime import run_node

CHECKPOINT_NAME = "dynamics_fitter_checkpoint.pt"
CHECKPOINT_KIND = "naf_ros-dynamics_fitter"


def one_step_rmse(model, X: np.ndarray, U: np.ndarray) -> float:
    """RMSE of the model's mean next-state prediction over every (x_t, u_t, x_{t+1})."""
    T = U.shape[1]
    pred = np.stack([model.predict(t, X[:, t], U[:, t]) for t in range(T)], axis=1)
    return float(np.sqrt(np.mean((pred - X[:, 1 : T + 1]) ** 2)))


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
        self.task = reacher_task(self.cfg.env)
        self.obs_dim, self.act_dim = self.task.obs_dim, self.task.act_dim
        self.horizon = episode_steps(self.cfg.env)
        self.n_per_fit = mb.episodes_per_fit
        self.sequencer = Sequencer()  # gaps declared at once: nobody re-sends for us
        self.assembler = EpisodeAssembler(self.obs_dim, self.act_dim, self.horizon)
        components = int(declare(self, "prior_components", 1))
        if components < 1:
            raise ConfigError(f"prior_components: {components} must be an integer >= 1")
        self.prior = DynamicsPrior(
            n_components=components, max_episodes=mb.prior_episodes, seed=self.cfg.train.seed
        )
        # model_based.linear_state 'joint': the message also carries a joint-space model,
        # fitted with its own prior, for the learner's imagination rollouts.
        self.joint_prior = (
            DynamicsPrior(max_episodes=mb.prior_episodes, seed=self.cfg.train.seed)
            if mb.linear_state == "joint"
            else None
        )
        self.batch: list[Episode] = []
        self.version = 0
        self.fit_failures: Counter[str] = Counter()
        self.last_rmse = float("nan")
        self.last_arrays: dict[str, np.ndarray] | None = None
        self.persist = bool(declare(self, "persist", False))
        self.checkpoint_every_s = float(declare(self, "checkpoint_every_s", 2.0))
        self._last_save = 0.0
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

    # --- persistence --------------------------------------------------------------------------
    def payload(self) -> dict:
        return {
            "kind": CHECKPOINT_KIND,
            "dims": [self.obs_dim, self.act_dim, self.horizon],
            "version": self.version,
            "prior": self.prior,
            "joint_prior": self.joint_prior,
            "batch": [e.__dict__.copy() for e in self.batch],
            "model": self.last_arrays,
            "last_rmse": self.last_rmse,
            "fit_failures": dict(self.fit_failures),
            "completed": self.assembler.completed,
            "tracker": self.sequencer.tracker.state_dict(),
            "last_episode": dict(self.sequencer.last_episode),
        }

    def _apply(self, p: dict) -> None:
        """All-or-nothing restore (raises if the payload does not fit this node)."""
        if p.get("kind") != CHECKPOINT_KIND:
            raise ValueError(f"not a dynamics_fitter checkpoint (kind {p.get('kind')!r})")
        if list(p["dims"]) != [self.obs_dim, self.act_dim, self.horizon]:
            raise ValueError(f"dims {p['dims']} != {[self.obs_dim, self.act_dim, self.horizon]}")
        prior = p["prior"]
        if not isinstance(prior, DynamicsPrior):
            raise TypeError("prior is not a DynamicsPrior")
        joint_prior = p.get("joint_prior")  # absent in older checkpoints: start afresh
        batch = [Episode(**e) for e in p["batch"]]
        sequencer = Sequencer()
        sequencer.tracker.load_state_dict(p["tracker"])
        sequencer.last_episode = {int(k): int(v) for k, v in p["last_episode"].items()}
        model = p["model"]
        if model is not None:
            model = {k: np.asarray(v) for k, v in model.items()}
        self.version = int(p["version"])
        self.prior, self.batch, self.sequencer, self.last_arrays = prior, batch, sequencer, model
        if self.joint_prior is not None and isinstance(joint_prior, DynamicsPrior):
            self.joint_prior = joint_prior
        self.last_rmse = float(p["last_rmse"])
        self.fit_failures = Counter({str(k): int(v) for k, v in p["fit_failures"].items()})
        self.assembler.completed = int(p["completed"])

    def _resume(self) -> None:
        if self.checkpoint.load(self._apply) is None:
            return
        self.resumed = True
        self.get_logger().info(
            f"resumed from {self.checkpoint.loaded_from}: model v{self.version}, "
            f"{len(self.batch)} pending episodes, prior over {self.prior.n_episodes}"
        )
        if self.last_arrays is not None:
            self._model_pub.publish(pack_arrays(self.last_arrays))  # latched, for restarted peers

    def save(self) -> None:
        if not self.persist:
            return
        self._last_save = time.monotonic()
        self.checkpoint.save_and_report(self.payload(), self.diag)

    def safe_stop(self) -> None:
        self.save()

    # --- input --------------------------------------------------------------------------------
    def _refresh_diagnostics(self) -> None:
        v = self.diag.values
        tracker = self.sequencer.tracker
        v["episodes_completed"] = self.assembler.completed
        v["episodes_pending"] = len(self.batch)
        v["model_version"] = self.version
        v["model_rmse"] = f"{self.last_rmse:.6g}"
        v["prior_episodes"] = self.prior.n_episodes
        v["gaps"] = tracker.gaps
        v["lost_transitions"] = tracker.lost
        v["producer_restarts"] = tracker.restarts
        v["resumed"] = self.resumed
        if self.persist:
            v.update(self.checkpoint.diagnostics())
        for reason, n in self.fit_failures.items():
            v[f"fit_failures/{reason}"] = n
        if self.fit_failures or tracker.gaps:
            self.diag.level = DiagnosticStatus.WARN
            self.diag.message = (
                f"{sum(self.fit_failures.values())} failed fits, {tracker.gaps} gaps"
            )

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
            done, reasons = self.assembler.feed(item)
            for r in reasons:
                self.diag.reject(r, f"producer {d.producer} episode {d.episode} t {item['t']}")
            if done is not None:
                self.batch.append(done)
                changed = True
                if len(self.batch) >= self.n_per_fit:
                    fitted |= self.fit()
        # Every model is saved; pending episodes at most every checkpoint_every_s (they are
        # cheap to lose: the next fit just waits for a few more).
        if fitted or changed and time.monotonic() - self._last_save >= self.checkpoint_every_s:
            self.save()

    def fit(self) -> bool:
        """M <- fit(B_f); B_f <- empty whatever the outcome (the samples are spent)."""
        episodes, self.batch = self.batch, []
        X, U = stack_episodes(episodes)
        try:
            self.prior.update(X, U)
            model = fit_linear_gaussian(
                X, U, prior=self.prior, reg=self.cfg.model_based.reg, min_episodes=1
            )
            joint = None
            if self.joint_prior is not None:
                joint = fit_joint_space(
                    self.task, X, U, self.joint_prior, self.cfg.model_based.reg, min_episodes=1
                )
        except (DynamicsFitError, ValueError, np.linalg.LinAlgError) as exc:
            key = type(exc).__name__
            self.fit_failures[key] += 1
            self.get_logger().error(
                f"fit failed ({key}: {exc}); keeping model version {self.version}"
            )
            return False
        self.version += 1
        arrays = model.to_arrays()
        arrays["version"] = float(self.version)
        arrays.update(sample_statistics(episodes))
        if joint is not None:
            add_joint_arrays(arrays, joint)
        self._model_pub.publish(pack_arrays(arrays))
        self.last_arrays = arrays
        self.last_rmse = one_step_rmse(model, X, U)
        publish_scalar(self._fits_pub, self.version)
        publish_scalar(self._rmse_pub, self.last_rmse)
        self.get_logger().info(
            f"model v{self.version} from {len(episodes)} episodes "
            f"(one-step RMSE {self.last_rmse:.2e}, prior over {self.prior.n_episodes})"
        )
        return True


def sample_statistics(episodes: list[Episode]) -> dict[str, np.ndarray]:
    """What the explorer needs of the fitted episodes besides the model itself."""
    U = np.stack([e.actions for e in episodes])
    return {
        "sample_returns": np.array([e.ret for e in episodes]),
        "sample_controllers": np.array([float(np.mean(e.controllers)) for e in episodes]),
        "sample_x_mean": np.stack([e.obs for e in episodes]).mean(axis=0),
        "sample_u_mean": U.mean(axis=0),
        "sample_u_var": U.var(axis=0),
    }


def main(args: list[str] | None = None) -> None:
    sys.exit(run_node(DynamicsFitterNode, args))


if __name__ == "__main__":
    main()
