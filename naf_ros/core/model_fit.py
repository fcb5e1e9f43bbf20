"""Algorithm 2's ``M <- FitLocalLinearDynamics(B_f)``, written once.

The in-process trainer and the ``dynamics_fitter`` node both feed decoded transitions into a
:class:`FitStep`: it assembles complete fixed-length episodes (per producer), and every
``model_based.episodes_per_fit`` of them fits the configured model with :class:`ModelFitter`
and returns a :class:`FitOutcome`. What happens next (imagine through the model, take an iLQG
step, publish a message) is the caller's business, so the two paths cannot drift.

Model variants (``model_based.model``): ``linear`` (time-varying linear-Gaussian with a NIW
prior; the observation-space fit is what iLQG plans on, and with ``linear_state: joint`` a
joint-space fit of (q, q̇) is what imagination steps), ``nn`` (global neural network, the
paper's "-NN") and ``true`` (the simulator itself, paper §6.2). Only ``linear`` travels over
ROS; the other two serve the trainer's ablations.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from naf_ros.config import Config, ConfigError
from naf_ros.core.dynamics import (
    DynamicsFitError,
    DynamicsPrior,
    LinearGaussianDynamics,
    fit_linear_gaussian,
)
from naf_ros.core.episodes import Episode, EpisodeAssembler, stack_episodes
from naf_ros.core.joint_dynamics import JointSpaceDynamics, fit_joint_space
from naf_ros.core.nn_dynamics import GlobalNNDynamics

FIT_ERRORS = (DynamicsFitError, np.linalg.LinAlgError, ValueError)


@dataclass
class SampleStats:
    """What iLQG needs of the fitted episodes besides the model: their returns, which of them
    the iLQG controller itself ran (its step size adapts on those alone), and the mean states,
    mean and variance of actions (the first controller is centred on them)."""

    returns: np.ndarray
    controllers: np.ndarray
    x_mean: np.ndarray
    u_mean: np.ndarray
    u_var: np.ndarray

    PREFIX = "sample_"

    @classmethod
    def from_episodes(cls, episodes: list[Episode]) -> SampleStats:
        U = np.stack([e.actions for e in episodes])
        return cls(
            returns=np.array([e.ret for e in episodes]),
            controllers=np.array([float(np.mean(e.controllers)) for e in episodes]),
            x_mean=np.stack([e.obs for e in episodes]).mean(axis=0),
            u_mean=U.mean(axis=0),
            u_var=U.var(axis=0),
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {self.PREFIX + k: np.asarray(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_arrays(cls, arrays: dict[str, Any]) -> SampleStats | None:
        """The statistics carried in a model message, or None if any is missing."""
        keys = ("returns", "controllers", "x_mean", "u_mean", "u_var")
        if not all(cls.PREFIX + k in arrays for k in keys):
            return None
        return cls(**{k: np.asarray(arrays[cls.PREFIX + k], dtype=float) for k in keys})

    def own_returns(self, ilqg_id: float = 1.0) -> np.ndarray | None:
        """Returns of the episodes the iLQG controller ran (None if it ran none)."""
        if self.returns.shape != self.controllers.shape:
            return None
        own = self.returns[self.controllers >= 0.5 * ilqg_id]
        return own if own.size else None


@dataclass
class FitOutcome:
    """One fit: the model imagination steps, the linear model iLQG plans on, or the error."""

    episodes: list[Episode]
    imagination: Any = None  # LinearGaussianDynamics | JointSpaceDynamics | NN | true model
    planning: LinearGaussianDynamics | None = None  # None: no model iLQG can plan on
    observed: LinearGaussianDynamics | None = None  # the observation-space linear fit
    joint: JointSpaceDynamics | None = None
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def stats(self) -> SampleStats:
        return SampleStats.from_episodes(self.episodes)


def one_step_rmse(model: Any, X: np.ndarray, U: np.ndarray) -> float:
    """RMSE of the model's mean next-state prediction over every (x_t, u_t, x_{t+1})."""
    T = U.shape[1]
    pred = np.stack([model.predict(t, X[:, t], U[:, t]) for t in range(T)], axis=1)
    return float(np.sqrt(np.mean((pred - X[:, 1 : T + 1]) ** 2)))


