"""iLQG explorer node: one KL-bounded iLQG step per fitted model (Algorithm 2's pi_iLQG).

Each new model on ``/naf/dynamics_model`` becomes a time-varying linear-Gaussian controller
published latched on ``/naf/ilqg_controller`` (version = the model's version), which the
policy node runs with probability ``model_based.ilqg_probability`` per episode. The step is
taken from the previous controller (the trust region is KL(new || previous)); the first one
starts from a zero-gain exploratory controller around the fitted episodes' mean actions. A
fallback of the eta search keeps the previous controller; models of the wrong shape, non-
finite or older than the last are dropped and counted.

With ``persist`` the explorer keeps its state (the current controller, the model version
it answers, the optimizer's KL step, eta and improvement estimate) in
``<train.run_dir>/ilqg_explorer_checkpoint.pt`` after every step and at shutdown; a
restarted explorer resumes from it, re-publishes its controller (latched) and takes the
next step from it, as if it had never stopped.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.node import Node
from std_msgs.msg import Float64, Float64MultiArray

from naf_ros.core.dynamics import LinearGaussianDynamics
from naf_ros.core.ilqg import (
    ILQGOptimizer,
    expected_return,
    ilqg_step,
    trajectory_distribution,
)
from naf_ros.core.lin_gauss_policy import LinearGaussianController
from naf_ros.envs.configured import reacher_task
from naf_ros.ros import qos
from naf_ros.ros.codec import CodecError, pack_arrays, unpack_arrays
from naf_ros.ros.diagnostics import Diagnostics
from naf_ros.ros.messages import publish_scalar
from naf_ros.ros.names import CONTROLLER_TOPIC, MODEL_TOPIC, metric_topic
from naf_ros.ros.params import declare, declare_config
from naf_ros.ros.persist import CheckpointFile
from naf_ros.ros.runtime import run_node

ILQG_CONTROLLER_ID = 1.0  # codec.CONTROLLER_ILQG: episodes the controller itself ran
CHECKPOINT_NAME = "ilqg_explorer_checkpoint.pt"
CHECKPOINT_KIND = "naf_ros-ilqg_explorer"
OPTIMIZER_STATE = ("kl_step", "eta", "n_updates", "n_fallbacks", "_last")


def initial_controller(
    model: LinearGaussianDynamics, arrays: dict[str, np.ndarray], init_var: float
) -> LinearGaussianController:
    """Zero-gain controller around the fitted episodes (their mean states and actions).

    ``init_var <= 0`` takes the episodes' mean action variance, so the first trust region
    is measured against how the data was actually explored.
    """
    T, nx, nu = model.horizon, model.nx, model.nu
    u_mean = arrays.get("sample_u_mean")
    x_mean = arrays.get("sample_x_mean")
    u_hat = u_mean if u_mean is not None and u_mean.shape == (T, nu) else np.zeros((T, nu))
    x_hat = x_mean[:T] if x_mean is not None and x_mean.shape == (T + 1, nx) else None
    if x_hat is None:
        x_hat = np.broadcast_to(model.x0_mean, (T, nx))
    if init_var <= 0:
        u_var = arrays.get("sample_u_var")
        init_var = float(np.mean(u_var)) if u_var is not None and u_var.size else 0.1
        init_var = float(np.clip(init_var, 1e-3, 1.0))
    return LinearGaussianController.initial(
        T, nx, nu, init_var, x_hat=x_hat, u_hat=np.clip(u_hat, -1.0, 1.0), low=-1.0, high=1.0
    )


class ILQGExplorerNode(Node):
    """Model in, controller out; never publishes a non-finite controller."""

    def __init__(self, **kwargs) -> None:
        super().__init__("ilqg_explorer", **kwargs)
        self.cfg = declare_config(self)
        mb = self.cfg.model_based
        self.task = reacher_task(self.cfg.env)
        self.obs_dim, self.act_dim = self.task.obs_dim, self.task.act_dim
        self.init_var = float(declare(self, "initial_action_var", 0.0))
        kl = mb.kl_step
        self.optimizer = ILQGOptimizer(
            self.task.reward_derivatives,
            reward=self.task.reward,
            kl_step=kl,
            min_kl_step=min(0.01, kl),
            max_kl_step=max(2.0, kl),
        )
        self.controller: LinearGaussianController | None = None
        self.model_version = -1
        self.published = 0
        self.fallbacks: Counter[str] = Counter()
        self.last_info: dict = {}
        self.persist = bool(declare(self, "persist", False))
        self.checkpoint = CheckpointFile(
            Path(self.cfg.train.run_dir) / CHECKPOINT_NAME, self.get_logger().error
        )
        self.resumed = False
        self._seen_own_version = False
        self.diag = Diagnostics(self)
        self._pub = self.create_publisher(Float64MultiArray, CONTROLLER_TOPIC, qos.LATCHED)
        self._kl_pub = self.create_publisher(Float64, metric_topic("ilqg_kl"), qos.METRICS)
        self._ret_pub = self.create_publisher(
            Float64, metric_topic("ilqg_expected_return"), qos.METRICS
        )
        if self.persist:
            self._resume()
        self.create_subscription(Float64MultiArray, MODEL_TOPIC, self._on_model, qos.LATCHED)
        self._refresh_diagnostics()

    # --- persistence --------------------------------------------------------------------------
    def payload(self) -> dict:
        return {
            "kind": CHECKPOINT_KIND,
            "dims": [self.obs_dim, self.act_dim],
            "controller": None if self.controller is None else self.controller.to_arrays(),
            "model_version": self.model_version,
            "published": self.published,
            "optimizer": {k: getattr(self.optimizer, k) for k in OPTIMIZER_STATE},
            "fallbacks": dict(self.fallbacks),
        }

    def _apply(self, p: dict) -> None:
        """All-or-nothing restore (raises if the payload does not fit this node)."""
        if p.get("kind") != CHECKPOINT_KIND:
            raise ValueError(f"not an ilqg_explorer checkpoint (kind {p.get('kind')!r})")
        if list(p["dims"]) != [self.obs_dim, self.act_dim]:
            raise ValueError(f"dims {p['dims']} != {[self.obs_dim, self.act_dim]}")
        ctrl = p["controller"]
        ctrl = None if ctrl is None else LinearGaussianController.from_arrays(ctrl)
        opt = dict(p["optimizer"])
        missing = [k for k in OPTIMIZER_STATE if k not in opt]
        if missing:
            raise KeyError(f"optimizer state lacks {missing}")
        self.controller, self.model_version = ctrl, int(p["model_version"])
        self.published = int(p["published"])
        for key in OPTIMIZER_STATE:
            setattr(self.optimizer, key, opt[key])
        self.fallbacks = Counter({str(k): int(v) for k, v in p["fallbacks"].items()})

    def _resume(self) -> None:
        if self.checkpoint.load(self._apply) is None:
            return
        self.resumed = True
        self.get_logger().info(
            f"resumed from {self.checkpoint.loaded_from}: controller for model "
            f"v{self.model_version}, kl_step {self.optimizer.kl_step:.4g}, "
            f"eta {self.optimizer.eta:.4g}"
        )
        if self.controller is not None and self.published > 0:
            arrays = self.controller.to_arrays()
            arrays["version"] = float(self.model_version)
            self._pub.publish(pack_arrays(arrays))  # latched, for restarted policies

    def save(self) -> None:
        if not self.persist:
            return
        self.checkpoint.save_and_report(self.payload(), self.diag)

    def safe_stop(self) -> None:
        self.save()

    def _refresh_diagnostics(self) -> None:
        v = self.diag.values
        v["model_version"] = self.model_version
        v["controllers_published"] = self.published
        v["kl_step"] = f"{self.optimizer.kl_step:.4g}"
        v["eta"] = f"{self.optimizer.eta:.4g}"
        v["last_kl"] = f"{self.last_info.get('kl', float('nan')):.4g}"
        v["resumed"] = self.resumed
        if self.persist:
            v.update(self.checkpoint.diagnostics())
        for reason, n in self.fallbacks.items():
            v[f"fallbacks/{reason}"] = n
        if self.fallbacks:
            self.diag.level = DiagnosticStatus.WARN
            self.diag.message = f"{sum(self.fallbacks.values())} iLQG fallbacks"

    def _on_model(self, msg: Float64MultiArray) -> None:
        try:
            self._handle(msg)
        except Exception as exc:  # noqa: BLE001 - no input may kill the node
            self.diag.reject("internal_error", f"{type(exc).__name__}: {exc}")
        self._refresh_diagnostics()

    def _handle(self, msg: Float64MultiArray) -> None:
        try:
            arrays = unpack_arrays(msg)
        except CodecError as exc:
            reason = "non_finite_model" if "non-finite" in str(exc) else "malformed_model"
            self.diag.reject(reason, str(exc))
            return
        version = arrays.get("version")
        if version is None or version.shape != () or version != int(version):
            self.diag.reject("malformed_model", "no integer 'version'")
            return
        version = int(version)
        if version == self.model_version and self.resumed and not self._seen_own_version:
            self._seen_own_version = True  # the latched copy of the model we resumed with
            return
        if version <= self.model_version:
            self.diag.reject("stale_model", f"version {version} <= {self.model_version}")
            return
        try:
            model = LinearGaussianDynamics.from_arrays(arrays)
        except ValueError as exc:
            self.diag.reject("invalid_model", str(exc))
            return
        if (model.nx, model.nu) != (self.obs_dim, self.act_dim):
            self.diag.reject(
                "wrong_shape_model",
                f"nx={model.nx}, nu={model.nu}; expected {self.obs_dim}, {self.act_dim}",
            )
            return
        self.model_version = version
        self.step(model, arrays)

    def step(self, model: LinearGaussianDynamics, arrays: dict[str, np.ndarray]) -> None:
        """pi_iLQG <- iLQG OneStep(M) from the previous controller, then publish it."""
        prev = self.controller
        if prev is None or (prev.horizon, prev.nx, prev.nu) != (model.horizon, model.nx, model.nu):
            if prev is not None:
                self.fallbacks["horizon_changed"] += 1
            prev = initial_controller(model, arrays, self.init_var)
        own = self._own_returns(arrays)
        try:
            if own is not None:
                T, nx, nu = model.horizon, model.nx, model.nu
                ctrl, info = self.optimizer.update(
                    model, prev, np.zeros((0, T + 1, nx)), np.zeros((0, T, nu)), returns=own
                )
            else:  # no samples of the previous controller: no step-size adaptation
                ctrl, info = ilqg_step(
                    model,
                    prev,
                    self.task.reward_derivatives,
                    self.optimizer.kl_step * model.horizon,
                    eta_init=self.optimizer.eta,
                    min_action_var=self.optimizer.min_action_var,
                )
                if info["fallback"] is None:
                    self.optimizer.eta = info["eta"]
        except (ValueError, np.linalg.LinAlgError) as exc:
            ctrl, info = prev, {"fallback": f"error_{type(exc).__name__}"}
        self.last_info = info
        fallback = info.get("fallback")
        if fallback is not None:
            self.fallbacks[str(fallback)] += 1
            self.get_logger().warning(
                f"iLQG step on model v{self.model_version} fell back ({fallback}); "
                "keeping the previous controller"
            )
        arrays_out = ctrl.to_arrays()
        if not all(np.isfinite(a).all() for a in arrays_out.values()):
            self.fallbacks["non_finite_controller"] += 1
            return
        self.controller = ctrl
        if fallback is not None and self.published > 0:
            self.save()
            return
        arrays_out["version"] = float(self.model_version)
        self._pub.publish(pack_arrays(arrays_out))
        self.published += 1
        self.save()
        kl = float(info.get("kl", float("nan")))
        publish_scalar(self._kl_pub, kl)
        ret = expected_return(self.task.reward_derivatives, trajectory_distribution(model, ctrl))
        publish_scalar(self._ret_pub, ret)
        eps = self.optimizer.kl_step * model.horizon
        eta = float(info.get("eta", float("nan")))
        self.get_logger().info(
            f"controller v{self.model_version}: KL {kl:.3g} (eps {eps:.3g}), eta {eta:.3g}, "
            f"expected return {ret:.3f}"
        )

    @staticmethod
    def _own_returns(arrays: dict[str, np.ndarray]) -> np.ndarray | None:
        """Returns of fitted episodes run by the iLQG controller itself (None if there are none)."""
        rets, ctrls = arrays.get("sample_returns"), arrays.get("sample_controllers")
        if rets is None or ctrls is None or rets.shape != ctrls.shape:
            return None
        own = rets[ctrls >= 0.5 * ILQG_CONTROLLER_ID]
        return own if own.size else None


def main(args: list[str] | None = None) -> None:
    sys.exit(run_node(ILQGExplorerNode, args))


if __name__ == "__main__":
    main()
