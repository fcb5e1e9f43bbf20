"""DDPG (Lillicrap et al. 2016), the baseline of the NAF paper's Table 1, on NAF's pipeline.

Why here and in this form: the paper compares NAF with DDPG using the same network sizes
(two hidden layers of 200 ReLU per output), the same I = 5 updates of *both* networks per
real step, Adam and soft target updates. :class:`DDPGAgent` therefore has the interface the
:class:`~naf_ros.core.learner.Learner`, the trainer and the ROS nodes use of
:class:`~naf_ros.core.naf.NAFAgent` (``update``, ``act``, ``mu_batch``, ``state_dict``,
``weight_arrays`` ...), so every loop, buffer, imagination rollout and node runs it unchanged.

- Critic target: y = r + gamma (1 - terminal) Q'(x', mu'(x')); a time-limit truncation is
  not terminal (callers pass terminal = 0 and the target bootstraps through it).
- Actor: ascend Q(x, mu(x)); its gradient is dQ/da at a = mu(x) times dmu/dtheta.
- Both gradients are taken at the same (pre-step) parameters and checked together, so a
  non-finite value anywhere skips the whole update and both networks keep their last good
  weights (the NAN-safety contract of ``NAFAgent.update``).
- The action joins the critic at its second hidden layer (as in Lillicrap et al.), or at the
  input when ``agent.hidden`` has one layer. Batch norm (``agent.batch_norm``) follows every
  hidden layer of the actor and the critic's layers before the action joins. Final layers
  start in ±3e-3 so mu starts near zero and Q near a constant.
- Learning rates: the critic uses ``agent.lr``, the actor ``agent.actor_lr`` (None: ``lr``).
  No L2 weight decay on the critic (NAF has none either; like for like).
- ``agent.shared_trunk`` and ``agent.max_log_diag`` are NAF's and have no effect here.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from naf_ros.config import AgentConfig
from naf_ros.core.weights import actor_arrays, load_actor_arrays

FINAL_INIT = 3e-3


def _hidden_stack(in_dim: int, hidden: list[int], batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    last = in_dim
    for width in hidden:
        layers.append(nn.Linear(last, width))
        if batch_norm:
            layers.append(nn.BatchNorm1d(width))
        layers.append(nn.ReLU())
        last = width
    return nn.Sequential(*layers)


def _small_init(layer: nn.Linear) -> nn.Linear:
    with torch.no_grad():
        layer.weight.uniform_(-FINAL_INIT, FINAL_INIT)
        layer.bias.uniform_(-FINAL_INIT, FINAL_INIT)
    return layer


class DDPGActor(nn.Module):
    """mu(x) = tanh(out(body(x))) in [-1, 1] (normalised actions, as NAF's mu)."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int], batch_norm: bool) -> None:
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.body = _hidden_stack(obs_dim, hidden, batch_norm)
        self.out = _small_init(nn.Linear(hidden[-1], act_dim))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.out(self.body(obs)))


