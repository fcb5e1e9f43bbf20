"""NAF agent (paper Algorithm 1): Q-learning with a normalized advantage function.

Target y = r + gamma * (1 - terminal) * V'(x'). Truncation by a time limit is not terminal,
so callers pass terminal=0 for it and the target bootstraps through.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from naf_ros.config import AgentConfig
from naf_ros.core.networks import NAFNetwork


def td_target(
    reward: torch.Tensor, next_value: torch.Tensor, terminal: torch.Tensor, gamma: float
) -> torch.Tensor:
    """y = r + gamma (1 - terminal) V'(x'): the product with (1 - terminal), never a sum."""
    return reward + gamma * (1.0 - terminal) * next_value


class NAFAgent:
    """Online network, soft-updated target network and Adam, on normalised actions [-1, 1]."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: AgentConfig, seed: int = 0) -> None:
        self.cfg = cfg
        self.obs_dim, self.act_dim = obs_dim, act_dim
        torch.manual_seed(seed)
        self.net = NAFNetwork(
            obs_dim, act_dim, cfg.hidden, cfg.shared_trunk, cfg.batch_norm, cfg.max_log_diag
        )
        self.target = copy.deepcopy(self.net)
        self.target.eval()
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=cfg.lr, foreach=True)
        self._params = list(self.net.parameters())
        self._target_params = list(self.target.parameters())
        self.updates = 0
        self.skipped_updates = 0
        self.last_loss = float("nan")

    # --- acting --------------------------------------------------------------------------
    @torch.no_grad()
    def mu_and_lower(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """mu(x) and L(x) for one state, in eval mode (batch norm uses running statistics)."""
        was_training = self.net.training
        self.net.eval()
        x = torch.as_tensor(np.asarray(obs, np.float32)).unsqueeze(0)
        _, mu, lower = self.net.value_mu_l(x)
        self.net.train(was_training)
        return mu[0].numpy().astype(np.float64), lower[0].numpy().astype(np.float64)

    @torch.no_grad()
    def mu_batch(self, obs: np.ndarray) -> np.ndarray:
        was_training = self.net.training
        self.net.eval()
        mu = self.net.mu(torch.as_tensor(np.asarray(obs, np.float32)))
        self.net.train(was_training)
        return mu.numpy().astype(np.float64)

    @torch.no_grad()
    def lower_batch(self, obs: np.ndarray) -> np.ndarray:
        """L(x) for a batch of states (precision exploration of imagined rollouts)."""
        was_training = self.net.training
        self.net.eval()
        _, _, lower = self.net.value_mu_l(torch.as_tensor(np.asarray(obs, np.float32)))
        self.net.train(was_training)
        return lower.numpy().astype(np.float64)

    def act(self, obs: np.ndarray, noise=None) -> np.ndarray:
        """mu(x) (+ noise), clipped to [-1, 1]; deterministic when ``noise`` is None."""
        mu, lower = self.mu_and_lower(obs)
        if noise is not None:
            mu = mu + noise.sample(lower)
        return np.clip(mu, -1.0, 1.0)

    # --- learning ------------------------------------------------------------------------
    def update(self, batch: dict[str, np.ndarray]) -> float:
        """One minibatch step of the Q loss; returns the loss, or NaN if the step was skipped.

        A non-finite loss or gradient skips the step, so the weights stay the last good ones.
        """
        obs = torch.as_tensor(batch["obs"], dtype=torch.float32)
        action = torch.as_tensor(batch["action"], dtype=torch.float32)
        reward = torch.as_tensor(batch["reward"], dtype=torch.float32)
        next_obs = torch.as_tensor(batch["next_obs"], dtype=torch.float32)
        terminal = torch.as_tensor(batch["terminal"], dtype=torch.float32)
        with torch.no_grad():
            y = td_target(reward, self.target.value(next_obs), terminal, self.cfg.gamma)
        self.net.train()
        q = self.net(obs, action)
        loss = torch.mean((y - q) ** 2)
        if not torch.isfinite(loss):
            self.skipped_updates += 1
            return float("nan")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # One fused norm both detects non-finite gradients and (optionally) clips them.
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip is not None else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self._params, max_norm, foreach=True)
        if not torch.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            self.skipped_updates += 1
            return float("nan")
        self.optimizer.step()
        self.soft_update()
        self.updates += 1
        self.last_loss = float(loss.detach())
        return self.last_loss

    @torch.no_grad()
    def soft_update(self) -> None:
        """theta' <- tau theta + (1 - tau) theta'; batch-norm running statistics follow too."""
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
            "net": self.net.state_dict(),
            "target": self.target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "updates": self.updates,
            "skipped_updates": self.skipped_updates,
        }

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.target.load_state_dict(state["target"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])
        self.skipped_updates = int(state["skipped_updates"])

    def weight_arrays(self) -> dict[str, np.ndarray]:
        """Online-network weights as named float arrays (what the learner publishes)."""
        return {k: v.detach().numpy().copy() for k, v in self.net.state_dict().items()}

    def load_weight_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Load published weights; raises ValueError on missing names, shapes or non-finite."""
        own = self.net.state_dict()
        missing = sorted(set(own) - set(arrays))
        extra = sorted(set(arrays) - set(own))
        if missing or extra:
            raise ValueError(f"weights: missing {missing[:3]}, unexpected {extra[:3]}")
        new = {}
        for name, ref in own.items():
            arr = np.asarray(arrays[name])
            if arr.shape != tuple(ref.shape):
                raise ValueError(
                    f"weights: {name} has shape {arr.shape}, expected {tuple(ref.shape)}"
                )
            if not np.isfinite(arr).all():
                raise ValueError(f"weights: {name} holds non-finite values")
            new[name] = torch.as_tensor(arr, dtype=ref.dtype)
        self.net.load_state_dict(new)
