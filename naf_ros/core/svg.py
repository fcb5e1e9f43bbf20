"""SVG(1)-ER (Heess et al. 2015, Algorithm 2): a Gaussian policy improved by value gradients
through a learned one-step model, along real transitions replayed from R.

Why here and in this form: the paper's Table 1 of NAF compares against it, and it is the
model-based counterpart of DDPG (V(x) and a model instead of Q(x, u)). :class:`SVGAgent` has
the interface the :class:`~naf_ros.core.learner.Learner`, the trainer and the ROS nodes use
of the other agents (``update``, ``act``, ``mu_batch``, ``state_dict``, ``weight_arrays``
...), so it runs on the same replay, loops, checkpoints and nodes.

Every ``update`` (I per real step, like NAF/DDPG) takes one minibatch from R and, at the
pre-step parameters (one NaN check skips the whole step, as DDPG's):

- model: x' = x + f(x, u) + diag(sigma_f) eta, eta ~ N(0, I), sigma_f one learned standard
  deviation per state dimension; fitted by maximum likelihood (Gaussian NLL). The paper
  predicts the state change too; one MLP here instead of its per-dimension sub-networks.
- reward model r_hat(x, u, x'): least squares on the replayed rewards. Learned (as the paper
  does) rather than taken from ``ReachTask.reward`` because the agent is built from
  ``agent`` config and dimensions alone (``make_agent``) and must serve Gymnasium tasks and
  the ROS learner, where no differentiable reward is at hand. It sees x' as well as (x, u)
  because the reacher's reward is a function of the state *after* the step; its gradient
  then also flows through the model.
- value: fitted policy evaluation of V(x) (paper's Appendix C, TD(0)): minimise
  w (y - V(x))^2 with y = r + gamma (1 - terminal) V'(x'), V' a soft-updated target copy.
- policy pi(u|x): u = tanh(m(x) + sigma(x) xi), xi ~ N(0, I) (tanh, not a clip: the noise
  that produced a stored action is then unique, xi = (atanh(u) - m) / sigma). Its gradient is
  the SVG(1) value gradient on the *real* (x, u, x'): infer xi from (x, u) and eta from
  (x, u, x'), hold them fixed, and differentiate
  w [r_hat(x, u(theta), x'(theta)) + gamma (1 - terminal) V(x'(theta))], where
  u(theta) = tanh(m + sigma xi) and x'(theta) = x + f(x, u(theta)) + sigma_f eta. At the
  current parameters u(theta) and x'(theta) *are* the replayed u and x'.
- importance weights w = pi(u|x) / mu(u|x), truncated at ``agent.importance_cap`` (default
  :data:`IMPORTANCE_CAP`; the paper truncates, the cap is ours). Not normalised per
  minibatch: on the fixed reacher both normalised variants tried (w / mean w, and that
  capped) let a few rows dominate a batch and fell apart after about 20 episodes, where the
  raw ratio kept learning (one seed each). mu's log-density is stored with each transition
  in R: the learner computes it with the policy's parameters when the transition arrives (in
  the trainer that is the very policy that acted; behind the ROS graph the published copy
  lags the learner by a few updates). Where it is unknown (bag warm starts) the ratio is 1.
  Densities are those of the pre-tanh u; the tanh Jacobian is the same in pi and mu and
  cancels. sigma(x) is learned, with a floor ``agent.policy_std_min`` (default
  exp(:data:`LOG_STD_MIN`) = 0.1): the floor is how much SVG(1)-ER explores at least, its
  counterpart of the others' ``exploration.scale``.

Acting samples pi (``exploration.kind: policy`` supplies xi), evaluation takes tanh(m(x)).
``agent.shared_trunk``, ``max_log_diag`` and ``batch_norm`` (a config error) are NAF's/DDPG's.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from naf_ros.config import AgentConfig
from naf_ros.core.ddpg import _hidden_stack, _small_init
from naf_ros.core.replay import BEHAVIOUR_LOGP
from naf_ros.core.weights import actor_arrays, load_actor_arrays

BATCH_FIELDS = ("obs", "action", "reward", "next_obs", "terminal")
# The defaults of agent.importance_cap and agent.policy_std_min (one source: the config).
IMPORTANCE_CAP = AgentConfig.importance_cap  # truncation of pi/mu (bounded variance, some bias)
# The policy's pre-tanh log sigma lives in between. The floor keeps it exploring: the value
# gradient alone shrinks sigma wherever V is concave, and a collapsed sigma also makes every
# older row's pi/mu vanish (measured on the reacher: sigma 0.007, weights ~0 within 1,000 steps).
LOG_STD_MIN, LOG_STD_MAX = math.log(AgentConfig.policy_std_min), 0.5
# The policy's sigma before learning (OU 0.3/theta 0.15 is about 0.57); with a floor at or
# above it, sigma starts halfway (in log) between the floor and the ceiling instead.
INIT_STD = 0.5
MODEL_LOG_STD_MIN = -10.0
ACTION_EDGE = 1.0 - 1e-6  # |u| is clamped here before atanh (float32 tanh saturates)
LOG_2PI = math.log(2.0 * math.pi)


def bounded_log_std(raw: torch.Tensor, log_std_min: float = LOG_STD_MIN) -> torch.Tensor:
    """log sigma = MIN + (MAX - MIN) sigmoid(raw): smooth, so it never stops learning at a
    bound, and sigma can neither vanish (exploration and log-densities) nor explode."""
    return log_std_min + (LOG_STD_MAX - log_std_min) * torch.sigmoid(raw)


def pre_squash(action: torch.Tensor) -> torch.Tensor:
    """atanh of an action in [-1, 1]: the Gaussian sample u = m + sigma xi behind it."""
    return torch.atanh(torch.clamp(action, -ACTION_EDGE, ACTION_EDGE))


def gaussian_log_prob(u: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """log N(u; mean, diag(exp(log_std))^2), summed over the last dimension."""
    z = (u - mean) * torch.exp(-log_std)
    return (-0.5 * z * z - log_std - 0.5 * LOG_2PI).sum(-1)


def importance_weights(
    logp_pi: torch.Tensor, logp_behaviour: torch.Tensor | None, cap: float = IMPORTANCE_CAP
) -> torch.Tensor:
    """w = min(pi / mu, cap); 1 where mu's density is unknown (NaN or no column)."""
    return torch.exp(_log_weights(logp_pi, logp_behaviour, cap))


