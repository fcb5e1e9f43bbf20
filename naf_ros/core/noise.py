"""Exploration noise: Ornstein-Uhlenbeck, precision (NAF-P, paper §8.2), plain Gaussian, and
the standard normal xi a stochastic policy (SVG(1)-ER) scales itself.

All processes share one form, n_{k+1} = (1 - theta) n_k + e_k, and differ in the innovation
e_k. Gaussian is the theta = 1 case (temporally independent).
"""

from __future__ import annotations

import numpy as np


class ExplorationNoise:
    """Temporally correlated additive noise for normalised actions.

    ``scale`` is the innovation standard deviation per action dimension (DDPG's sigma); the
    stationary standard deviation of the OU process is ``scale / sqrt(2 theta - theta^2)``.
    """

    uses_lower = False  # whether sample() needs L(x); lets actors skip computing it

    def __init__(self, act_dim: int, scale: float, theta: float, rng: np.random.Generator):
        self.act_dim, self.scale, self.theta, self.rng = act_dim, float(scale), float(theta), rng
        self.state = np.zeros(act_dim)

    def reset(self) -> None:
        self.state = np.zeros(self.act_dim)

    def innovation(self, lower: np.ndarray | None) -> np.ndarray:
        return self.scale * self.rng.standard_normal(self.act_dim)

    def sample(self, lower: np.ndarray | None = None) -> np.ndarray:
        """Advance the process one step; ``lower`` is L(x) (used by precision noise only)."""
        self.state = (1.0 - self.theta) * self.state + self.innovation(lower)
        return self.state.copy()

    def stationary_std(self) -> float:
        return self.scale / np.sqrt(2 * self.theta - self.theta**2)


class ZeroNoise(ExplorationNoise):
    def innovation(self, lower):
        return np.zeros(self.act_dim)


class PolicyNoise(ExplorationNoise):
    """Standard normal draws xi ~ N(0, I), independent per step: the exogenous noise of a
    stochastic policy a = tanh(m(x) + sigma(x) xi) (SVG(1)-ER). The policy scales it, so
    ``scale`` is unused; it comes from the caller's generator so runs stay reproducible."""

    standard_normal = True  # what a stochastic policy checks before using it as its xi

    def __init__(self, act_dim: int, rng: np.random.Generator):
        super().__init__(act_dim, 1.0, 1.0, rng)


class PrecisionNoise(ExplorationNoise):
    """OU innovations drawn from N(0, c P(x)^-1), P = L L^T (paper eq. 7).

    Sampling solves L^T y = z (z ~ N(0, I)) by back substitution, so Cov(y) = P^-1 without
    ever inverting P. Adaptive scaling: c = scale^2 / m, where m is a running mean of
    tr(P^-1)/n, keeps the average per-dimension innovation std at ``scale`` however P's overall
    magnitude drifts during learning, while its shape still follows P^-1.
    """

    uses_lower = True

    def __init__(self, act_dim, scale, theta, rng, ema: float = 0.01):
        super().__init__(act_dim, scale, theta, rng)
        self.ema = float(ema)
        self.mean_trace: float | None = None

    @property
    def c(self) -> float:
        m = self.mean_trace if self.mean_trace else 1.0
        return self.scale**2 / m

    def innovation(self, lower):
        if lower is None:
            raise ValueError("precision noise needs L(x)")
        lower = np.asarray(lower, np.float64)
        # tr(P^-1) = |L^-1|_F^2 ; L^-1 by forward substitution against I.
        inv_l = solve_lower(lower, np.eye(self.act_dim))
        trace = float((inv_l * inv_l).sum()) / self.act_dim
        if np.isfinite(trace) and trace > 0:
            if self.mean_trace is None:
                self.mean_trace = trace
            else:
                self.mean_trace += self.ema * (trace - self.mean_trace)
        y = solve_upper(lower.T, self.rng.standard_normal(self.act_dim))
        out = np.sqrt(self.c) * y
        return out if np.isfinite(out).all() else np.zeros(self.act_dim)


def solve_lower(lower: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Forward substitution for L y = rhs (L lower-triangular); rhs (n,) or (n, k)."""
    y = np.array(rhs, dtype=np.float64, copy=True)
    for i in range(lower.shape[0]):
        y[i] = (y[i] - lower[i, :i] @ y[:i]) / lower[i, i]
    return y


def solve_upper(upper: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Back substitution for U y = rhs (U upper-triangular)."""
    y = np.array(rhs, dtype=np.float64, copy=True)
    for i in range(upper.shape[0] - 1, -1, -1):
        y[i] = (y[i] - upper[i, i + 1 :] @ y[i + 1 :]) / upper[i, i]
    return y


def make_noise(kind: str, act_dim: int, scale: float, theta: float, rng, ema: float = 0.01):
    """Build the configured exploration process (``exploration.kind``)."""
    if kind == "ou":
        return ExplorationNoise(act_dim, scale, theta, rng)
    if kind == "gaussian":
        return ExplorationNoise(act_dim, scale, 1.0, rng)
    if kind == "precision":
        return PrecisionNoise(act_dim, scale, theta, rng, ema)
    if kind == "none":
        return ZeroNoise(act_dim, 0.0, 1.0, rng)
    if kind == "policy":
        return PolicyNoise(act_dim, rng)
    raise ValueError(f"exploration.kind: unknown {kind!r}")
