"""One NAF update as a short, fixed sequence of tensor operations on preallocated buffers.

Why: at the paper's sizes (three 2x200 trunks, batch 64) an update is ~55 MFLOP, which a
core of the development machine's sgemm does in well under a millisecond; the rest of an
update's time was per-operation overhead (dispatch, allocation, views, the optimiser's
wrapper). Here every activation, gradient and scratch tensor is allocated once per batch
size, every view (transposes, the heads' slices, the target's V trunk) is made once, and
each step of the TD target, forward and hand-derived backward is one ``out=`` call (the
derivation is in :class:`FastNAFUpdate`'s docstring). On the CPU the quadratic form's ~25
small calls run in numpy on the same memory. The parameters, their gradients and Adam's
moments stay torch tensors in the flat buffers of :class:`naf_ros.core.naf.FlatAdam`, so
checkpoints are unchanged. ``test/test_fast_update.py`` holds it against autograd.
"""

from __future__ import annotations

import numpy as np
import torch

from naf_ros.core.networks import GroupedLinear, NAFNetwork

_threshold_backward = torch.ops.aten.threshold_backward.grad_input


def value_trunk(net: NAFNetwork) -> tuple[list, list, torch.Tensor, torch.Tensor]:
    """Views of ``net``'s V trunk and V head (group 0) as plain matrices: the weights and
    biases per layer, the head's weight column and bias. The TD target needs V alone, a
    third of the trunks' FLOPs."""
    lins = net.linears()
    weights = [lin.weight.detach()[0] for lin in lins]
    biases = [lin.bias.detach()[0] for lin in lins]
    return weights, biases, net.heads.weight.detach()[0, :, :1], net.heads.bias.detach()[0, :, :1]


class _Buffers:
    """Activations, gradients and scratch space for one batch size, with their views.

    The heads' output and everything after it is kept transposed, (outputs, batch): the
    heads are an (H x 6)-by-batch product that MKL runs ~5x faster as W^T h^T than as h W
    (a 6-column output is its slow case), and the quadratic form's small tensors then
    have the batch as their contiguous axis.
    """

    def __init__(self, net: NAFNetwork, batch: int) -> None:
        like = dict(dtype=net.heads.weight.dtype, device=net.heads.weight.device)
        groups, n, n_l = net.n_trunks, net.act_dim, net.head_sizes[2]
        width = net.heads.weight.shape[-1]
        widths = [lin.weight.shape[-1] for lin in net.linears()]
        self.obs = torch.empty(batch, net.obs_dim, **like)
        self.obs_g = self.obs.expand(groups, -1, -1)
        self.obs_g_t = self.obs_g.transpose(1, 2)
        # target V trunk, one group
        self.t_acts = [torch.empty(batch, w, **like) for w in widths]
        self.t_value = torch.empty(batch, 1, **like)
        self.t_value_flat = self.t_value[:, 0]
        self.y = torch.empty(batch, **like)
        self.not_done = torch.empty(batch, **like)
        self.ones_b = torch.ones(batch, **like)
        # online forward
        self.acts = [torch.empty(groups, batch, w, **like) for w in widths]
        self.acts_t = [a.transpose(1, 2) for a in self.acts]
        self.last = self.acts[-1] if groups == 3 else self.acts[-1].expand(3, -1, -1)
        self.last_t = self.last.transpose(1, 2)
        self.out_t = torch.empty(3, width, batch, **like)  # heads' output, transposed
        self.value = self.out_t[0, 0]
        self.mu_pre = self.out_t[1, :n]
        self.raw = self.out_t[2, :n_l]
        self.mu = torch.empty(n, batch, **like)
        self.t = torch.empty(n_l, batch, **like)
        self.exp = torch.empty(n_l, batch, **like)
        self.entries = torch.empty(n_l, batch, **like)
        self.d = torch.empty(n, batch, **like)
        self.d_rows = torch.empty(n_l, batch, **like)
        self.ld = torch.empty(n_l, batch, **like)
        self.z = torch.empty(n, batch, **like)
        self.zz = torch.empty(n, batch, **like)
        self.z_sq = torch.empty(batch, **like)
        self.err = torch.empty(batch, **like)
        # backward; the padded rows of g_out_t are never written and stay zero
        self.g_out_t = torch.zeros(3, width, batch, **like)
        self.g_out = self.g_out_t.transpose(1, 2)
        self.g_q = self.g_out_t[0, 0]
        self.g_mu_pre = self.g_out_t[1, :n]
        self.g_raw = self.g_out_t[2, :n_l]
        self.g_z = torch.empty(n, batch, **like)
        self.g_entry = torch.empty(n_l, batch, **like)
        self.g_ld = torch.empty(n_l, batch, **like)
        self.g_d = torch.empty(n, batch, **like)
        self.tanh_slope = torch.empty(n, batch, **like)
        self.scale = torch.empty(n_l, batch, **like)
        self.g_entry_d = torch.empty(n_l, batch, **like)
        self.g_head_w_t = torch.empty(3, width, widths[-1], **like)
        self.g_head_w_t_t = self.g_head_w_t.transpose(1, 2)
        self.g_heads_in = torch.empty(3, batch, widths[-1], **like)
        self.g_shared = torch.empty(1, batch, widths[-1], **like) if groups == 1 else None
        self.g_acts = [torch.empty(groups, batch, w, **like) for w in widths]
        self.ones_col = torch.ones(3, batch, 1, **like)
        self.minus_ones_n = torch.full((n, batch), -1.0, **like)
        self.ones_l = torch.ones(n_l, batch, **like)
        self.stats = torch.empty(2, **like)  # sum of squared errors, gradient norm
        self.sse, self.grad_norm = self.stats[0], self.stats[1]
        self.np = _NumpyViews(self) if self.stats.device.type == "cpu" else None


