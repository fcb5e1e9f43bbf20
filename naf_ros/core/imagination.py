"""Algorithm 2 of the paper: imagination rollouts on fitted dynamics, with iLQG exploration.

Buffers: the fictional replay R_f, the episode buffer B_f (episodes since the last fit) and
B_old (the episodes the current model was fitted to). Every ``rollout_every`` real steps the
current policy mu (plus exploration noise: Q-learning needs on-policy *mistakes*, paper §5.2)
is rolled ``rollout_length`` steps through the model from states sampled from B_old, and the
fictional transitions go to R_f. Each real step then gets I*l updates from R_f besides the I
from R (the trainer does the updates). When B_f holds n episodes: refit the model, take one
iLQG step, and B_old <- B_f.

Model variants (``model_based.model``): ``linear`` (time-varying linear-Gaussian, default),
``nn`` (global neural network, the paper's "-NN") and ``true`` (the simulator itself, §6.2).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from naf_ros.config import Config, ConfigError
from naf_ros.core.dynamics import (
    DynamicsFitError,
    DynamicsPrior,
    LinearGaussianDynamics,
    fit_linear_gaussian,
)
from naf_ros.core.envs import episode_limit
from naf_ros.core.ilqg import ILQGOptimizer
from naf_ros.core.joint_dynamics import JointSpaceDynamics, fit_joint_space
from naf_ros.core.lin_gauss_policy import LinearGaussianController
from naf_ros.core.mpc import MPCController
from naf_ros.core.nn_dynamics import GlobalNNDynamics
from naf_ros.core.replay import ReplayBuffer


class TrueSimModel:
    """The simulator as the model: set the state an observation describes, step, observe.

    Only environments whose observation determines the physics state (the package's reacher:
    joint angles, velocities and target) can serve; others get a clear config error.
    """

    def __init__(self, env_id: str, env_kwargs: dict) -> None:
        import gymnasium as gym

        import naf_ros.envs  # noqa: F401  (registers the reacher ids)

        self.env = gym.make(env_id, **env_kwargs).unwrapped
        if not (hasattr(self.env, "sim") and hasattr(self.env, "task")):
            raise ConfigError(
                f"model_based.model: 'true' needs an environment whose observation sets the "
                f"simulator state (NafRos reacher); {env_id!r} has none"
            )
        self.task = self.env.task
        self.sim = self.env.sim

    def predict(self, t, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(x)
        u = np.atleast_2d(u)
        out = np.empty_like(x)
        for i in range(len(x)):
            q, qd, target = self.task.joint_state_from_observation(x[i])
            self.sim.reset(q, qd, target)
            self.sim.set_effort(self.task.effort_from_action(u[i]))
            self.sim.step()
            out[i] = self.task.observation(
                self.sim.joint_positions(), self.sim.joint_velocities(), self.sim.target
            )
        return out

    def linearize(
        self, x_traj: np.ndarray, u_traj: np.ndarray, eps: float = 1e-5, noise_var: float = 1e-6
    ) -> LinearGaussianDynamics:
        """Finite-difference Jacobians along a nominal trajectory (iLQG on the true model)."""
        T, nx, nu = len(u_traj), x_traj.shape[1], u_traj.shape[1]
        F = np.zeros((T, nx, nx + nu))
        f = np.zeros((T, nx))
        for t in range(T):
            xu = np.concatenate([x_traj[t], u_traj[t]])
            pert = np.concatenate([xu + eps * np.eye(nx + nu), xu - eps * np.eye(nx + nu)])
            nxt = self.predict(t, pert[:, :nx], pert[:, nx:])
            F[t] = ((nxt[: nx + nu] - nxt[nx + nu :]) / (2 * eps)).T
            f[t] = self.predict(t, x_traj[t], u_traj[t])[0] - F[t] @ xu
        N = np.broadcast_to(noise_var * np.eye(nx), (T, nx, nx)).copy()
        return LinearGaussianDynamics(
            F=F, f=f, N=N, x0_mean=x_traj[0].copy(), x0_cov=noise_var * np.eye(nx)
        )


def imagine(
    model: Any,
    policy,
    reward,
    states: np.ndarray,
    steps: np.ndarray,
    length: int,
    horizon: int | None,
    noise_scale: float,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Roll ``policy`` (batched mu) ``length`` steps through ``model`` from ``states``.

    Time-varying models stop at their horizon. Returns stacked transitions (terminal = 0:
    the end of an imagined rollout is a truncation, so targets bootstrap through it).
    """
    obs, act, rew, nxt, stp = [], [], [], [], []
    x = np.asarray(states, dtype=np.float64)
    t = np.asarray(steps, dtype=np.int64)
    for _ in range(length):
        if horizon is not None:
            alive = t < horizon
            x, t = x[alive], t[alive]
        if len(x) == 0:
            break
        u = policy(x)
        if noise_scale > 0:
            u = u + noise_scale * rng.standard_normal(u.shape)
        u = np.clip(u, -1.0, 1.0)
        x_next = model.predict(t, x, u)
        ok = np.isfinite(x_next).all(axis=1)
        obs.append(x[ok])
        act.append(u[ok])
        rew.append(np.asarray(reward(x[ok], u[ok]), dtype=np.float64))
        nxt.append(x_next[ok])
        stp.append(t[ok])
        x, t = x_next[ok], t[ok] + 1
    if not obs:
        return {
            "obs": np.zeros((0, states.shape[1])),
            "action": np.zeros((0, 0)),
            "reward": np.zeros(0),
            "next_obs": np.zeros((0, states.shape[1])),
            "step": np.zeros(0, np.int64),
        }
    return {
        "obs": np.concatenate(obs),
        "action": np.concatenate(act),
        "reward": np.concatenate(rew),
        "next_obs": np.concatenate(nxt),
        "step": np.concatenate(stp),
    }


