"""Global neural-network dynamics: the paper's "-NN" variant of imagination rollouts.

A time-invariant MLP trained on all data seen so far, unlike the time-varying linear fit
that sees only the latest episodes. ``linearize`` turns it into a
:class:`~naf_ros.core.dynamics.LinearGaussianDynamics` along a nominal trajectory so iLQG
(and MPC) can plan on it. torch is imported only when a model is built.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from naf_ros.core.dynamics import DynamicsFitError, LinearGaussianDynamics, validate_episodes

__all__ = ["GlobalNNDynamics"]


class GlobalNNDynamics:
    """MLP predicting x_{t+1} - x_t from [x_t, u_t], trained on all data (time-invariant).

    Inputs and targets are standardised with statistics of the data seen so far; ``sample``
    adds diagonal Gaussian noise with the training residual variance. Torch's thread
    settings are left alone; weights are initialised under a forked RNG so the global torch
    seed is not disturbed.
    """

    def __init__(
        self,
        nx: int,
        nu: int,
        hidden: tuple[int, ...] = (128, 128),
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        max_transitions: int = 200_000,
        seed: int = 0,
    ) -> None:
        import torch

        self.nx, self.nu = int(nx), int(nu)
        self._torch = torch
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            layers: list[torch.nn.Module] = []
            d = self.nx + self.nu
            for h in hidden:
                layers += [torch.nn.Linear(d, h), torch.nn.ReLU()]
                d = h
            layers.append(torch.nn.Linear(d, self.nx))
            self.net = torch.nn.Sequential(*layers).double()
        self.opt = torch.optim.Adam(self.net.parameters(), lr=lr, weight_decay=weight_decay)
        self._rng = np.random.default_rng(seed)
        self._inputs: deque[np.ndarray] = deque()
        self._targets: deque[np.ndarray] = deque()
        self.max_transitions = int(max_transitions)
        self.in_mean = np.zeros(self.nx + self.nu)
        self.in_std = np.ones(self.nx + self.nu)
        self.out_mean = np.zeros(self.nx)
        self.out_std = np.ones(self.nx)
        self.residual_var = np.full(self.nx, 1e-6)
        self.trained = False

    def add_data(self, X: np.ndarray, U: np.ndarray) -> None:
        """Append episodes X (N, T+1, nx), U (N, T, nu) to the bounded transition buffer."""
        X, U = validate_episodes(X, U, min_episodes=1)
        if X.shape[2] != self.nx or U.shape[2] != self.nu:
            raise DynamicsFitError("GlobalNNDynamics.add_data: state/action dimension mismatch")
        inp = np.concatenate([X[:, :-1], U], axis=-1).reshape(-1, self.nx + self.nu)
        tgt = (X[:, 1:] - X[:, :-1]).reshape(-1, self.nx)
        self._inputs.append(inp)
        self._targets.append(tgt)
        while sum(len(a) for a in self._inputs) > self.max_transitions and len(self._inputs) > 1:
            self._inputs.popleft()
            self._targets.popleft()

    def fit(
        self,
        X: np.ndarray | None = None,
        U: np.ndarray | None = None,
        n_steps: int = 500,
        batch_size: int = 256,
    ) -> float:
        """Optionally add episodes, then take ``n_steps`` Adam steps; returns the final MSE."""
        torch = self._torch
        if X is not None and U is not None:
            self.add_data(X, U)
        if not self._inputs:
            raise DynamicsFitError("GlobalNNDynamics.fit: no data")
        inp = np.concatenate(list(self._inputs))
        tgt = np.concatenate(list(self._targets))
        self.in_mean, self.in_std = inp.mean(0), inp.std(0) + 1e-6
        self.out_mean, self.out_std = tgt.mean(0), tgt.std(0) + 1e-8
        xi = torch.as_tensor((inp - self.in_mean) / self.in_std)
        yo = torch.as_tensor((tgt - self.out_mean) / self.out_std)
        m = len(xi)
        loss = torch.zeros(())
        for _ in range(n_steps):
            idx = torch.as_tensor(self._rng.integers(0, m, size=min(batch_size, m)))
            loss = ((self.net(xi[idx]) - yo[idx]) ** 2).mean()
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
        with torch.no_grad():
            res = (self.net(xi) - yo).numpy() * self.out_std
        self.residual_var = np.maximum(res.var(0), 1e-12)
        self.trained = True
        return float(loss.detach())

    def predict(self, t: int | np.ndarray, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Mean next state (``t`` ignored: the model is time-invariant)."""
        torch = self._torch
        x = np.asarray(x, dtype=float)
        xu = np.concatenate([x, np.asarray(u, dtype=float)], axis=-1)
        with torch.no_grad():
            out = self.net(torch.as_tensor((xu - self.in_mean) / self.in_std)).numpy()
        return x + out * self.out_std + self.out_mean

    def sample(
        self, t: int | np.ndarray, x: np.ndarray, u: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        mean = self.predict(t, x, u)
        return mean + rng.standard_normal(mean.shape) * np.sqrt(self.residual_var)

    def linearize(
        self, x_traj: np.ndarray, u_traj: np.ndarray, x0_cov: np.ndarray | None = None
    ) -> LinearGaussianDynamics:
        """Jacobians along a nominal (x_0..x_T, u_0..u_{T-1}) -> a model iLQG can use."""
        torch = self._torch
        x_traj = np.asarray(x_traj, dtype=float)
        u_traj = np.asarray(u_traj, dtype=float)
        T = u_traj.shape[0]
        xu = torch.as_tensor(np.concatenate([x_traj[:T], u_traj], axis=-1))
        in_mean = torch.as_tensor(self.in_mean)
        in_std = torch.as_tensor(self.in_std)
        out_std = torch.as_tensor(self.out_std)
        out_mean = torch.as_tensor(self.out_mean)

        def step(z: Any) -> Any:
            return z[: self.nx] + self.net((z - in_mean) / in_std) * out_std + out_mean

        F = np.stack([torch.autograd.functional.jacobian(step, xu[t]).numpy() for t in range(T)])
        with torch.no_grad():
            nxt = torch.stack([step(xu[t]) for t in range(T)]).numpy()
        f = nxt - np.einsum("tij,tj->ti", F, xu.numpy())
        N = np.broadcast_to(np.diag(self.residual_var), (T, self.nx, self.nx)).copy()
        cov0 = np.diag(np.full(self.nx, 1e-6)) if x0_cov is None else x0_cov
        return LinearGaussianDynamics(F=F, f=f, N=N, x0_mean=x_traj[0].copy(), x0_cov=cov0)
