"""The normalized advantage function Q(x, u) = V(x) - 1/2 (u - mu(x))^T P(x) (u - mu(x)).

P(x) = L(x) L(x)^T with L lower-triangular and a bounded, exponentiated diagonal. L is a
function of the state only (feeding the action into L is a known bug in public NAF code).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def relu_backward(grad: torch.Tensor, result: torch.Tensor) -> torch.Tensor:
    """The gradient through a ReLU from its output: autograd's own kernel, one pass (a
    comparison plus ``where`` is two, and ~8x slower on a small CPU)."""
    return torch.ops.aten.threshold_backward(grad, result, 0)


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
        # One-hot selections for the fused path: (d @ row_pick)[:, k] = d[:, rows[k]] and
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

    # --- the fused update path (no autograd) ------------------------------------------------
    @property
    def fusable(self) -> bool:
        """Whether :meth:`q_loss_and_grad` applies (batch norm takes the autograd path)."""
        return all(isinstance(m, (GroupedLinear, nn.ReLU)) for m in self.trunk)

    def _linears(self) -> list[GroupedLinear]:
        return [m for m in self.trunk if isinstance(m, GroupedLinear)]

    def value_only(self, obs: torch.Tensor) -> torch.Tensor:
        """V(x) through the V trunk alone: the target's part of an update.

        :meth:`value` runs all three trunks and keeps one; this runs a third of the FLOPs.
        Only for networks without batch norm (:attr:`fusable`).
        """
        h = obs.unsqueeze(0)
        for lin in self._linears():
            h = torch.baddbmm(lin.bias[:1], h, lin.weight[:1]).relu_()
        return torch.baddbmm(self.heads.bias[:1], h, self.heads.weight[:1])[0, :, 0]

    def q_loss_and_grad(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        y: torch.Tensor,
        grads: list[torch.Tensor],
    ) -> torch.Tensor:
        """mean((y - Q(x, u))^2), with its gradient written into ``grads`` (one per parameter,
        in :meth:`parameters` order) by a hand-derived backward pass.

        Why: at the paper's sizes an update is ~50 MFLOP, and autograd's per-node bookkeeping
        costs more than the arithmetic on a small CPU. The backward of the quadratic form is
        short when written out, with d = u - mu, z = L^T d, e = y - Q:

            dloss/dQ = -2 e / B,  dQ/dV = 1,  dQ/dz = -z,
            dL[i, j] = d_i dz_j (lower triangle),  dd = L dz,  dmu = -dd,
            d/draw of the diagonal exp(c tanh(raw / c)) = exp(...) (1 - tanh^2(raw / c)),

        then the three MLPs' standard backward as batched matmuls. Call under ``no_grad``;
        ``test/test_fast_update.py`` holds it against autograd. Needs :attr:`fusable`.
        """
        linears = self._linears()
        n, n_l = self.act_dim, self.head_sizes[2]
        batch = obs.shape[0]
        # forward, keeping the activations
        acts = [obs.unsqueeze(0).expand(self.n_trunks, -1, -1)]
        for lin in linears:
            acts.append(torch.baddbmm(lin.bias, acts[-1], lin.weight).relu_())
        last = acts[-1] if self.n_trunks == 3 else acts[-1].expand(3, -1, -1)
        out = torch.baddbmm(self.heads.bias, last, self.heads.weight)
        value = out[0, :, 0]
        mu = torch.tanh(out[1, :, :n])
        raw = out[2, :, :n_l]
        bound = self.max_log_diag
        t = torch.tanh(raw / bound)
        diag = torch.exp(bound * t)
        entries = torch.where(self.is_diag, diag, raw)  # L's lower triangle, row-major
        d = action - mu
        d_rows = d @ self.row_pick  # d_i for each entry L[i, j]
        z = (entries * d_rows) @ self.col_sum  # z_j = sum_i L[i, j] d_i = (L^T d)_j
        q = value + -0.5 * (z * z).sum(-1)
        err = y - q
        loss = torch.mean(err**2)
        # backward of the loss and the quadratic form, into the heads' output gradient
        g_out = torch.zeros_like(out)
        g_q = torch.mul(err, -2.0 / batch, out=g_out[0, :, 0])
        g_entry_sum = (z * -g_q.unsqueeze(-1)) @ self.col_sum.T  # dQ/dz_j = -z_j, per entry
        g_d = (g_entry_sum * entries) @ self.row_pick.T  # L dz
        torch.mul(g_d, mu * mu - 1.0, out=g_out[1, :, :n])  # dmu = -dd, through tanh
        scale = torch.where(self.is_diag, diag * (1.0 - t * t), 1.0)
        torch.mul(g_entry_sum * d_rows, scale, out=g_out[2, :, :n_l])  # dL[i, j] = d_i dz_j
        # backward of the heads and trunks, straight into the gradient buffers
        torch.bmm(last.transpose(1, 2), g_out, out=grads[-2])
        torch.sum(g_out, 1, keepdim=True, out=grads[-1])
        g_h = torch.bmm(g_out, self.heads.weight.transpose(1, 2))
        if self.n_trunks == 1:
            g_h = g_h.sum(0, keepdim=True)
        for k in range(len(linears) - 1, -1, -1):
            g_h = relu_backward(g_h, acts[k + 1])
            torch.bmm(acts[k].transpose(1, 2), g_h, out=grads[2 * k])
            torch.sum(g_h, 1, keepdim=True, out=grads[2 * k + 1])
            if k:
                g_h = torch.bmm(g_h, linears[k].weight.transpose(1, 2))
        return loss

    def mu(self, obs: torch.Tensor) -> torch.Tensor:
        return self.value_mu_l(obs)[1]
