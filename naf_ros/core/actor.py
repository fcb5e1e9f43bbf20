"""μ(x) and L(x) of a :class:`~naf_ros.core.networks.NAFNetwork` in plain numpy.

The same snapshot serves DDPG's actor (:class:`~naf_ros.core.ddpg.DDPGNetworks`): its μ is one
plain MLP with a tanh output, and it has no L(x) (precision noise is a config error there);
and SVG(1)-ER's Gaussian policy (:class:`~naf_ros.core.svg.SVGNetworks`): the same μ plus a
σ(x) head, so a training step samples tanh(m + σ ξ) with ξ from ``exploration.kind: policy``.

Why: acting evaluates one state at a time, and for a 2×200 network torch's per-operator
dispatch costs several times the arithmetic (about 0.3 ms against 0.03 ms here). A node that
must answer a joint state within a control period acts through this snapshot; learning stays
in torch. Only the trunks an output needs are evaluated (μ alone for OU/Gaussian noise).
"""

from __future__ import annotations

import numpy as np
from torch import nn

from naf_ros.core.ddpg import DDPGNetworks
from naf_ros.core.networks import GroupedBatchNorm, GroupedLinear, NAFNetwork
from naf_ros.core.svg import LOG_STD_MAX, SVGNetworks, policy_xi

V, MU, L = 0, 1, 2  # head order in NAFNetwork


class NumpyActor:
    """A read-only float64 copy of a network's weights, evaluated in eval mode.

    Batch norm uses its running statistics, exactly as ``NAFAgent.act`` does. Build a new one
    whenever the network's weights change.
    """

    def __init__(self, net: NAFNetwork | DDPGNetworks | SVGNetworks) -> None:
        self.act_dim = net.act_dim
        self.has_lower = isinstance(net, NAFNetwork)
        self.stochastic = isinstance(net, SVGNetworks)
        if isinstance(net, (DDPGNetworks, SVGNetworks)):
            self._init_ddpg(net)
            if self.stochastic:
                self._std_w = _np(net.actor.log_std.weight).T
                self._std_b = _np(net.actor.log_std.bias)
                self._log_std_min = net.actor.log_std_min  # agent.policy_std_min's log
            return
        self.max_log_diag = net.max_log_diag
        self.n_trunks = net.n_trunks
        self._layers: list[tuple[str, tuple[np.ndarray, ...]]] = []
        for layer in net.trunk:
            if isinstance(layer, GroupedLinear):
                self._layers.append(("linear", (_np(layer.weight), _np(layer.bias)[:, 0, :])))
            elif isinstance(layer, GroupedBatchNorm):
                bn, g, w = layer.bn, layer.groups, layer.width
                scale = _np(bn.weight) / np.sqrt(_np(bn.running_var) + bn.eps)
                shift = _np(bn.bias) - _np(bn.running_mean) * scale
                self._layers.append(("affine", (scale.reshape(g, w), shift.reshape(g, w))))
            elif isinstance(layer, nn.ReLU):
                self._layers.append(("relu", ()))
            else:  # a new layer type must be taught here, not silently skipped
                raise TypeError(f"NumpyActor: unsupported layer {type(layer).__name__}")
        self._head_w = _np(net.heads.weight)
        self._head_b = _np(net.heads.bias)[:, 0, :]
        self._n_l = net.head_sizes[L]
        self._rows, self._cols = np.tril_indices(self.act_dim)
        self._diag = self._rows == self._cols

    def _init_ddpg(self, net: DDPGNetworks | SVGNetworks) -> None:
        """DDPG's actor (or SVG's policy mean) as a one-trunk network with only the μ head
        filled in."""
        self.n_trunks = 1
        self._layers = []
        for layer in net.actor.body:
            if isinstance(layer, nn.Linear):
                self._layers.append(("linear", (_np(layer.weight).T[None], _np(layer.bias)[None])))
            elif isinstance(layer, nn.BatchNorm1d):
                scale = _np(layer.weight) / np.sqrt(_np(layer.running_var) + layer.eps)
                shift = _np(layer.bias) - _np(layer.running_mean) * scale
                self._layers.append(("affine", (scale[None], shift[None])))
            elif isinstance(layer, nn.ReLU):
                self._layers.append(("relu", ()))
            else:
                raise TypeError(f"NumpyActor: unsupported layer {type(layer).__name__}")
        w, b = _np(net.actor.out.weight).T, _np(net.actor.out.bias)
        self._head_w = np.zeros((3,) + w.shape)
        self._head_b = np.zeros((3,) + b.shape)
        self._head_w[MU], self._head_b[MU] = w, b

    def _head(self, obs: np.ndarray, head: int) -> np.ndarray:
        h = self._trunk(obs, 0 if self.n_trunks == 1 else head)
        return h @ self._head_w[head] + self._head_b[head]

    def _trunk(self, obs: np.ndarray, g: int) -> np.ndarray:
        h = obs
        for kind, params in self._layers:
            if kind == "linear":
                h = h @ params[0][g] + params[1][g]
            elif kind == "affine":
                h = h * params[0][g] + params[1][g]
            else:
                h = np.maximum(h, 0.0)
        return h

    def mu(self, obs: np.ndarray) -> np.ndarray:
        out = self._head(np.asarray(obs, np.float64), MU)
        return np.tanh(out[: self.act_dim])

    def lower(self, obs: np.ndarray) -> np.ndarray:
        if not self.has_lower:
            raise ValueError("L(x) needs a NAF network; DDPG's actor has none")
        raw = self._head(np.asarray(obs, np.float64), L)[: self._n_l]
        b = self.max_log_diag
        entries = np.where(self._diag, np.exp(b * np.tanh(raw / b)), raw)
        out = np.zeros((self.act_dim, self.act_dim))
        out[self._rows, self._cols] = entries
        return out

    def act(self, obs: np.ndarray, noise=None) -> np.ndarray:
        """μ(x) (+ noise), clipped to [-1, 1]: the same contract as ``NAFAgent.act``; for
        SVG's policy, with noise, a sample tanh(m + σ ξ) (``SVGAgent.act``)."""
        if self.stochastic and noise is not None:
            return self._sample(np.asarray(obs, np.float64), noise)
        mu = self.mu(obs)
        if noise is not None:
            lower = self.lower(obs) if getattr(noise, "uses_lower", False) else None
            mu = mu + noise.sample(lower)
        return np.clip(mu, -1.0, 1.0)

    def _sample(self, obs: np.ndarray, noise) -> np.ndarray:
        h = self._trunk(obs, 0)
        mean = h @ self._head_w[MU] + self._head_b[MU]
        sig = 0.5 * (np.tanh(0.5 * (h @ self._std_w + self._std_b)) + 1.0)  # sigmoid
        log_std = self._log_std_min + (LOG_STD_MAX - self._log_std_min) * sig
        return np.tanh(mean + np.exp(log_std) * policy_xi(noise))


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64)
