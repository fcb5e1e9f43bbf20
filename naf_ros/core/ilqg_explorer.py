"""Algorithm 2's ``pi_iLQG <- iLQG_OneStep(M)``, written once for the trainer and the node.

One KL-bounded iLQG step per fitted model, taken from the previous controller (the trust
region is KL(new || previous)); the first starts from a zero-gain controller centred on the
fitted episodes' mean states and actions. The KL step adapts from predicted versus actual
improvement, and the actual improvement is measured on the returns of the episodes **the
iLQG controller itself ran** among the fitted ones: the others (NAF's, with noise) say
nothing about the controller's step. With none of its own episodes there is no adaptation.
A fallback of the eta search keeps the previous controller; a non-finite controller is never
returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from naf_ros.config import ModelBasedConfig
from naf_ros.core.dynamics import LinearGaussianDynamics
from naf_ros.core.ilqg import ILQGOptimizer, expected_return, ilqg_step, trajectory_distribution
from naf_ros.core.lin_gauss_policy import LinearGaussianController
from naf_ros.core.model_fit import SampleStats

OPTIMIZER_STATE = ("kl_step", "eta", "n_updates", "n_fallbacks", "_last")


def initial_controller(
    model: LinearGaussianDynamics, stats: SampleStats | None, init_var: float
) -> LinearGaussianController:
    """Zero-gain controller around the fitted episodes (their mean states and actions).

    ``init_var <= 0`` takes the episodes' mean action variance, so the first trust region is
    measured against how the data was actually explored.
    """
    T, nx, nu = model.horizon, model.nx, model.nu
    u_hat, x_hat = np.zeros((T, nu)), None
    if stats is not None and stats.u_mean.shape == (T, nu):
        u_hat = stats.u_mean
    if stats is not None and stats.x_mean.shape == (T + 1, nx):
        x_hat = stats.x_mean[:T]
    if x_hat is None:
        x_hat = np.broadcast_to(model.x0_mean, (T, nx))
    if init_var <= 0:
        u_var = stats.u_var if stats is not None else None
        init_var = float(np.mean(u_var)) if u_var is not None and u_var.size else 0.1
        init_var = float(np.clip(init_var, 1e-3, 1.0))
    return LinearGaussianController.initial(
        T, nx, nu, init_var, x_hat=x_hat, u_hat=np.clip(u_hat, -1.0, 1.0), low=-1.0, high=1.0
    )


@dataclass
class ExplorerStep:
    """What one step did: the controller to run (None: nothing usable yet), whether it is
    new (publish it), the optimiser's info, a fallback reason, and the model-predicted return."""

    controller: LinearGaussianController | None
    new: bool
    info: dict = field(default_factory=dict)
    fallback: str | None = None
    expected_return: float = float("nan")


class ILQGExplorer:
    """Model in, time-varying linear-Gaussian controller out."""

    def __init__(self, task: Any, mb: ModelBasedConfig, init_var: float = 0.0) -> None:
        kl = mb.kl_step
        self.task = task
        self.init_var = float(init_var)
        self.optimizer = ILQGOptimizer(
            task.reward_derivatives,
            reward=task.reward,
            kl_step=kl,
            min_kl_step=min(0.01, kl),
            max_kl_step=max(2.0, kl),
        )
        self.controller: LinearGaussianController | None = None
        self.steps = 0
        self.fallbacks: dict[str, int] = {}

    def step(self, model: LinearGaussianDynamics, stats: SampleStats | None) -> ExplorerStep:
        """pi_iLQG <- one KL-bounded step on ``model`` from the previous controller."""
        prev = self.controller
        shape = (model.horizon, model.nx, model.nu)
        if prev is None or (prev.horizon, prev.nx, prev.nu) != shape:
            if prev is not None:
                self._count("horizon_changed")
            prev = initial_controller(model, stats, self.init_var)
        own = stats.own_returns() if stats is not None else None
        opt = self.optimizer
        try:
            if own is not None:
                T, nx, nu = shape
                ctrl, info = opt.update(
                    model, prev, np.zeros((0, T + 1, nx)), np.zeros((0, T, nu)), returns=own
                )
            else:  # no episodes of the previous controller: no step-size adaptation
                ctrl, info = ilqg_step(
                    model,
                    prev,
                    self.task.reward_derivatives,
                    opt.kl_step * model.horizon,
                    eta_init=opt.eta,
                    min_action_var=opt.min_action_var,
                )
                if info["fallback"] is None:
                    opt.eta = info["eta"]
        except (ValueError, np.linalg.LinAlgError) as exc:
            ctrl, info = prev, {"fallback": f"error_{type(exc).__name__}"}
        self.steps += 1
        fallback = info.get("fallback")
        if fallback is not None:
            self._count(str(fallback))
        if not all(np.isfinite(a).all() for a in ctrl.to_arrays().values()):
            self._count("non_finite_controller")
            return ExplorerStep(self.controller, False, info, "non_finite_controller")
        had_one = self.controller is not None
        self.controller = ctrl
        if fallback is not None and had_one:
            return ExplorerStep(ctrl, False, info, str(fallback))
        ret = expected_return(self.task.reward_derivatives, trajectory_distribution(model, ctrl))
        return ExplorerStep(ctrl, True, info, fallback, ret)

    def _count(self, reason: str) -> None:
        self.fallbacks[reason] = self.fallbacks.get(reason, 0) + 1

    # --- persistence ---------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "controller": None if self.controller is None else self.controller.to_arrays(),
            "optimizer": {k: getattr(self.optimizer, k) for k in OPTIMIZER_STATE},
            "fallbacks": dict(self.fallbacks),
            "steps": self.steps,
        }

    def load_state_dict(self, state: dict) -> None:
        """All-or-nothing: raises (and changes nothing) if the state does not fit."""
        ctrl = state["controller"]
        ctrl = None if ctrl is None else LinearGaussianController.from_arrays(ctrl)
        opt = dict(state["optimizer"])
        missing = [k for k in OPTIMIZER_STATE if k not in opt]
        if missing:
            raise KeyError(f"optimizer state lacks {missing}")
        self.controller = ctrl
        for key in OPTIMIZER_STATE:
            setattr(self.optimizer, key, opt[key])
        self.fallbacks = {str(k): int(v) for k, v in state.get("fallbacks", {}).items()}
        self.steps = int(state.get("steps", 0))
