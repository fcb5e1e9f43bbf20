"""Time-varying linear-Gaussian dynamics and their fit (paper §5.3; Levine & Abbeel 2014).

The default model is x_{t+1} ~ N(F_t [x_t; u_t] + f_t, N_t), fitted from only a handful of
episodes. With n = 5 samples per step and dim(x) + dim(u) well above 5 the per-step empirical
covariance is singular, so every step is fitted as a normal-inverse-Wishart MAP estimate whose
prior (:class:`DynamicsPrior`) is a Gaussian (or small GMM) over (x, u, x') pooled across time
steps and a longer history of episodes. The prior supplies the directions the few local
samples never excite; the local samples move the estimate where they do. (The prior stays in
this module: checkpoints pickle it by its import path.)

This module is the base of the model-based stack: the neural-network model
(:mod:`naf_ros.core.nn_dynamics`), the joint-space model and iLQG build on it, and it imports
none of them. Trajectory distributions under a controller live with the optimiser
(:mod:`naf_ros.core.ilqg`), because only the optimiser needs them. Plain numpy.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from naf_ros.core.linalg import (
    SingularCovarianceError,
    check_array,
    check_psd,
    condition_gaussian,
    floor_eig,
    gauss_logpdf,
    logsumexp,
    sym,
)

__all__ = [
    "DynamicsFitError",
    "DynamicsModel",
    "DynamicsPrior",
    "LinearGaussianDynamics",
    "fit_linear_gaussian",
    "validate_episodes",
]


class DynamicsFitError(ValueError):
    """The data cannot give a trustworthy model; callers skip the fit and keep the old one."""


@runtime_checkable
class DynamicsModel(Protocol):
    """What imagination rollouts need from any model (fitted linear, neural net, simulator).

    ``predict(t, x, u)`` returns the mean next state for a batch: ``x`` is (B, nx) or (nx,),
    ``u`` is (B, nu) or (nu,), ``t`` an int or a (B,) array of step indices (time-varying
    models use it, others ignore it). The result has the shape of ``x``.
    """

    def predict(self, t: int | np.ndarray, x: np.ndarray, u: np.ndarray) -> np.ndarray: ...


def validate_episodes(
    X: np.ndarray, U: np.ndarray, min_episodes: int
) -> tuple[np.ndarray, np.ndarray]:
    """X (N, T+1, nx) and U (N, T, nu) as float arrays, or :class:`DynamicsFitError`.

    Every model that learns from episodes (fit, prior, NN) refuses the same bad input with
    the same message, so callers handle one error type for all of them.
    """
    try:
        X = np.asarray(X, dtype=float)
        U = np.asarray(U, dtype=float)
    except (TypeError, ValueError) as exc:
        raise DynamicsFitError(f"X/U are not numeric arrays: {exc}") from exc
    if X.ndim != 3 or U.ndim != 3:
        raise DynamicsFitError(
            f"expected X (N, T+1, nx) and U (N, T, nu), got {X.shape} and {U.shape}"
        )
    if X.shape[0] != U.shape[0] or X.shape[1] != U.shape[1] + 1 or U.shape[1] < 1:
        raise DynamicsFitError(
            f"shape mismatch: X {X.shape} needs one more step than U {U.shape}, same N"
        )
    if X.shape[0] < min_episodes:
        raise DynamicsFitError(f"need at least {min_episodes} episodes, got {X.shape[0]}")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(U))):
        raise DynamicsFitError("X/U contain non-finite values")
    return X, U


# --------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------
@dataclass
class LinearGaussianDynamics:
    """x_{t+1} ~ N(F_t [x_t; u_t] + f_t, N_t), x_0 ~ N(x0_mean, x0_cov), t = 0..T-1."""

    F: np.ndarray
    f: np.ndarray
    N: np.ndarray
    x0_mean: np.ndarray
    x0_cov: np.ndarray
    _chol_N: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.F = np.asarray(self.F, dtype=float)
        if self.F.ndim != 3 or self.F.shape[2] <= self.F.shape[1]:
            raise ValueError(f"F: expected shape (T, nx, nx+nu) with nu > 0, got {self.F.shape}")
        T, nx = self.F.shape[:2]
        self.F = check_array("F", self.F, self.F.shape)
        self.f = check_array("f", self.f, (T, nx))
        self.N = check_array("N", self.N, (T, nx, nx))
        self.x0_mean = check_array("x0_mean", self.x0_mean, (nx,))
        self.x0_cov = check_array("x0_cov", self.x0_cov, (nx, nx))
        check_psd("N", self.N)
        check_psd("x0_cov", self.x0_cov)

    @property
    def horizon(self) -> int:
        return self.F.shape[0]

    @property
    def nx(self) -> int:
        return self.F.shape[1]

    @property
    def nu(self) -> int:
        return self.F.shape[2] - self.F.shape[1]

    def _t(self, t: int | np.ndarray) -> int | np.ndarray:
        # Imagination rollouts may run past the fitted horizon: reuse the last step's model.
        return np.clip(np.asarray(t, dtype=int), 0, self.horizon - 1)

    def predict(self, t: int | np.ndarray, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Mean next state; batched over leading dims, ``t`` scalar or per-sample."""
        x = np.asarray(x, dtype=float)
        u = np.asarray(u, dtype=float)
        ti = self._t(t)
        lead = np.broadcast_shapes(x.shape[:-1], u.shape[:-1])
        xu = np.concatenate(
            [np.broadcast_to(x, lead + x.shape[-1:]), np.broadcast_to(u, lead + u.shape[-1:])],
            axis=-1,
        )
        if np.ndim(ti) == 0:
            return xu @ self.F[ti].T + self.f[ti]
        return np.einsum("...ij,...j->...i", self.F[ti], xu) + self.f[ti]

    def sample(
        self, t: int | np.ndarray, x: np.ndarray, u: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Draw x_{t+1} including the fitted process noise N_t."""
        mean = self.predict(t, x, u)
        if self._chol_N is None:
            self._chol_N = np.linalg.cholesky(self.N + 1e-12 * np.eye(self.nx))
        ti = self._t(t)
        z = rng.standard_normal(mean.shape)
        if np.ndim(ti) == 0:
            return mean + z @ self._chol_N[ti].T
        return mean + np.einsum("...ij,...j->...i", self._chol_N[ti], z)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for ROS messages and checkpoints."""
        return {
            "F": self.F.copy(),
            "f": self.f.copy(),
            "N": self.N.copy(),
            "x0_mean": self.x0_mean.copy(),
            "x0_cov": self.x0_cov.copy(),
        }

    @classmethod
    def from_arrays(cls, d: dict[str, Any]) -> LinearGaussianDynamics:
        """Rebuild from :meth:`to_arrays`; raises ValueError on missing keys, shapes or NaN."""
        missing = [k for k in ("F", "f", "N", "x0_mean", "x0_cov") if k not in d]
        if missing:
            raise ValueError(f"LinearGaussianDynamics: missing arrays {missing}")
        return cls(
            F=np.asarray(d["F"], dtype=float),
            f=np.asarray(d["f"], dtype=float),
            N=np.asarray(d["N"], dtype=float),
            x0_mean=np.asarray(d["x0_mean"], dtype=float),
            x0_cov=np.asarray(d["x0_cov"], dtype=float),
        )


# --------------------------------------------------------------------------------------
# prior and fit
# --------------------------------------------------------------------------------------
class DynamicsPrior:
    """Prior over joint [x_t; u_t; x_{t+1}] from data pooled over time steps and episodes.

    ``n_components == 1`` fits one Gaussian; more fits a GMM by EM, and :meth:`eval` then
    moment-matches the components weighted by how well they explain the current step's
    samples, which keeps the prior local when the dynamics change along the trajectory.
    ``strength`` (n0) and ``mean_strength`` (m) are the prior's weights in pseudo-samples.
    """

    def __init__(
        self,
        n_components: int = 1,
        max_episodes: int = 40,
        strength: float = 1.0,
        mean_strength: float = 1.0,
        em_iters: int = 50,
        seed: int = 0,
        center_per_step: bool = False,
    ) -> None:
        if n_components < 1 or max_episodes < 1 or strength <= 0 or mean_strength < 0:
            raise ValueError("DynamicsPrior: invalid settings")
        self.n_components = int(n_components)
        self.strength = float(strength)
        self.mean_strength = float(mean_strength)
        self.em_iters = int(em_iters)
        self.seed = int(seed)
        self.center_per_step = bool(center_per_step)
        self._episodes: deque[np.ndarray] = deque(maxlen=int(max_episodes))
        self.weights: np.ndarray | None = None
        self.means: np.ndarray | None = None
        self.covs: np.ndarray | None = None

    @property
    def n_episodes(self) -> int:
        return len(self._episodes)

    @property
    def ready(self) -> bool:
        return self.means is not None

    def update(self, X: np.ndarray, U: np.ndarray) -> None:
        """Add episodes (X (N, T+1, nx), U (N, T, nu)) to the bounded history and refit."""
        X, U = validate_episodes(X, U, min_episodes=1)
        pts = np.concatenate([X[:, :-1], U, X[:, 1:]], axis=-1)  # (N, T, D)
        if self._episodes and self._episodes[0].shape[-1] != pts.shape[-1]:
            raise DynamicsFitError("DynamicsPrior.update: dimension differs from stored history")
        for ep in pts:
            self._episodes.append(ep)
        self._refit()

    def _refit(self) -> None:
        if self.center_per_step:
            if len({ep.shape for ep in self._episodes}) != 1 or len(self._episodes) < 2:
                raise DynamicsFitError(
                    "DynamicsPrior(center_per_step=True) needs >= 2 episodes of equal length"
                )
            eps = np.stack(list(self._episodes))  # (E, T, D)
            data = (eps - eps.mean(axis=0)).reshape(-1, eps.shape[-1])
        else:
            data = np.concatenate(list(self._episodes), axis=0)  # (M, D)
        M, D = data.shape
        var = data.var(axis=0)
        jitter = 1e-6 * np.maximum(var, 1e-6 * max(var.mean(), 1e-12)) + 1e-12
        k = min(self.n_components, max(1, M // (2 * (D + 1))))
        mean = data.mean(axis=0)
        cov = sym(np.cov(data, rowvar=False, bias=True).reshape(D, D)) + np.diag(jitter)
        if k == 1:
            self.weights, self.means, self.covs = np.ones(1), mean[None], cov[None]
            return
        self.weights, self.means, self.covs = self._em(data, k, jitter)

    def _em(
        self, data: np.ndarray, k: int, jitter: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        M, D = data.shape
        scale = np.sqrt(np.maximum(data.var(axis=0), 1e-12))
        z = data / scale
        # k-means++ seeding on standardised data, then EM on the raw data.
        centres = [z[rng.integers(M)]]
        for _ in range(1, k):
            d2 = np.min([((z - c) ** 2).sum(1) for c in centres], axis=0)
            p = d2 / d2.sum() if d2.sum() > 0 else np.full(M, 1.0 / M)
            centres.append(z[rng.choice(M, p=p)])
        assign = np.argmin([((z - c) ** 2).sum(1) for c in centres], axis=0)
        resp = np.eye(k)[assign]
        prev_ll = -np.inf
        for _ in range(self.em_iters):
            nk = resp.sum(0) + 1e-10
            w = nk / M
            mus = (resp.T @ data) / nk[:, None]
            covs = np.empty((k, D, D))
            for j in range(k):
                dc = data - mus[j]
                covs[j] = sym((resp[:, j, None] * dc).T @ dc / nk[j]) + np.diag(jitter)
            logp = np.stack([gauss_logpdf(data, mus[j], covs[j]) for j in range(k)], 1)
            logp += np.log(w)
            lz = logsumexp(logp, axis=1)
            resp = np.exp(logp - lz[:, None])
            ll = lz.mean()
            if ll - prev_ll < 1e-6 * max(1.0, abs(ll)):
                break
            prev_ll = ll
        return w, mus, covs

    def eval(
        self, nx: int, nu: int, pts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, float, float]:
        """Prior for one step's samples ``pts`` (n, 2nx+nu): ``(mu0, Phi, m, n0)``.

        ``Phi = n0 * Sigma0`` so that with no data the MAP covariance equals Sigma0.
        """
        if not self.ready:
            raise DynamicsFitError("DynamicsPrior.eval: prior has no data yet")
        D = 2 * nx + nu
        if self.means.shape[1] != D:
            raise DynamicsFitError(
                f"DynamicsPrior.eval: prior dimension {self.means.shape[1]} != {D}"
            )
        if self.center_per_step:
            pts = pts - pts.mean(axis=0)
        if len(self.weights) == 1:
            mu0, sigma0 = self.means[0], self.covs[0]
        else:
            logp = np.stack(
                [gauss_logpdf(pts, self.means[j], self.covs[j]) for j in range(len(self.weights))],
                axis=1,
            ) + np.log(self.weights)
            resp = np.exp(logp - logsumexp(logp, axis=1)[:, None])
            w = resp.mean(0)
            mu0 = w @ self.means
            dm = self.means - mu0
            sigma0 = np.einsum("k,kij->ij", w, self.covs) + (w[:, None] * dm).T @ dm
        if self.center_per_step:  # the prior carries no information about the step's mean
            return pts.mean(axis=0) * 0.0, self.strength * sym(sigma0), 0.0, self.strength
        return mu0, self.strength * sym(sigma0), self.mean_strength, self.strength


def fit_linear_gaussian(
    X: np.ndarray,
    U: np.ndarray,
    prior: DynamicsPrior | None = None,
    reg: float = 1e-6,
    min_noise_var: float = 1e-8,
    min_x0_var: float = 1e-8,
    min_episodes: int = 2,
) -> LinearGaussianDynamics:
    """Fit x_{t+1} ~ N(F_t [x_t; u_t] + f_t, N_t) to the latest episodes (paper: n = 5).

    Per step the joint Gaussian over [x_t; u_t; x_{t+1}] is the NIW MAP estimate
    ``(Phi + n S + n m/(n+m) (x̄-mu0)(x̄-mu0)^T) / (n + n0)`` with the empirical mean kept as
    the mean (the pooled prior mean mixes all time steps and would bias f_t). ``reg`` goes on
    the diagonal of the [x; u] block; ``min_noise_var`` floors N_t's eigenvalues.
    ``prior=None`` fits from the episodes alone, which is singular when n <= dim(x)+dim(u).
    The prior is *not* updated here: call ``prior.update(X, U)`` when the episodes should
    also join the pooled history. Raises :class:`DynamicsFitError`, never returns NaN.
    """
    X, U = validate_episodes(X, U, min_episodes=max(1, min_episodes))
    if reg < 0 or min_noise_var <= 0 or min_x0_var <= 0:
        raise ValueError("reg must be >= 0 and variance floors > 0")
    n, T, nu = U.shape
    nx = X.shape[2]
    nxu = nx + nu
    F = np.empty((T, nx, nxu))
    f = np.empty((T, nx))
    Ncov = np.empty((T, nx, nx))
    for t in range(T):
        pts = np.concatenate([X[:, t], U[:, t], X[:, t + 1]], axis=1)
        mun = pts.mean(axis=0)
        dc = pts - mun
        emp = dc.T @ dc / n
        if prior is not None:
            mu0, phi, m, n0 = prior.eval(nx, nu, pts)
            dm = mun - mu0
            sigma = (phi + n * emp + (n * m / (n + m)) * np.outer(dm, dm)) / (n + n0)
        else:
            sigma = emp
        try:
            Ft, ft, Nt = condition_gaussian(mun, sigma, nxu, reg=reg)
        except SingularCovarianceError as exc:
            raise DynamicsFitError(
                f"joint covariance of [x; u] is {exc.detail}; use a prior or a larger reg"
            ) from exc
        F[t], f[t], Ncov[t] = Ft, ft, floor_eig(Nt, min_noise_var)
    x0 = X[:, 0]
    x0_cov = floor_eig(np.atleast_2d(np.cov(x0, rowvar=False, bias=True)), min_x0_var)
    if not all(np.all(np.isfinite(a)) for a in (F, f, Ncov, x0_cov)):
        raise DynamicsFitError("fit produced non-finite parameters (degenerate data)")
    return LinearGaussianDynamics(F=F, f=f, N=Ncov, x0_mean=x0.mean(axis=0), x0_cov=x0_cov)