class _NumpyViews:
    """numpy arrays sharing memory with a :class:`_Buffers`' tensors (CPU only)."""

    def __init__(self, bufs: _Buffers) -> None:
        for name, value in vars(bufs).items():
            if isinstance(value, torch.Tensor):
                setattr(self, name, value.numpy())


class FastNAFUpdate:
    """The TD target, forward and hand-derived backward of a NAF update, without autograd.

    The loss is mean((y - Q(x, u))^2) with y = r + gamma (1 - terminal) V'(x') from the
    target's V trunk. The backward of the quadratic form is short when written out, with
    d = u - mu, z = L^T d, e = y - Q:

        dloss/dQ = -2 e / B,  dQ/dV = 1,  dQ/dz = -z,
        dL[i, j] = d_i dz_j (lower triangle),  dd = L dz,  dmu = -dd,
        d/draw of the diagonal exp(c tanh(raw / c)) = exp(...) (1 - tanh^2(raw / c)),

    then the three MLPs' standard backward as batched matmuls. z = L^T d is two
    tiny matmuls on the triangle's entries with one-hot selections (``row_pick``,
    ``col_sum``), without building L.

    Bound to an agent's online and target networks (no batch norm) and to the gradient
    views of its :class:`FlatAdam`; reads the weights in place, so loads and optimiser
    steps are seen without rebinding. Any number of trunk layers, separate or shared trunk.
    """

    def __init__(
        self,
        net: NAFNetwork,
        target: NAFNetwork,
        grads: list[torch.Tensor],
        gamma: float,
        numpy: bool | None = None,
    ) -> None:
        if not net.fusable:
            raise ValueError("FastNAFUpdate needs a network without batch norm")
        self.net, self.gamma = net, float(gamma)
        self.n_trunks = net.n_trunks
        lins: list[GroupedLinear] = net.linears()
        self.w = [lin.weight.detach() for lin in lins]
        self.b = [lin.bias.detach() for lin in lins]
        self.w_t = [w.transpose(1, 2) for w in self.w]
        self.head_w_t = net.heads.weight.detach().transpose(1, 2)
        self.head_b_t = net.heads.bias.detach().transpose(1, 2)
        self.t_w, self.t_b, self.t_head_w, self.t_head_b = value_trunk(target)
        self.grads = grads
        self.g_w = grads[0:-2:2]
        self.g_b = grads[1:-2:2]
        self.g_head_w = grads[-2]
        self.g_head_b_col = grads[-1].view(3, -1, 1)  # (3, 1, m) and (3, m, 1): one layout
        self.bound = net.max_log_diag
        # transposed layout: d_rows = row_pick^T d, z = col_sum^T (L's entries * d_rows)
        self.is_diag = net.is_diag.view(-1, 1)
        self.row_pick = net.row_pick.contiguous()
        self.row_pick_t = net.row_pick.t().contiguous()
        self.col_sum_t = net.col_sum.t().contiguous()
        self.minus_col_sum = (-net.col_sum).contiguous()
        self._buffers: dict[int, _Buffers] = {}
        on_cpu = self.head_w_t.device.type == "cpu"
        self.numpy = on_cpu if numpy is None else bool(numpy)
        if self.numpy and not on_cpu:
            raise ValueError("FastNAFUpdate(numpy=True) needs the network on the CPU")
        self._quadratic = self._quadratic_numpy if self.numpy else self._quadratic_torch
        if on_cpu:
            self.np_is_diag = self.is_diag.numpy()
            self.np_off_diag = ~self.np_is_diag
            self.np_row_pick = self.row_pick.numpy()
            self.np_row_pick_t = self.row_pick_t.numpy()
            self.np_col_sum_t = self.col_sum_t.numpy()
            self.np_minus_col_sum = self.minus_col_sum.numpy()

    def buffers(self, batch: int) -> _Buffers:
        bufs = self._buffers.get(batch)
        if bufs is None:
            bufs = self._buffers[batch] = _Buffers(self.net, batch)
        return bufs

    def _quadratic_torch(self, s: _Buffers, action: torch.Tensor, B: int) -> None:
        """Loss and gradient of the quadratic form, from the heads' output to theirs."""
        # the quadratic form: mu = tanh(.), L's entries (exp(c tanh(raw / c)) on the
        # diagonal), d = u - mu, z = L^T d, Q = V - |z|^2 / 2, err = y - Q
        c = self.bound
        torch.tanh(s.mu_pre, out=s.mu)
        torch.div(s.raw, c, out=s.t).tanh_()
        torch.mul(s.t, c, out=s.exp).exp_()
        torch.where(self.is_diag, s.exp, s.raw, out=s.entries)
        torch.sub(action.t(), s.mu, out=s.d)  # (the one view made per call)
        torch.mm(self.row_pick_t, s.d, out=s.d_rows)  # d_i for each entry L[i, j]
        torch.mul(s.entries, s.d_rows, out=s.ld)
        torch.mm(self.col_sum_t, s.ld, out=s.z)  # z_j = sum_i L[i, j] d_i
        torch.mul(s.z, s.z, out=s.zz)
        torch.sum(s.zz, 0, out=s.z_sq)
        torch.sub(s.y, s.value, out=s.err).add_(s.z_sq, alpha=0.5)
        torch.dot(s.err, s.err, out=s.sse)
        # backward of the loss and the quadratic form into the heads' output gradient
        torch.mul(s.err, -2.0 / B, out=s.g_q)
        torch.mul(s.z, s.g_q, out=s.g_z)
        torch.mm(self.minus_col_sum, s.g_z, out=s.g_entry)  # dloss/dz_j (dQ/dz = -z), per entry
        torch.mul(s.g_entry, s.entries, out=s.g_ld)
        torch.mm(self.row_pick, s.g_ld, out=s.g_d)  # L dz
        torch.addcmul(s.minus_ones_n, s.mu, s.mu, out=s.tanh_slope)
        torch.mul(s.g_d, s.tanh_slope, out=s.g_mu_pre)  # dmu = -dd, through tanh
        torch.addcmul(s.ones_l, s.t, s.t, value=-1.0, out=s.scale).mul_(s.exp)
        torch.where(self.is_diag, s.scale, s.ones_l, out=s.scale)
        torch.mul(s.g_entry, s.d_rows, out=s.g_entry_d)  # dL[i, j] = d_i dz_j
        torch.mul(s.g_entry_d, s.scale, out=s.g_raw)

    def _quadratic_numpy(self, s: _Buffers, action: torch.Tensor, B: int) -> None:
        """:meth:`_quadratic_torch` in numpy on the same memory (CPU only): these ~25 calls
        on tensors of a few hundred floats cost ~1 us each in numpy against ~3 in torch."""
        with np.errstate(all="ignore"):  # a non-finite loss is the caller's to handle
            self._quadratic_numpy_body(s.np, action.numpy().T, B)

    def _quadratic_numpy_body(self, n: _NumpyViews, action_t: np.ndarray, B: int) -> None:
        c, is_diag, off_diag = self.bound, self.np_is_diag, self.np_off_diag
        np.tanh(n.mu_pre, out=n.mu)
        np.tanh(np.divide(n.raw, c, out=n.t), out=n.t)
        np.exp(np.multiply(n.t, c, out=n.exp), out=n.exp)
        np.copyto(n.entries, n.raw)
        np.copyto(n.entries, n.exp, where=is_diag)
        np.subtract(action_t, n.mu, out=n.d)
        np.matmul(self.np_row_pick_t, n.d, out=n.d_rows)  # d_i for each entry L[i, j]
        np.multiply(n.entries, n.d_rows, out=n.ld)
        np.matmul(self.np_col_sum_t, n.ld, out=n.z)  # z_j = sum_i L[i, j] d_i
        np.multiply(n.z, n.z, out=n.zz)
        np.sum(n.zz, 0, out=n.z_sq)
        np.subtract(n.y, n.value, out=n.err)
        n.err += np.multiply(n.z_sq, 0.5, out=n.z_sq)
        n.sse[...] = np.dot(n.err, n.err)
        np.multiply(n.err, -2.0 / B, out=n.g_q)
        np.multiply(n.z, n.g_q, out=n.g_z)
        np.matmul(self.np_minus_col_sum, n.g_z, out=n.g_entry)  # dloss/dz_j, per entry
        np.multiply(n.g_entry, n.entries, out=n.g_ld)
        np.matmul(self.np_row_pick, n.g_ld, out=n.g_d)  # L dz
        np.multiply(n.mu, n.mu, out=n.tanh_slope)
        n.tanh_slope -= 1.0
        np.multiply(n.g_d, n.tanh_slope, out=n.g_mu_pre)  # dmu = -dd, through tanh
        np.multiply(n.t, n.t, out=n.scale)
        np.subtract(1.0, n.scale, out=n.scale)
        n.scale *= n.exp
        np.copyto(n.scale, 1.0, where=off_diag)
        np.multiply(n.g_entry, n.d_rows, out=n.g_entry_d)  # dL[i, j] = d_i dz_j
        np.multiply(n.g_entry_d, n.scale, out=n.g_raw)

    @torch.no_grad()
    def loss_and_grad(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        reward: torch.Tensor,
        next_obs: torch.Tensor,
        terminal: torch.Tensor,
        flat_grad: torch.Tensor,
    ) -> torch.Tensor:
        """Write d loss / d theta into the gradient views; return ``stats`` = (sum of squared
        TD errors, gradient norm), still on the device (the caller's one host sync reads it).
        """
        B = obs.shape[0]
        s = self.buffers(B)
        s.obs.copy_(obs)
        # target: y = r + gamma (1 - terminal) V'(x'), through the V trunk alone
        h = next_obs
        for w, b, a in zip(self.t_w, self.t_b, s.t_acts):
            torch.addmm(b, h, w, out=a).relu_()
            h = a
        torch.addmm(self.t_head_b, h, self.t_head_w, out=s.t_value)
        torch.sub(s.ones_b, terminal, out=s.not_done)
        torch.addcmul(reward, s.not_done, s.t_value_flat, value=self.gamma, out=s.y)
        # online forward, keeping the activations
        h = s.obs_g
        for w, b, a in zip(self.w, self.b, s.acts):
            torch.baddbmm(b, h, w, out=a).relu_()
            h = a
        torch.baddbmm(self.head_b_t, self.head_w_t, s.last_t, out=s.out_t)
        self._quadratic(s, action, B)
        # heads and trunks, straight into the gradient views
        torch.bmm(s.g_out_t, s.last, out=s.g_head_w_t)
        self.g_head_w.copy_(s.g_head_w_t_t)
        torch.bmm(s.g_out_t, s.ones_col, out=self.g_head_b_col)
        g = torch.bmm(s.g_out, self.head_w_t, out=s.g_heads_in)
        if self.n_trunks == 1:
            g = torch.sum(g, 0, keepdim=True, out=s.g_shared)
        for k in range(len(self.w) - 1, -1, -1):
            _threshold_backward(g, s.acts[k], 0, grad_input=g)
            torch.bmm(s.acts_t[k - 1] if k else s.obs_g_t, g, out=self.g_w[k])
            torch.sum(g, 1, keepdim=True, out=self.g_b[k])
            if k:
                g = torch.bmm(g, self.w_t[k], out=s.g_acts[k - 1])
        torch.linalg.vector_norm(flat_grad, out=s.grad_norm)
        return s.stats
