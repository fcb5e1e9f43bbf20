"""Dynamics fitter node: time-varying linear-Gaussian models from the transition stream.

Algorithm 2's ``M <- FitLocalLinearDynamics(B_f)`` as a node: complete episodes are assembled
per producer from ``/naf/transitions``; every ``model_based.episodes_per_fit`` of them the
model is refitted (NIW MAP with a prior pooled over ``model_based.prior_episodes``) and
published latched on ``/naf/dynamics_model`` with an increasing ``version``. A failed fit
keeps the previous model. Besides the model arrays the message carries a few ``sample_*``
statistics of the fitted episodes (returns, controller ids, action mean/variance), which
the iLQG explorer uses for its step adaptation and initial controller.

The small helpers shared by the three learning-side nodes (task/horizon from the config,
lenient transition parsing, the SIGINT-safe spin loop) live here too: this module is light
to import (no torch), so the explorer and the learner can take them from it.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from std_msgs.msg import Float64, Float64MultiArray

from naf_ros.config import ConfigError, EnvConfig
from naf_ros.core.dynamics import DynamicsFitError, DynamicsPrior, fit_linear_gaussian
from naf_ros.core.episodes import (
    GAP,
    RESTART,
    Episode,
    EpisodeAssembler,
    SequenceTracker,
    stack_episodes,
)
from naf_ros.envs.task import ArmModel, ReacherTask
from naf_ros.ros import qos
from naf_ros.ros.codec import CodecError, decode_transition, pack_arrays, unpack_arrays
from naf_ros.ros.common import Diagnostics, declare_config

TRANSITIONS_TOPIC = "/naf/transitions"
MODEL_TOPIC = "/naf/dynamics_model"
CONTROLLER_TOPIC = "/naf/ilqg_controller"
DEFAULT_EPISODE_STEPS = 50


# --- helpers shared by the learning-side nodes -------------------------------------------------
def _reacher_kwargs(env_cfg: EnvConfig) -> dict:
    import gymnasium as gym

    import naf_ros.envs  # noqa: F401  (registers the reacher ids)

    kwargs: dict = {}
    if env_cfg.id in gym.registry:
        spec = gym.spec(env_cfg.id)
        if not str(spec.entry_point).startswith("naf_ros."):
            raise ConfigError(
                f"env.id: {env_cfg.id!r} is not the naf_ros reacher; the ROS graph learns "
                "that task only (its reward must be computable from observations)"
            )
        kwargs.update(spec.kwargs or {})
    kwargs.update(env_cfg.kwargs or {})
    return kwargs


def reacher_task(env_cfg: EnvConfig) -> ReacherTask:
    """The task the configured reacher uses, so rewards and derivatives match the sim's."""
    kwargs = _reacher_kwargs(env_cfg)
    arm = ArmModel.from_mjcf(kwargs.get("model_path"))
    return ReacherTask(arm, ctrl_cost_weight=float(kwargs.get("ctrl_cost_weight", 0.02)))


def env_horizon(env_cfg: EnvConfig) -> int:
    """Episode length T (time-varying models are indexed by t < T)."""
    if env_cfg.max_episode_steps is not None:
        return int(env_cfg.max_episode_steps)
    import gymnasium as gym

    import naf_ros.envs  # noqa: F401

    if env_cfg.id in gym.registry and gym.spec(env_cfg.id).max_episode_steps:
        return int(gym.spec(env_cfg.id).max_episode_steps)
    return DEFAULT_EPISODE_STEPS


HEADER = ("producer", "seq", "episode", "t")


def parse_transition(
    msg: Float64MultiArray, obs_dim: int, act_dim: int
) -> tuple[dict | None, tuple[int, int, int, int] | None, str]:
    """Decode a transition; on failure still recover (producer, seq, episode, t) if possible.

    Returns ``(transition or None, header or None, reject reason or "")``. A transition
    that is bad but identifiable still accounts for its sequence number, so a rejected
    sample neither looks like a gap nor stalls a lockstep producer waiting on progress.
    """
    try:
        tr = decode_transition(msg, obs_dim, act_dim)
    except CodecError as exc:
        reason = "non_finite" if "non-finite" in str(exc) else "malformed"
    except Exception:  # noqa: BLE001 - any undecodable message is malformed, never fatal
        reason = "malformed"
    else:
        header = tuple(tr[k] for k in HEADER)
        if np.max(np.abs(tr["action"])) > 1.0 + 1e-6:
            return None, header, "action_out_of_range"
        return tr, header, ""
    try:
        raw = unpack_arrays(msg, finite=False)
        vals = [float(np.asarray(raw[k]).reshape(())) for k in HEADER]
    except Exception:  # noqa: BLE001 - header unreadable too
        return None, None, reason
    if all(np.isfinite(v) and v >= 0 and v == int(v) for v in vals):
        return None, tuple(int(v) for v in vals), reason
    return None, None, reason


def declare(node: Node, name: str, default):
    """Declare one node-specific parameter and return its value."""
    return node.declare_parameter(name, default).value