class DDPGCritic(nn.Module):
    """Q(x, u): state layers, then the action joins (second hidden layer), then a linear Q."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: list[int], batch_norm: bool) -> None:
        super().__init__()
        split = 1 if len(hidden) >= 2 else 0
        self.state_layers = _hidden_stack(obs_dim, hidden[:split], batch_norm)
        state_width = hidden[split - 1] if split else obs_dim
        self.joint_layers = _hidden_stack(state_width + act_dim, hidden[split:], False)
        self.out = _small_init(nn.Linear(hidden[-1], 1))

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """The state-only part; computed once per batch and shared by Q(x, u) and Q(x, mu)."""
        return self.state_layers(obs)

    def q_from_features(self, h: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.out(self.joint_layers(torch.cat([h, action], dim=-1)))[:, 0]

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.q_from_features(self.features(obs), action)


class DDPGNetworks(nn.Module):
    """Actor and critic as one module, so online and target copies move together."""

    def __init__(
        self, obs_dim: int, act_dim: int, hidden: list[int], batch_norm: bool = False
    ) -> None:
        super().__init__()
        hidden = list(hidden)
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.actor = DDPGActor(obs_dim, act_dim, hidden, batch_norm)
        self.critic = DDPGCritic(obs_dim, act_dim, hidden, batch_norm)

    def mu(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor(obs)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.critic(obs, action)


def critic_target(
    reward: torch.Tensor, next_q: torch.Tensor, terminal: torch.Tensor, gamma: float
) -> torch.Tensor:
    """y = r + gamma (1 - terminal) Q'(x', mu'(x')): the product with (1 - terminal)."""
    return reward + gamma * (1.0 - terminal) * next_q


class DDPGAgent:
    """Online actor/critic, soft-updated targets, two Adam optimisers; actions in [-1, 1]."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: AgentConfig, seed: int = 0) -> None:
        self.cfg = cfg
        self.obs_dim, self.act_dim = obs_dim, act_dim
        torch.manual_seed(seed)
        self.net = DDPGNetworks(obs_dim, act_dim, cfg.hidden, cfg.batch_norm)
        self.target = copy.deepcopy(self.net)
        self.target.eval()
        actor_lr = cfg.actor_lr if cfg.actor_lr is not None else cfg.lr
        self._actor_params = list(self.net.actor.parameters())
        self._critic_params = list(self.net.critic.parameters())
        self.actor_optimizer = torch.optim.Adam(self._actor_params, lr=actor_lr, foreach=True)
        self.critic_optimizer = torch.optim.Adam(self._critic_params, lr=cfg.lr, foreach=True)
        self._params = list(self.net.parameters())
        self._target_params = list(self.target.parameters())
        self.device = torch.device("cpu")  # what the learner copies minibatches to
        self.updates = 0
        self.skipped_updates = 0
        self.last_loss = float("nan")
        self.last_actor_loss = float("nan")

    # --- acting --------------------------------------------------------------------------
    @torch.no_grad()
    def mu_batch(self, obs: np.ndarray) -> np.ndarray:
        """mu(x) for a batch of states, in eval mode (batch norm uses running statistics)."""
        actor = self.net.actor
        was_training = actor.training
        actor.eval()
        mu = actor(torch.as_tensor(np.asarray(obs, np.float32)))
        actor.train(was_training)
        return mu.numpy().astype(np.float64)

    def act(self, obs: np.ndarray, noise=None) -> np.ndarray:
        """mu(x) (+ noise), clipped to [-1, 1]; deterministic when ``noise`` is None."""
        mu = self.mu_batch(np.asarray(obs)[None])[0]
        if noise is not None:
            if getattr(noise, "uses_lower", False):
                raise ValueError("precision exploration needs NAF's P(x); DDPG has none")
            mu = mu + noise.sample(None)
        return np.clip(mu, -1.0, 1.0)

    # --- learning ------------------------------------------------------------------------
    def update(self, batch: dict[str, np.ndarray]) -> float:
        """One minibatch step of critic and actor; returns the critic loss, NaN if skipped.

        A non-finite loss or gradient of either network skips the step for both.
        """
        obs = torch.as_tensor(batch["obs"], dtype=torch.float32)
        action = torch.as_tensor(batch["action"], dtype=torch.float32)
        reward = torch.as_tensor(batch["reward"], dtype=torch.float32)
        next_obs = torch.as_tensor(batch["next_obs"], dtype=torch.float32)
        terminal = torch.as_tensor(batch["terminal"], dtype=torch.float32)
        with torch.no_grad():
            next_q = self.target.critic(next_obs, self.target.actor(next_obs))
            y = critic_target(reward, next_q, terminal, self.cfg.gamma)
        self.net.train()
        h = self.net.critic.features(obs)
        critic_loss = torch.mean((y - self.net.critic.q_from_features(h, action)) ** 2)
        # dQ/da at a = mu(x), chained into the actor; the critic is not moved by this loss.
        actor_loss = -self.net.critic.q_from_features(h, self.net.actor(obs)).mean()
        if not (torch.isfinite(critic_loss) and torch.isfinite(actor_loss)):
            self.skipped_updates += 1
            return float("nan")
        critic_grads = torch.autograd.grad(critic_loss, self._critic_params, retain_graph=True)
        actor_grads = torch.autograd.grad(actor_loss, self._actor_params)
        for p, g in zip(self._critic_params, critic_grads):
            p.grad = g
        for p, g in zip(self._actor_params, actor_grads):
            p.grad = g
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip is not None else float("inf")
        c_norm = torch.nn.utils.clip_grad_norm_(self._critic_params, max_norm, foreach=True)
        a_norm = torch.nn.utils.clip_grad_norm_(self._actor_params, max_norm, foreach=True)
        if not (torch.isfinite(c_norm) and torch.isfinite(a_norm)):
            self.critic_optimizer.zero_grad(set_to_none=True)
            self.actor_optimizer.zero_grad(set_to_none=True)
            self.skipped_updates += 1
            return float("nan")
        self.critic_optimizer.step()
        self.actor_optimizer.step()
        self.critic_optimizer.zero_grad(set_to_none=True)
        self.actor_optimizer.zero_grad(set_to_none=True)
        self.soft_update()
        self.updates += 1
        self.last_loss = float(critic_loss.detach())
        self.last_actor_loss = float(actor_loss.detach())
        return self.last_loss

    @torch.no_grad()
    def soft_update(self) -> None:
        """theta' <- tau theta + (1 - tau) theta' for actor and critic (and batch-norm stats)."""
        tau = self.cfg.tau
        torch._foreach_lerp_(self._target_params, self._params, tau)
        for b_t, b in zip(self.target.buffers(), self.net.buffers()):
            if b_t.dtype.is_floating_point:
                b_t.mul_(1.0 - tau).add_(b, alpha=tau)
            else:
                b_t.copy_(b)

    # --- persistence / transport ----------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "algorithm": "ddpg",
            "net": self.net.state_dict(),
            "target": self.target.state_dict(),
            "actor_optimizer": self.actor_optimizer.state_dict(),
            "critic_optimizer": self.critic_optimizer.state_dict(),
            "updates": self.updates,
            "skipped_updates": self.skipped_updates,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("algorithm") != "ddpg":
            raise ValueError("agent state is not a DDPG agent's (agent.algorithm differs)")
        self.net.load_state_dict(state["net"])
        self.target.load_state_dict(state["target"])
        self.actor_optimizer.load_state_dict(state["actor_optimizer"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.updates = int(state["updates"])
        self.skipped_updates = int(state["skipped_updates"])

    def weight_arrays(self) -> dict[str, np.ndarray]:
        """The online actor's weights (``actor.*``): all a policy node needs to act."""
        return actor_arrays(self.net.actor)

    def load_weight_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Load published actor weights; ValueError on missing names, shapes or non-finite."""
        load_actor_arrays(self.net.actor, arrays)