class ModelBasedAccelerator:
    """The model-based half of Algorithm 2, driven by the trainer's episode loop."""

    def __init__(self, cfg: Config, env, agent, rng: np.random.Generator) -> None:
        mb = cfg.model_based
        self.cfg, self.mb, self.agent, self.rng = cfg, mb, agent, rng
        base = env.unwrapped
        task = getattr(base, "task", None)
        if task is None or not hasattr(task, "reward_derivatives"):
            raise ConfigError(
                f"model_based.enabled: {cfg.env.id!r} provides no task reward r(x, u) with "
                f"derivatives, which imagination rollouts and iLQG need (use a NafRos reacher)"
            )
        self.task = task
        self.horizon = episode_limit(env)
        if mb.model == "linear" and self.horizon is None:
            raise ConfigError(
                f"model_based.model: 'linear' fits time-varying models and needs a fixed "
                f"episode length; {cfg.env.id!r} has no time limit (set env.max_episode_steps)"
            )
        self.obs_dim = env.observation_space.shape[0]
        self.act_dim = env.action_space.shape[0]
        self.fictional = ReplayBuffer(self.obs_dim, self.act_dim, mb.imagination_capacity)
        self.B_f: list[tuple[np.ndarray, np.ndarray]] = []
        self.B_old: list[tuple[np.ndarray, np.ndarray]] = []
        self._ep_x: list[np.ndarray] = []
        self._ep_u: list[np.ndarray] = []
        self.model: Any = None
        self.controller: LinearGaussianController | None = None
        self.prior = DynamicsPrior(max_episodes=mb.prior_episodes, seed=cfg.train.seed)
        # model_based.linear_state 'joint': imagination steps a joint-space fit with its own
        # prior (None otherwise); iLQG keeps the observation-space fit.
        joint_space = mb.model == "linear" and mb.linear_state == "joint"
        self.joint_prior = (
            DynamicsPrior(max_episodes=mb.prior_episodes, seed=cfg.train.seed)
            if joint_space
            else None
        )
        if joint_space and not hasattr(task, "joint_state_from_observation"):
            raise ConfigError(
                f"model_based.linear_state: 'joint' needs a task that maps observations to "
                f"joint states; {cfg.env.id!r} has none (use 'observation')"
            )
        self.ilqg = ILQGOptimizer(
            self.task.reward_derivatives,
            reward=self.task.reward,
            kl_step=mb.kl_step,
            max_kl_step=max(2.0, mb.kl_step),
        )
        if mb.model == "nn":
            self.nn_model = GlobalNNDynamics(self.obs_dim, self.act_dim, seed=cfg.train.seed)
        if mb.model == "true":
            self.true_model = TrueSimModel(cfg.env.id, cfg.env.kwargs)
        self.mpc = None
        if mb.ilqg_mode == "mpc":
            if mb.model != "true":
                raise ConfigError(
                    f"model_based.ilqg_mode: 'mpc' re-plans on the true model; set "
                    f"model_based.model to 'true' (got {mb.model!r})"
                )
            self.mpc = MPCController(self.true_model, self.task, self.act_dim, mb.mpc_horizon)
        self.stats = {
            "fits": 0,
            "fit_failures": 0,
            "ilqg_updates": 0,
            "ilqg_fallbacks": 0,
            "imagined": 0,
            "ilqg_episodes": 0,
            "last_fit_error": "",
        }

    # --- Algorithm 2: episode bookkeeping --------------------------------------------------
    def imagination_on(self, episodes: int) -> bool:
        off = self.mb.imagination_off_after
        return off is None or episodes < off

    def choose_controller(self):
        """iLQG with probability ``ilqg_probability`` once a controller exists, else None."""
        controller = self.mpc if self.mpc is not None else self.controller
        if controller is not None and self.rng.random() < self.mb.ilqg_probability:
            self.stats["ilqg_episodes"] += 1
            return controller
        return None

    def observe(self, obs, action, reward, next_obs, t: int) -> None:
        if t == 0:
            self._ep_x, self._ep_u = [np.asarray(obs, float)], []
        self._ep_u.append(np.asarray(action, float))
        self._ep_x.append(np.asarray(next_obs, float))

    def end_episode(self, length: int) -> dict:
        complete = self.horizon is None or length == self.horizon
        if complete and self._ep_u:
            self.B_f.append((np.array(self._ep_x), np.array(self._ep_u)))
        self._ep_x, self._ep_u = [], []
        info: dict[str, Any] = {}
        if len(self.B_f) >= self.mb.episodes_per_fit:
            info = self._refit()
            self.B_old, self.B_f = self.B_f, []
        return info

    def _refit(self) -> dict:
        X = np.stack([x for x, _ in self.B_f])
        U = np.stack([u for _, u in self.B_f])
        try:
            linear = self._fit_model(X, U)
        except (DynamicsFitError, np.linalg.LinAlgError, ValueError) as exc:
            self.stats["fit_failures"] += 1
            self.stats["last_fit_error"] = str(exc)
            return {"fit": "failed"}
        self.stats["fits"] += 1
        if linear is not None and self.mb.ilqg_probability > 0 and self.mpc is None:
            self._ilqg_step(linear, X, U)
        return {"fit": "ok"}

    def _fit_model(self, X: np.ndarray, U: np.ndarray) -> LinearGaussianDynamics | None:
        """Refit the configured model; returns the linear-Gaussian model iLQG should use."""
        if self.mb.model == "linear":
            self.prior.update(X, U)
            observed = fit_linear_gaussian(X, U, self.prior, reg=self.mb.reg)
            self.model = observed
            if self.joint_prior is not None:
                self.model = fit_joint_space(self.task, X, U, self.joint_prior, reg=self.mb.reg)
            return observed
        x_nom, u_nom = X.mean(0), U.mean(0)
        if self.mb.model == "nn":
            self.nn_model.fit(X, U, n_steps=300)
            self.model = self.nn_model
            return self.nn_model.linearize(x_nom, u_nom) if self.horizon else None
        self.model = self.true_model
        return self.true_model.linearize(x_nom, u_nom) if self.horizon else None

    def _ilqg_step(self, dynamics: LinearGaussianDynamics, X: np.ndarray, U: np.ndarray) -> None:
        prev = self.controller
        if prev is None or prev.horizon != dynamics.horizon:
            prev = LinearGaussianController.initial(
                dynamics.horizon,
                self.obs_dim,
                self.act_dim,
                init_var=0.1,
                x_hat=X[:, :-1].mean(0),
                u_hat=U.mean(0),
            )
        ctrl, info = self.ilqg.update(dynamics, prev, X, U)
        self.stats["ilqg_updates"] += 1
        if info.get("fallback"):
            self.stats["ilqg_fallbacks"] += 1
        self.controller = ctrl

    # --- imagination -------------------------------------------------------------------------
    def maybe_imagine(self, env_steps: int, episodes: int) -> int:
        """Every ``rollout_every`` real steps, l-step rollouts of mu from B_old states into R_f."""
        mb = self.mb
        if (
            self.model is None
            or not self.B_old
            or not self.imagination_on(episodes)
            or env_steps % mb.rollout_every != 0
        ):
            return 0
        ep = self.rng.integers(0, len(self.B_old), size=mb.rollout_batch)
        t_max = len(self.B_old[0][1])
        t = self.rng.integers(0, t_max, size=mb.rollout_batch)
        states = np.stack([self.B_old[e][0][s] for e, s in zip(ep, t)])
        horizon = self.horizon if self.mb.model == "linear" else None
        batch = imagine(
            self.model,
            self.agent.mu_batch,
            self.task.reward,
            states,
            t,
            mb.rollout_length,
            horizon,
            self.cfg.exploration.scale,
            self.rng,
        )
        n = self.fictional.add_batch(
            batch["obs"],
            batch["action"],
            batch["reward"],
            batch["next_obs"],
            np.zeros(len(batch["reward"])),
            batch["step"],
        )
        self.stats["imagined"] += n
        return n

    def imagination_batches(self, episodes: int) -> tuple[ReplayBuffer, int]:
        """(R_f, number of R_f updates this step): I*l while imagination is on."""
        mb, agent_cfg = self.mb, self.cfg.agent
        if not self.imagination_on(episodes) or len(self.fictional) < agent_cfg.batch_size:
            return self.fictional, 0
        n = mb.imagination_updates_per_step
        if n is None:
            n = agent_cfg.updates_per_step * mb.rollout_length
        return self.fictional, n

    # --- persistence ---------------------------------------------------------------------------
    def summary(self) -> dict:
        return {**self.stats, "fictional_size": len(self.fictional), "kl_step": self.ilqg.kl_step}

    def state_dict(self) -> dict:
        return {
            "fictional": self.fictional.state_dict(),
            "B_f": self.B_f,
            "B_old": self.B_old,
            "model": self.model.to_arrays()
            if isinstance(self.model, (LinearGaussianDynamics, JointSpaceDynamics))
            else None,
            "controller": self.controller.to_arrays() if self.controller is not None else None,
            "stats": dict(self.stats),
            # The priors pool the last prior_episodes episodes: experience a resumed run's
            # next fits need as much as the uninterrupted run's.
            "prior": self.prior,
            "joint_prior": self.joint_prior,
        }

    def load_state_dict(self, state: dict) -> None:
        self.fictional.load_state_dict(state["fictional"])
        self.B_f, self.B_old = list(state["B_f"]), list(state["B_old"])
        if state.get("model") is not None:
            if "angle_ref" in state["model"]:
                self.model = JointSpaceDynamics.from_arrays(state["model"], self.task)
            else:
                self.model = LinearGaussianDynamics.from_arrays(state["model"])
        if state.get("controller") is not None:
            self.controller = LinearGaussianController.from_arrays(state["controller"])
        self.stats.update(state["stats"])
        # Absent in older checkpoints; a joint prior only where this config fits one.
        if isinstance(state.get("prior"), DynamicsPrior):
            self.prior = state["prior"]
        if self.joint_prior is not None and isinstance(state.get("joint_prior"), DynamicsPrior):
            self.joint_prior = state["joint_prior"]