def publish_scalar(pub, value: float) -> None:
    pub.publish(Float64(data=float(value)))


def run_node(make_node: Callable[[], Node], argv: list[str] | None = None) -> int:
    """Spin until SIGINT/SIGTERM, then call ``node.on_shutdown()`` while ROS is still up.

    We own the signals (rclpy's handler would shut the context down first), so a node can
    still checkpoint and publish during shutdown. ``node.healthy()`` returning False (e.g.
    a dead worker thread) ends the loop with exit code 1.
    """
    rclpy.init(
        args=argv if argv is not None else sys.argv,
        signal_handler_options=SignalHandlerOptions.NO,
    )
    stop = threading.Event()

    def _on_signal(_sig, _frame) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    code, node = 0, None
    executor = SingleThreadedExecutor()
    try:
        node = make_node()
        executor.add_node(node)
        start = getattr(node, "start", None)
        if start is not None:
            start()
        healthy = getattr(node, "healthy", lambda: True)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.05)
            if not healthy():
                code = 1
                break
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        code = 2
    finally:
        if node is not None:
            try:
                on_shutdown = getattr(node, "on_shutdown", None)
                if on_shutdown is not None:
                    on_shutdown()
            except Exception as exc:  # noqa: BLE001 - shutdown must go on
                print(f"shutdown failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                code = code or 1
            executor.remove_node(node)
            node.destroy_node()
        executor.shutdown()
        if rclpy.ok():
            rclpy.shutdown()
    return code


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
        self.horizon = env_horizon(self.cfg.env)
        self.n_per_fit = mb.episodes_per_fit
        self.tracker = SequenceTracker()
        self.assembler = EpisodeAssembler(self.obs_dim, self.act_dim, self.horizon)
        components = int(declare(self, "prior_components", 1))
        if components < 1:
            raise ConfigError(f"prior_components: {components} must be an integer >= 1")
        self.prior = DynamicsPrior(
            n_components=components, max_episodes=mb.prior_episodes, seed=self.cfg.train.seed
        )
        self.batch: list[Episode] = []
        self.version = 0
        self.fit_failures: Counter[str] = Counter()
        self.last_rmse = float("nan")
        self.diag = Diagnostics(self)
        self._model_pub = self.create_publisher(Float64MultiArray, MODEL_TOPIC, qos.LATCHED)
        self._fits_pub = self.create_publisher(Float64, "/naf/metrics/model_fits", qos.METRICS)
        self._rmse_pub = self.create_publisher(Float64, "/naf/metrics/model_rmse", qos.METRICS)
        self.create_subscription(
            Float64MultiArray, TRANSITIONS_TOPIC, self._on_transition, qos.TRANSITIONS
        )
        self._refresh_diagnostics()
        self.get_logger().info(
            f"fitting T={self.horizon} linear-Gaussian models every {self.n_per_fit} episodes "
            f"(obs {self.obs_dim}, act {self.act_dim})"
        )

    def _refresh_diagnostics(self) -> None:
        v = self.diag.values
        v["episodes_completed"] = self.assembler.completed
        v["episodes_pending"] = len(self.batch)
        v["model_version"] = self.version
        v["model_rmse"] = f"{self.last_rmse:.6g}"
        v["gaps"] = self.tracker.gaps
        v["lost_transitions"] = self.tracker.lost
        v["producer_restarts"] = self.tracker.restarts
        for reason, n in self.fit_failures.items():
            v[f"fit_failures/{reason}"] = n
        if self.fit_failures or self.tracker.gaps:
            self.diag.level = DiagnosticStatus.WARN
            self.diag.message = (
                f"{sum(self.fit_failures.values())} failed fits, {self.tracker.gaps} gaps"
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
        verdict = self.tracker.check(producer, seq, restart_hint=(t == 0 and episode == 0))
        if not verdict.accepted:
            self.diag.reject(verdict.status, f"producer {producer} seq {seq}")
            return
        if verdict.status == GAP:
            self.get_logger().warning(
                f"gap: producer {producer} lost {verdict.missing} transitions before seq {seq}",
                throttle_duration_sec=2.0,
            )
        elif verdict.status == RESTART:
            self.get_logger().warning(f"producer {producer} restarted (seq 0)")
        if tr is None:
            self.diag.reject(reason, f"producer {producer} seq {seq}")
            return
        done, reasons = self.assembler.feed(tr)
        for r in reasons:
            self.diag.reject(r, f"producer {producer} episode {episode} t {t}")
        if done is not None:
            self.batch.append(done)
            if len(self.batch) >= self.n_per_fit:
                self.fit()

    def fit(self) -> bool:
        """M <- fit(B_f); B_f <- empty whatever the outcome (the samples are spent)."""
        episodes, self.batch = self.batch, []
        X, U = stack_episodes(episodes)
        try:
            self.prior.update(X, U)
            model = fit_linear_gaussian(
                X, U, prior=self.prior, reg=self.cfg.model_based.reg, min_episodes=1
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
        self._model_pub.publish(pack_arrays(arrays))
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
