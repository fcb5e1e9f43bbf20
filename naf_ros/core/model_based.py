"""The model side of Algorithm 2 inside one process: what the fitter and explorer nodes do.

In the ROS graph the ``dynamics_fitter`` node runs :class:`~naf_ros.core.model_fit.FitStep`
and the ``ilqg_explorer`` node :class:`~naf_ros.core.ilqg_explorer.ILQGExplorer`; here the
trainer feeds both directly and hands each new model to its
:class:`~naf_ros.core.learner.Learner`. Each episode runs mu + noise, or with probability
``ilqg_probability`` the current iLQG controller (or, in ``ilqg_mode: mpc``, iLQG re-planned
on the true model every step, paper §8.6).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from naf_ros.config import Config, ConfigError
from naf_ros.core.ilqg_explorer import ILQGExplorer
from naf_ros.core.learner import Learner
from naf_ros.core.model_fit import FitStep
from naf_ros.core.mpc import MPCController


class ModelBased:
    """Fit every n episodes, hand the model to the learner, take one iLQG step."""

    def __init__(
        self, cfg: Config, env: Any, horizon: int | None, rng: np.random.Generator
    ) -> None:
        mb = cfg.model_based
        self.mb, self.rng = mb, rng
        task = getattr(env.unwrapped, "task", None)
        if task is None or not hasattr(task, "reward_derivatives"):
            raise ConfigError(
                f"model_based.enabled: {cfg.env.id!r} provides no task reward r(x, u) with "
                f"derivatives, which imagination rollouts and iLQG need (use a NafRos reacher)"
            )
        if horizon is None:
            raise ConfigError(
                f"model_based.enabled: fitted models are time-varying and need a fixed "
                f"episode length; {cfg.env.id!r} has no time limit (set env.max_episode_steps)"
            )
        self.task = task
        obs_dim = env.observation_space.shape[0]
        act_dim = env.action_space.shape[0]
        self.fit_step = FitStep(cfg, task, obs_dim, act_dim, horizon)
        self.explorer = ILQGExplorer(task, mb)
        self.version = 0
        self.mpc = None
        if mb.ilqg_mode == "mpc":
            if mb.model != "true":
                raise ConfigError(
                    f"model_based.ilqg_mode: 'mpc' re-plans on the true model; set "
                    f"model_based.model to 'true' (got {mb.model!r})"
                )
            true_model = self.fit_step.fitter.true_model
            self.mpc = MPCController(true_model, task, act_dim, mb.mpc_horizon)
        self.ilqg_episodes = 0

    @property
    def fits(self) -> int:
        return self.fit_step.fitter.fits

    def choose_controller(self) -> Any:
        """iLQG with probability ``ilqg_probability`` once a controller exists, else None."""
        controller = self.mpc if self.mpc is not None else self.explorer.controller
        if controller is not None and self.rng.random() < self.mb.ilqg_probability:
            self.ilqg_episodes += 1
            return controller
        return None

    def observe(self, transition: dict, learner: Learner) -> dict:
        """Feed one real transition; after every n-th complete episode fit, imagine, plan."""
        outcome, _, _ = self.fit_step.feed(transition)
        if outcome is None:
            return {}
        if not outcome.ok:
            return {"fit": "failed"}  # B_old stays with the model it was fitted around
        self.version += 1
        learner.set_model(outcome.imagination, self.version)
        if outcome.planning is not None and self.mb.ilqg_probability > 0 and self.mpc is None:
            self.explorer.step(outcome.planning, outcome.stats)
        return {"fit": "ok"}

    def summary(self, learner: Learner) -> dict:
        fitter, explorer = self.fit_step.fitter, self.explorer
        return {
            "fits": fitter.fits,
            "fit_failures": sum(fitter.failures.values()),
            "last_fit_error": fitter.last_error,
            "ilqg_updates": explorer.steps,
            "ilqg_fallbacks": sum(explorer.fallbacks.values()),
            "ilqg_episodes": self.ilqg_episodes,
            "imagined": learner.counters.imagined,
            "fictional_size": len(learner.fictional),
            "kl_step": explorer.optimizer.kl_step,
        }

    def state_dict(self) -> dict:
        fitter = self.fit_step.fitter
        return {
            "fit": self.fit_step.state_dict(),
            "explorer": self.explorer.state_dict(),
            "version": self.version,
            "ilqg_episodes": self.ilqg_episodes,
            "fits": fitter.fits,
            "fit_failures": dict(fitter.failures),
            "last_fit_error": fitter.last_error,
            "nn_model": None if fitter.nn_model is None else _nn_state(fitter.nn_model),
        }

    def load_state_dict(self, state: dict) -> None:
        self.fit_step.load_state_dict(state["fit"])
        self.explorer.load_state_dict(state["explorer"])
        self.version = int(state["version"])
        self.ilqg_episodes = int(state["ilqg_episodes"])
        fitter = self.fit_step.fitter
        fitter.fits = int(state.get("fits", self.version))
        fitter.failures = Counter(
            {str(k): int(v) for k, v in state.get("fit_failures", {}).items()}
        )
        fitter.last_error = str(state.get("last_fit_error", ""))
        if fitter.nn_model is not None and state.get("nn_model") is not None:
            _load_nn_state(fitter.nn_model, state["nn_model"])

    def restore_model(self, learner: Learner) -> None:
        """Hand a resumed learner the model it imagined with. The learner checkpoints linear
        models itself (as arrays); the -NN and true-simulator models live here, and without
        this a resumed run would not imagine again until the next fit."""
        if learner.model is not None or learner.model_version < 0:
            return
        fitter = self.fit_step.fitter
        model = fitter.nn_model if self.mb.model == "nn" else fitter.true_model
        if model is not None and (self.mb.model != "nn" or model.trained):
            learner.model = model


# What a fitted -NN model is between fits: weights, Adam's moments, its minibatch generator,
# the data it trains on and the standardisation and residual noise it samples with.
_NN_ARRAYS = ("in_mean", "in_std", "out_mean", "out_std", "residual_var")


def _nn_state(model: Any) -> dict:
    return {
        "net": model.net.state_dict(),
        "optimizer": model.opt.state_dict(),
        "rng": model._rng.bit_generator.state,
        "inputs": list(model._inputs),
        "targets": list(model._targets),
        "trained": model.trained,
        **{name: np.array(getattr(model, name)) for name in _NN_ARRAYS},
    }


def _load_nn_state(model: Any, state: dict) -> None:
    model.net.load_state_dict(state["net"])
    model.opt.load_state_dict(state["optimizer"])
    model._rng.bit_generator.state = state["rng"]
    model._inputs.clear()
    model._inputs.extend(np.asarray(a) for a in state["inputs"])
    model._targets.clear()
    model._targets.extend(np.asarray(a) for a in state["targets"])
    model.trained = bool(state["trained"])
    for name in _NN_ARRAYS:
        setattr(model, name, np.asarray(state[name]))