def _log_weights(
    logp_pi: torch.Tensor, logp_behaviour: torch.Tensor | None, cap: float
) -> torch.Tensor:
    if logp_behaviour is None:
        return torch.zeros_like(logp_pi)
    log_w = torch.clamp(logp_pi - logp_behaviour, max=math.log(cap))
    return torch.where(torch.isnan(logp_behaviour), torch.zeros_like(log_w), log_w)


def value_target(
    reward: torch.Tensor, next_v: torch.Tensor, terminal: torch.Tensor, gamma: float
) -> torch.Tensor:
    """y = r + gamma (1 - terminal) V'(x'); a time-limit truncation is not terminal."""
    return reward + gamma * (1.0 - terminal) * next_v


class GaussianPolicy(nn.Module):
    """pi(u|x): u = tanh(m(x) + sigma(x) xi); one trunk, a mean head and a log-sigma head.

    The mean head is called ``out`` like DDPG's so the numpy actor reads both alike.
    ``log_std_min`` is log of ``agent.policy_std_min`` (the numpy actor reads it from here)."""

    def __init__(
        self, obs_dim: int, act_dim: int, hidden: list[int], log_std_min: float = LOG_STD_MIN
    ) -> None:
        super().__init__()
        if not log_std_min < LOG_STD_MAX:
            raise ValueError(f"policy sigma floor exp({log_std_min}) is not below the ceiling")
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.log_std_min = float(log_std_min)
        self.body = _hidden_stack(obs_dim, hidden, False)
        self.out = _small_init(nn.Linear(hidden[-1], act_dim))
        self.log_std = _small_init(nn.Linear(hidden[-1], act_dim))
        with torch.no_grad():  # sigma(x) starts at INIT_STD everywhere (or mid-range)
            low = self.log_std_min
            start = math.log(INIT_STD) if math.log(INIT_STD) > low else 0.5 * (low + LOG_STD_MAX)
            frac = (start - low) / (LOG_STD_MAX - low)
            self.log_std.bias.fill_(math.log(frac / (1.0 - frac)))

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The pre-tanh mean m(x) and log sigma(x)."""
        h = self.body(obs)
        return self.out(h), bounded_log_std(self.log_std(h), self.log_std_min)


class ValueNetwork(nn.Module):
    def __init__(self, obs_dim: int, hidden: list[int]) -> None:
        super().__init__()
        self.body = _hidden_stack(obs_dim, hidden, False)
        self.out = _small_init(nn.Linear(hidden[-1], 1))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(obs))[..., 0]


class DynamicsNetwork(nn.Module):
    """x' = x + f(x, u) + diag(sigma_f) eta: a one-step model with additive per-dimension
    Gaussian noise, so the noise behind an observed x' is unique (:meth:`infer_noise`)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int]) -> None:
        super().__init__()
        self.body = _hidden_stack(obs_dim + act_dim, hidden, False)
        self.out = _small_init(nn.Linear(hidden[-1], obs_dim))
        self.log_std = nn.Parameter(torch.full((obs_dim,), math.log(0.1)))

    def noise_log_std(self) -> torch.Tensor:
        return torch.clamp(self.log_std, min=MODEL_LOG_STD_MIN)

    def mean(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return obs + self.out(self.body(torch.cat([obs, action], dim=-1)))

    def step(self, obs: torch.Tensor, action: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
        return self.mean(obs, action) + torch.exp(self.noise_log_std()) * eta

    def infer_noise(
        self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor
    ) -> torch.Tensor:
        """The eta with step(obs, action, eta) == next_obs."""
        return (next_obs - self.mean(obs, action)) * torch.exp(-self.noise_log_std())

    def nll(self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood of x' (maximum-likelihood fit of f and sigma_f)."""
        return -gaussian_log_prob(next_obs, self.mean(obs, action), self.noise_log_std()).mean()


class RewardNetwork(nn.Module):
    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int]) -> None:
        super().__init__()
        self.body = _hidden_stack(2 * obs_dim + act_dim, hidden, False)
        self.out = _small_init(nn.Linear(hidden[-1], 1))

    def forward(
        self, obs: torch.Tensor, action: torch.Tensor, next_obs: torch.Tensor
    ) -> torch.Tensor:
        return self.out(self.body(torch.cat([obs, action, next_obs], dim=-1)))[..., 0]


class SVGNetworks(nn.Module):
    """Policy (``actor``, all the policy node needs), V, the model and the reward model."""

    def __init__(
        self, obs_dim: int, act_dim: int, hidden: list[int], log_std_min: float = LOG_STD_MIN
    ) -> None:
        super().__init__()
        hidden = list(hidden)
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.actor = GaussianPolicy(obs_dim, act_dim, hidden, log_std_min)
        self.value = ValueNetwork(obs_dim, hidden)
        self.model = DynamicsNetwork(obs_dim, act_dim, hidden)
        self.reward = RewardNetwork(obs_dim, act_dim, hidden)

    def mu(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.actor(obs)[0])


def svg1_value(
    policy: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
    model: DynamicsNetwork,
    reward_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    value_fn: Callable[[torch.Tensor], torch.Tensor],
    obs: torch.Tensor,
    action: torch.Tensor,
    next_obs: torch.Tensor,
    terminal: torch.Tensor,
    gamma: float,
    policy_out: tuple[torch.Tensor, torch.Tensor] | None = None,
    eta: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per transition r(x, u(theta), x'(theta)) + gamma (1 - terminal) V(x'(theta)), with the
    policy noise xi and the model noise eta inferred from the real (x, u, x') and held fixed:
    its gradient in the policy's parameters is SVG(1)'s (Heess et al. eq. 12/13, before w).

    ``model`` needs ``infer_noise`` and ``step`` (any one-step model with additive noise).
    ``policy_out`` (policy(obs)) and ``eta`` save the caller a forward pass it already made."""
    mean, log_std = policy(obs) if policy_out is None else policy_out
    std = torch.exp(log_std)
    xi = ((pre_squash(action) - mean) / std).detach()
    u = torch.tanh(mean + std * xi)
    if eta is None:
        eta = model.infer_noise(obs, action, next_obs)
    x1 = model.step(obs, u, eta.detach())
    return reward_fn(obs, u, x1) + gamma * (1.0 - terminal) * value_fn(x1)


class SVGAgent:
    """SVG(1)-ER on R: model, reward model, V (with a soft-updated target) and pi."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: AgentConfig, seed: int = 0) -> None:
        self.cfg = cfg
        self.obs_dim, self.act_dim = obs_dim, act_dim
        torch.manual_seed(seed)
        self.net = SVGNetworks(obs_dim, act_dim, cfg.hidden, math.log(cfg.policy_std_min))
        self.target = copy.deepcopy(self.net.value)
        self.target.eval()
        actor_lr = cfg.actor_lr if cfg.actor_lr is not None else cfg.lr
        self._actor_params = list(self.net.actor.parameters())
        self._value_params = list(self.net.value.parameters())
        self._model_params = list(self.net.model.parameters()) + list(self.net.reward.parameters())
        self.actor_optimizer = torch.optim.Adam(self._actor_params, lr=actor_lr, foreach=True)
        self.value_optimizer = torch.optim.Adam(self._value_params, lr=cfg.lr, foreach=True)
        self.model_optimizer = torch.optim.Adam(self._model_params, lr=cfg.lr, foreach=True)
        self._groups = (
            (self._model_params, self.model_optimizer),
            (self._value_params, self.value_optimizer),
            (self._actor_params, self.actor_optimizer),
        )
        self._target_params = list(self.target.parameters())
        self.device = torch.device("cpu")  # what the learner copies minibatches to
        self.updates = 0
        self.skipped_updates = 0
        self.last_loss = float("nan")  # V's TD loss (the learner reports it as the loss)
        self.last_model_loss = float("nan")
        self.last_actor_loss = float("nan")
        self.last_mean_weight = float("nan")

    # --- acting --------------------------------------------------------------------------
    @torch.no_grad()
    def _mean_log_std(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, log_std = self.net.actor(torch.as_tensor(np.asarray(obs, np.float32)))
        return mean.numpy().astype(np.float64), log_std.numpy().astype(np.float64)

    def mu_batch(self, obs: np.ndarray) -> np.ndarray:
        """The deterministic (evaluation) action tanh(m(x)) for a batch of states."""
        return np.tanh(self._mean_log_std(obs)[0])

    def act(self, obs: np.ndarray, noise=None) -> np.ndarray:
        """tanh(m(x)) when ``noise`` is None; else a sample tanh(m + sigma xi) of pi, with xi
        from ``noise`` (``exploration.kind: policy``, standard normal)."""
        mean, log_std = self._mean_log_std(np.asarray(obs)[None])
        if noise is None:
            return np.tanh(mean[0])
        return np.tanh(mean[0] + np.exp(log_std[0]) * policy_xi(noise))

    @torch.no_grad()
    def behaviour_log_prob(self, obs: np.ndarray, action: np.ndarray) -> float:
        """log pi(u|x) (pre-tanh density) under the current parameters: what the learner
        stores with a transition as mu's density. The action is rounded to float32 first, as
        R stores it, so a replayed on-policy row gets w = 1 exactly."""
        x = torch.as_tensor(np.asarray(obs, np.float32))[None]
        u = torch.as_tensor(np.asarray(action, np.float32))[None]
        mean, log_std = self.net.actor(x)
        return float(gaussian_log_prob(pre_squash(u), mean, log_std)[0])

    # --- learning ------------------------------------------------------------------------
    def update(self, batch: dict) -> float:
        """One minibatch step of model, reward model, V and pi; returns V's TD loss (NaN if
        the step was skipped: a non-finite loss or gradient anywhere skips all four)."""
        obs, action, reward, next_obs, terminal = (
            torch.as_tensor(batch[k], dtype=torch.float32) for k in BATCH_FIELDS
        )
        logp_b = batch.get(BEHAVIOUR_LOGP)
        logp_b = None if logp_b is None else torch.as_tensor(logp_b, dtype=torch.float32)
        net = self.net
        # model and reward model: maximum likelihood of x', least squares of r
        pred = net.model.mean(obs, action)
        log_sig = net.model.noise_log_std()
        model_loss = -gaussian_log_prob(next_obs, pred, log_sig).mean() + torch.mean(
            (net.reward(obs, action, next_obs) - reward) ** 2
        )
        eta = ((next_obs - pred) * torch.exp(-log_sig)).detach()  # the model noise of x'
        policy_out = net.actor(obs)
        with torch.no_grad():
            mean, log_std = (t.detach() for t in policy_out)
            logp_pi = gaussian_log_prob(pre_squash(action), mean, log_std)
            w = importance_weights(logp_pi, logp_b, self.cfg.importance_cap)
            y = value_target(reward, self.target(next_obs), terminal, self.cfg.gamma)
        value_loss = torch.mean(w * (y - net.value(obs)) ** 2)
        objective = svg1_value(
            net.actor, net.model, net.reward, net.value, obs, action, next_obs, terminal,
            self.cfg.gamma, policy_out=policy_out, eta=eta,
        )  # fmt: skip
        actor_loss = -torch.mean(w * objective)
        if not (
            torch.isfinite(model_loss) and torch.isfinite(value_loss) and torch.isfinite(actor_loss)
        ):
            self.skipped_updates += 1
            return float("nan")
        # pi's loss must not train V or the models, so its gradient is taken alone; the model
        # and value losses share no parameters and go in one pass.
        actor_grads = torch.autograd.grad(actor_loss, self._actor_params, retain_graph=True)
        other = self._model_params + self._value_params
        other_grads = torch.autograd.grad(model_loss + value_loss, other)
        for p, g in zip(self._actor_params + other, actor_grads + other_grads):
            p.grad = g
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip is not None else float("inf")
        finite = True
        for params, _opt in self._groups:
            norm = torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
            finite = finite and bool(torch.isfinite(norm))
        if not finite:
            for _params, opt in self._groups:
                opt.zero_grad(set_to_none=True)
            self.skipped_updates += 1
            return float("nan")
        for _params, opt in self._groups:
            opt.step()
            opt.zero_grad(set_to_none=True)
        self.soft_update()
        self.updates += 1
        self.last_loss = float(value_loss.detach())
        self.last_model_loss = float(model_loss.detach())
        self.last_actor_loss = float(actor_loss.detach())
        self.last_mean_weight = float(w.mean())  # how on-policy the minibatch was
        return self.last_loss

    @torch.no_grad()
    def soft_update(self) -> None:
        """V' <- tau V + (1 - tau) V'."""
        torch._foreach_lerp_(self._target_params, list(self.net.value.parameters()), self.cfg.tau)

    # --- persistence / transport ----------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "algorithm": "svg1er",
            "net": self.net.state_dict(),
            "target": self.target.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "value_optimizer": self.value_optimizer.state_dict(),
            "model_optimizer": self.model_optimizer.state_dict(),
            "updates": self.updates,
            "skipped_updates": self.skipped_updates,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("algorithm") != "svg1er":
            raise ValueError("agent state is not an SVG(1)-ER agent's (agent.algorithm differs)")
        self.net.load_state_dict(state["net"])
        self.target.load_state_dict(state["target"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.value_optimizer.load_state_dict(state["value_optimizer"])
        self.model_optimizer.load_state_dict(state["model_optimizer"])
        self.updates = int(state["updates"])
        self.skipped_updates = int(state["skipped_updates"])

    def weight_arrays(self) -> dict[str, np.ndarray]:
        """The policy's weights (``actor.*``, mean and sigma heads): all a policy node needs."""
        return actor_arrays(self.net.actor)

    def load_weight_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Load published policy weights; ValueError on missing names, shapes or non-finite."""
        load_actor_arrays(self.net.actor, arrays)


def policy_xi(noise) -> np.ndarray:
    """The standard normal xi a stochastic policy scales; refuses any other exploration
    process (its samples would not come from pi, and pi's density is what R stores)."""
    if getattr(noise, "uses_lower", False):
        raise ValueError("precision exploration needs NAF's P(x); SVG(1)-ER has none")
    if not getattr(noise, "standard_normal", False):
        raise ValueError("SVG(1)-ER explores with its own policy: use exploration.kind policy")
    return noise.sample(None)