class ModelFitter:
    """Fits the configured model to a batch of episodes; keeps the priors between fits.

    The priors pool the last ``prior_episodes`` episodes (observation space, and joint space
    when imagination steps the arm), so a checkpoint must keep them: a resumed run's next fit
    needs the same history as the uninterrupted run's.
    """

    def __init__(
        self, cfg: Config, task: Any, obs_dim: int, act_dim: int, prior_components: int = 1
    ) -> None:
        mb = cfg.model_based
        self.kind, self.reg, self.seed = mb.model, mb.reg, cfg.train.seed
        # per_step_centred: the prior shares only the covariance's shape (mean weight 0).
        centred = {"center_per_step": True, "mean_strength": 0.0}
        self._prior_kwargs = centred if mb.prior == "per_step_centred" else {}
        self.prior = DynamicsPrior(
            n_components=prior_components,
            max_episodes=mb.prior_episodes,
            seed=self.seed,
            **self._prior_kwargs,
        )
        joint = mb.model == "linear" and mb.linear_state == "joint"
        if joint and not hasattr(task, "joint_state_from_observation"):
            raise ConfigError(
                f"model_based.linear_state: 'joint' needs a task that maps observations to "
                f"joint states; {cfg.env.id!r} has none (use 'observation')"
            )
        self.joint_prior = (
            DynamicsPrior(max_episodes=mb.prior_episodes, seed=self.seed, **self._prior_kwargs)
            if joint
            else None
        )
        self.task = task
        self.nn_model = None
        if self.kind == "nn":
            self.nn_model = GlobalNNDynamics(obs_dim, act_dim, seed=self.seed)
        self.true_model = None
        if self.kind == "true":
            from naf_ros.core.true_model import TrueSimModel
            from naf_ros.envs.configured import make_kwargs

            self.true_model = TrueSimModel(cfg.env.id, make_kwargs(cfg))
        self.fits = 0
        self.failures: Counter[str] = Counter()
        self.last_error = ""

    def fit(self, episodes: list[Episode]) -> FitOutcome:
        """M <- fit(episodes); a failure is counted and returned, never raised."""
        X, U = stack_episodes(episodes)
        out = FitOutcome(episodes=episodes)
        try:
            if self.kind == "linear":
                self.prior.update(X, U)
                out.observed = out.planning = fit_linear_gaussian(
                    X, U, self.prior, reg=self.reg, min_episodes=1
                )
                out.imagination = out.observed
                if self.joint_prior is not None:
                    out.joint = fit_joint_space(
                        self.task, X, U, self.joint_prior, reg=self.reg, min_episodes=1
                    )
                    out.imagination = out.joint
            else:
                model = self.nn_model if self.kind == "nn" else self.true_model
                if self.kind == "nn":
                    model.fit(X, U, n_steps=300)
                out.imagination = model
                out.planning = model.linearize(X.mean(0), U.mean(0))
        except FIT_ERRORS as exc:
            self.failures[type(exc).__name__] += 1
            self.last_error = out.error = f"{type(exc).__name__}: {exc}"
            return out
        self.fits += 1
        return out

    def state_dict(self) -> dict:
        return {"prior": self.prior, "joint_prior": self.joint_prior}

    def load_state_dict(self, state: dict) -> None:
        """Restore the priors (absent ones, e.g. of older checkpoints, start afresh)."""
        if isinstance(state.get("prior"), DynamicsPrior):
            self.prior = state["prior"]
        if self.joint_prior is not None and isinstance(state.get("joint_prior"), DynamicsPrior):
            self.joint_prior = state["joint_prior"]


class FitStep:
    """Transitions in, a fit every n complete episodes out: B_f of Algorithm 2 for the model.

    Episodes are assembled per producer (several arms feed one fitter); an incomplete or
    inconsistent one is dropped with a reason for the caller to count. B_f is emptied at every
    fit whatever its outcome: the samples are spent, the next fit waits for n new episodes.
    """

    def __init__(
        self,
        cfg: Config,
        task: Any,
        obs_dim: int,
        act_dim: int,
        horizon: int,
        prior_components: int = 1,
    ) -> None:
        self.n_per_fit = cfg.model_based.episodes_per_fit
        self.assembler = EpisodeAssembler(obs_dim, act_dim, horizon)
        self.fitter = ModelFitter(cfg, task, obs_dim, act_dim, prior_components)
        self.batch: list[Episode] = []

    def feed(self, tr: dict) -> tuple[FitOutcome | None, bool, list[str]]:
        """Add one transition: (fit outcome or None, whether an episode completed, drop reasons)."""
        done, reasons = self.assembler.feed(tr)
        if done is None:
            return None, False, reasons
        self.batch.append(done)
        if len(self.batch) < self.n_per_fit:
            return None, True, reasons
        episodes, self.batch = self.batch, []
        return self.fitter.fit(episodes), True, reasons

    def state_dict(self) -> dict:
        return {
            **self.fitter.state_dict(),
            "batch": [e.__dict__.copy() for e in self.batch],
            "completed": self.assembler.completed,
        }

    def load_state_dict(self, state: dict) -> None:
        batch = [Episode(**e) for e in state["batch"]]
        self.fitter.load_state_dict(state)
        self.batch = batch
        self.assembler.completed = int(state["completed"])


def fit_state_kind(model: Any) -> str:
    """What an imagination model steps: 'joint' (q, q̇), 'observation', or 'none' yet."""
    if model is None:
        return "none"
    return "joint" if isinstance(model, JointSpaceDynamics) else "observation"


def model_from_arrays(
    arrays: dict[str, Any], task: Any
) -> LinearGaussianDynamics | JointSpaceDynamics:
    """Rebuild a checkpointed linear model (joint-space ones carry their angle reference)."""
    if "angle_ref" in arrays:
        return JointSpaceDynamics.from_arrays(arrays, task)
    return LinearGaussianDynamics.from_arrays(arrays)
