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

from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.node import Node
from std_msgs.msg import Float64, Float64MultiArray

from naf_ros.core.dynamics import LinearGaussianDynamics
from naf_ros.core.ilqg_explorer import ILQGExplorer
from naf_ros.core.model_fit import SampleStats
from naf_ros.envs.configured import reacher_task
from naf_ros.ros import qos
from naf_ros.ros.codec import CodecError, pack_arrays, unpack_arrays
from naf_ros.ros.description import arm_description
from naf_ros.ros.diagnostics import Diagnostics
from naf_ros.ros.messages import publish_scalar
from naf_ros.ros.names import CONTROLLER_TOPIC, MODEL_TOPIC, metric_topic
from naf_ros.ros.params import declare, declare_config
from naf_ros.ros.persist import CheckpointFile
from naf_ros.ros.runtime import exit_process, run_node

CHECKPOINT_NAME = "ilqg_explorer_checkpoint.pt"
CHECKPOINT_KIND = "naf_ros-ilqg_explorer"


class ILQGExplorerNode(Node):
    """Model in, controller out; never publishes a non-finite controller."""

    def __init__(self, **kwargs) -> None:
        super().__init__("ilqg_explorer", **kwargs)
        self.cfg = declare_config(self)
        mb = self.cfg.model_based
        self.task = reacher_task(self.cfg, arm_description(self, self.cfg))
        self.obs_dim, self.act_dim = self.task.obs_dim, self.task.act_dim
        init_var = float(declare(self, "initial_action_var", 0.0))
        self.explorer = ILQGExplorer(self.task, mb, init_var)
        self.model_version = -1
        self.published = 0
        self.last_info: dict = {}
        self.persist = bool(declare(self, "persist", False))
        self.checkpoint = CheckpointFile(
            Path(self.cfg.train.run_dir) / CHECKPOINT_NAME, self.get_logger().error
        )
        self.resumed = False
        self._seen_own_version = False
        self._dirty = False
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
        self.get_logger().info(
            f"iLQG explorer ready: one KL-bounded step per model on {MODEL_TOPIC} "
            f"(kl_step {self.explorer.optimizer.kl_step:.3g}), controllers on {CONTROLLER_TOPIC}"
        )

    # --- persistence --------------------------------------------------------------------------
    def payload(self) -> dict:
        return {
            "kind": CHECKPOINT_KIND,
            "dims": [self.obs_dim, self.act_dim],
            "explorer": self.explorer.state_dict(),
            "model_version": self.model_version,
            "published": self.published,
        }

    def _apply(self, p: dict) -> None:
        """All-or-nothing restore (raises if the payload does not fit this node)."""
        if p.get("kind") != CHECKPOINT_KIND:
            raise ValueError(f"not an ilqg_explorer checkpoint (kind {p.get('kind')!r})")
        if list(p["dims"]) != [self.obs_dim, self.act_dim]:
            raise ValueError(f"dims {p['dims']} != {[self.obs_dim, self.act_dim]}")
        explorer = ILQGExplorer(self.task, self.cfg.model_based, self.explorer.init_var)
        explorer.load_state_dict(p["explorer"])
        self.explorer, self.model_version = explorer, int(p["model_version"])
        self.published = int(p["published"])

    def _resume(self) -> None:
        if self.checkpoint.load(self._apply) is None:
            return
        self.resumed = True
        self.get_logger().info(
            f"resumed from {self.checkpoint.loaded_from}: controller for model "
            f"v{self.model_version}, kl_step {self.explorer.optimizer.kl_step:.4g}, "
            f"eta {self.explorer.optimizer.eta:.4g}"
        )
        if self.explorer.controller is not None and self.published > 0:
            arrays = self.explorer.controller.to_arrays()
            arrays["version"] = float(self.model_version)
            self._pub.publish(pack_arrays(arrays))  # latched, for restarted policies

    def save(self) -> None:
        if not self.persist:
            return
        self._dirty = False
        self.checkpoint.save_and_report(self.payload(), self.diag)

    def safe_stop(self) -> None:
        """Save only if a step happened since the last save: a node stopped before any model
        arrived exits at once instead of importing torch to write what it resumed with."""
        if self._dirty:
            self.save()

    def _refresh_diagnostics(self) -> None:
        v = self.diag.values
        v["model_version"] = self.model_version
        v["controllers_published"] = self.published
        opt, fallbacks = self.explorer.optimizer, self.explorer.fallbacks
        v["kl_step"] = f"{opt.kl_step:.4g}"
        v["eta"] = f"{opt.eta:.4g}"
        v["last_kl"] = f"{self.last_info.get('kl', float('nan')):.4g}"
        v["resumed"] = self.resumed
        if self.persist:
            v.update(self.checkpoint.diagnostics())
        for reason, n in fallbacks.items():
            v[f"fallbacks/{reason}"] = n
        if fallbacks:
            self.diag.level = DiagnosticStatus.WARN
            self.diag.message = f"{sum(fallbacks.values())} iLQG fallbacks"

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
        self._dirty = True
        result = self.explorer.step(model, SampleStats.from_arrays(arrays))
        self.last_info = result.info
        if result.fallback is not None:
            self.get_logger().warning(
                f"iLQG step on model v{self.model_version} fell back ({result.fallback}); "
                "keeping the previous controller"
            )
        if not result.new:
            self.save()
            return
        arrays_out = result.controller.to_arrays()
        arrays_out["version"] = float(self.model_version)
        self._pub.publish(pack_arrays(arrays_out))
        self.published += 1
        self.save()
        kl = float(result.info.get("kl", float("nan")))
        publish_scalar(self._kl_pub, kl)
        publish_scalar(self._ret_pub, result.expected_return)
        eps = self.explorer.optimizer.kl_step * model.horizon
        eta = float(result.info.get("eta", float("nan")))
        self.get_logger().info(
            f"controller v{self.model_version}: KL {kl:.3g} (eps {eps:.3g}), eta {eta:.3g}, "
            f"expected return {result.expected_return:.3f}"
        )


def main(args: list[str] | None = None) -> None:
    exit_process(run_node(ILQGExplorerNode, args))


if __name__ == "__main__":
    main()
