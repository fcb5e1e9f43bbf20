"""The normalized advantage function Q(x, u) = V(x) - 1/2 (u - mu(x))^T P(x) (u - mu(x)).

P(x) = L(x) L(x)^T with L lower-triangular and a bounded, exponentiated diagonal. L is a
function of the state only (feeding the action into L is a known bug in public NAF code).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class GroupedLinear(nn.Module):
    """``groups`` independent linear layers evaluated with one batched matmul.

    The V, mu and L trunks are separate networks (paper §6); running them as one grouped
    layer cuts the per-update operator count threefold, which dominates on small CPUs.
    """

    def __init__(self, groups: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(groups, in_dim, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(groups, 1, out_dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (G, B, in) -> (G, B, out)
        return torch.baddbmm(self.bias, x, self.weight)


class GroupedBatchNorm(nn.Module):
    """Batch norm with separate statistics per group and feature."""

    def __init__(self, groups: int, width: int) -> None:
        super().__init__()
        self.groups, self.width = groups, width
        self.bn = nn.BatchNorm1d(groups * width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g, b, w = x.shape
        y = self.bn(x.permute(1, 0, 2).reshape(b, g * w))
        return y.reshape(b, g, w).permute(1, 0, 2)


def grouped_mlp(groups: int, in_dim: int, hidden: list[int], batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    last = in_dim
    for width in hidden:
        layers.append(GroupedLinear(groups, last, width))
        if batch_norm:
            layers.append(GroupedBatchNorm(groups, width))
        layers.append(nn.ReLU())
        last = width
    return nn.Sequential(*layers)


class NAFNetwork(nn.Module):
    """V, mu and L heads; separate 2x200 ReLU trunks by default (paper §6), shared optional.

    ``mu`` is tanh-squashed to [-1, 1] (actions are normalised; the caller scales to the
    environment's bounds). The log-diagonal of L is soft-bounded to ``±max_log_diag`` with a
    scaled tanh, so exp() can neither overflow nor kill the gradient the way a hard clamp does.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: list[int] | tuple[int, ...] = (200, 200),
        shared_trunk: bool = False,
        batch_norm: bool = False,
        max_log_diag: float = 4.0,
    ) -> None:
        super().__init__()
        self.obs_dim, self.act_dim = obs_dim, act_dim
        self.max_log_diag = float(max_log_diag)
        hidden = list(hidden)
        n_l = act_dim * (act_dim + 1) // 2
        self.n_trunks = 1 if shared_trunk else 3
        self.trunk = grouped_mlp(self.n_trunks, obs_dim, hidden, batch_norm)
        # Heads for V (1), mu (n) and L (n(n+1)/2) as one grouped layer padded to the widest.
        self.head_sizes = (1, act_dim, n_l)
        self.heads = GroupedLinear(3, hidden[-1], max(self.head_sizes))
        rows, cols = torch.tril_indices(act_dim, act_dim)
        self.register_buffer("tril_rows", rows, persistent=False)
        self.register_buffer("tril_cols", cols, persistent=False)
        self.register_buffer("is_diag", rows == cols, persistent=False)
        # One-hot selections for the fused path (naf_fast): (d @ row_pick)[:, k] = d[:, rows[k]] and
        # (v @ col_sum)[:, j] = sum of v[:, k] with cols[k] == j, so z = L^T d is two tiny
        # matmuls on the triangle's entries, without building L.
        n_l = len(rows)
        pick = torch.zeros(act_dim, n_l)
        pick[rows, torch.arange(n_l)] = 1.0
        col_sum = torch.zeros(n_l, act_dim)
        col_sum[torch.arange(n_l), cols] = 1.0
        self.register_buffer("row_pick", pick, persistent=False)
        self.register_buffer("col_sum", col_sum, persistent=False)
        # Small initial mu/L outputs: a near-zero mu and near-identity L start stably.
        with torch.no_grad():
            self.heads.weight[1:].uniform_(-3e-3, 3e-3)
            self.heads.bias[1:].zero_()

    def _heads(self, obs: torch.Tensor, which: slice = slice(0, 3)) -> torch.Tensor:
        h = self.trunk(obs.unsqueeze(0).expand(self.n_trunks, -1, -1))
        if self.n_trunks == 1:
            h = h.expand(3, -1, -1)
        h = h[which]
        return torch.baddbmm(self.heads.bias[which], h, self.heads.weight[which])

    def value_mu_l(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """V (B,), mu (B, n) and lower-triangular L (B, n, n) for a batch of states."""
        out = self._heads(obs)
        value = out[0, :, 0]
        mu = torch.tanh(out[1, :, : self.act_dim])
        raw = out[2, :, : self.head_sizes[2]]
        bound = self.max_log_diag
        entries = torch.where(self.is_diag, torch.exp(bound * torch.tanh(raw / bound)), raw)
        lower = obs.new_zeros(obs.shape[0], self.act_dim, self.act_dim)
        lower[:, self.tril_rows, self.tril_cols] = entries
        return value, mu, lower

    @staticmethod
    def precision(lower: torch.Tensor) -> torch.Tensor:
        """P = L L^T (a matrix product; an elementwise product would give a diagonal P)."""
        return lower @ lower.transpose(-1, -2)

    @staticmethod
    def advantage(action: torch.Tensor, mu: torch.Tensor, lower: torch.Tensor) -> torch.Tensor:
        # (u-mu)^T L L^T (u-mu) = |L^T (u-mu)|^2: no explicit P needed.
        z = (lower.transpose(-1, -2) @ (action - mu).unsqueeze(-1)).squeeze(-1)
        return -0.5 * (z * z).sum(-1)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        value, mu, lower = self.value_mu_l(obs)
        return value + self.advantage(action, mu, lower)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        if self.n_trunks == 1:
            return self.value_mu_l(obs)[0]
        return self._heads(obs, slice(0, 1))[0, :, 0]

    # --- what the fused update path (naf_fast, no autograd) needs ---------------------------
    @property
    def fusable(self) -> bool:
        """Whether :class:`naf_ros.core.naf_fast.FastNAFUpdate` applies (batch norm takes the
        autograd path)."""
        return all(isinstance(m, (GroupedLinear, nn.ReLU)) for m in self.trunk)

    def linears(self) -> list[GroupedLinear]:
        """The trunk's grouped linear layers, input first."""
        return [m for m in self.trunk if isinstance(m, GroupedLinear)]

    def mu(self, obs: torch.Tensor) -> torch.Tensor:
        return self.value_mu_l(obs)[1]
