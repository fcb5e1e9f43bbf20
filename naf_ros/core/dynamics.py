"""Dynamics models for imagination rollouts and iLQG (paper §5.3; Levine & Abbeel 2014).

The default model is a time-varying linear-Gaussian one, x_{t+1} ~ N(F_t [x_t; u_t] + f_t, N_t),
fitted from only a handful of episodes. With n = 5 samples per step and dim(x) + dim(u) well
above 5 the per-step empirical covariance is singular, so every step is fitted as a
normal-inverse-Wishart MAP estimate whose prior is a Gaussian (or small GMM) over (x, u, x')
pooled across time steps and a longer history of episodes. The prior supplies the directions
the few local samples never excite; the local samples move the estimate where they do.

Everything here is plain numpy except :class:`GlobalNNDynamics` (the paper's "-NN" variant).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover - typing only
    from naf_ros.core.ilqg import LinearGaussianController

__all__ = [
    "DynamicsFitError",
    "DynamicsModel",
    "DynamicsPrior",
    "GlobalNNDynamics",
    "LinearGaussianDynamics",
    "TrajectoryDistribution",
    "condition_gaussian",
    "fit_linear_gaussian",
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


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------
def _sym(a: np.ndarray) -> np.ndarray:
    return 0.5 * (a + np.swapaxes(a, -1, -2))


def _floor_eig(cov: np.ndarray, min_eig: float) -> np.ndarray:
    """Symmetrise and lift eigenvalues to ``min_eig`` (keeps N_t usable as a covariance)."""
    w, v = np.linalg.eigh(_sym(cov))
    w = np.maximum(w, min_eig)
    return _sym((v * w[..., None, :]) @ np.swapaxes(v, -1, -2))


def _check_array(name: str, a: Any, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(a, dtype=float)
    if arr.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains non-finite values")
    return arr


def _check_psd(name: str, cov: np.ndarray, rtol: float = 1e-8) -> None:
    if not np.allclose(cov, np.swapaxes(cov, -1, -2), rtol=1e-6, atol=1e-10):
        raise ValueError(f"{name}: not symmetric")
    w = np.linalg.eigvalsh(_sym(cov))
    scale = np.maximum(np.abs(w).max(axis=-1, keepdims=True), 1e-300)
    if np.any(w < -rtol * scale):
        raise ValueError(f"{name}: not positive semidefinite (min eigenvalue {w.min():.3g})")


def condition_gaussian(
    mu: np.ndarray, sigma: np.ndarray, n_in: int, reg: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Condition a joint Gaussian over [z; y] on z (the first ``n_in`` entries).

    Returns ``(F, f, cov)`` with y | z ~ N(F z + f, cov). ``reg`` is added to the *diagonal*
    of the z block (ridge regression); adding it to every entry would only add a rank-one
    term and leave a singular block singular. Raises :class:`DynamicsFitError` if the
    regularised block is still not positive definite.
    """
    mu = np.asarray(mu, dtype=float)
    sigma = _sym(np.asarray(sigma, dtype=float))
    szz = sigma[:n_in, :n_in] + reg * np.eye(n_in)
    szy = sigma[:n_in, n_in:]
    syy = sigma[n_in:, n_in:]
    try:
        chol = np.linalg.cholesky(szz)
    except np.linalg.LinAlgError as exc:
        raise DynamicsFitError(
            "joint covariance of [x; u] is singular; use a prior or a larger reg"
        ) from exc
    d = np.diag(chol)
    if d.min() <= 1e-7 * d.max():  # condition number of szz above ~1e14
        raise DynamicsFitError(
            f"joint covariance of [x; u] is near-singular (cond ~ {(d.max() / d.min()) ** 2:.2g});"
            " use a prior or a larger reg"
        )
    tmp = np.linalg.solve(chol, szy)  # L^{-1} Σ_zy
    F = np.linalg.solve(chol.T, tmp).T  # Σ_yz Σ_zz^{-1}
    f = mu[n_in:] - F @ mu[:n_in]
    cov = _sym(syy - tmp.T @ tmp)
    return F, f, cov


# --------------------------------------------------------------------------------------
# linear-Gaussian dynamics and trajectory distributions
# --------------------------------------------------------------------------------------
@dataclass
class TrajectoryDistribution:
    """Gaussian marginals of [x_t; u_t] (t < T) and of the final state x_T.

    ``mu`` (T, nx+nu), ``sigma`` (T, nx+nu, nx+nu); iLQG expands the reward around ``mu``
    and the KL uses the state blocks.
    """

    mu: np.ndarray
    sigma: np.ndarray
    x_final_mean: np.ndarray
    x_final_cov: np.ndarray
    nx: int

    @property
    def state_mean(self) -> np.ndarray:
        return self.mu[:, : self.nx]

    @property
    def action_mean(self) -> np.ndarray:
        return self.mu[:, self.nx :]

    @property
    def state_cov(self) -> np.ndarray:
        return self.sigma[:, : self.nx, : self.nx]


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
        self.F = _check_array("F", self.F, self.F.shape)
        self.f = _check_array("f", self.f, (T, nx))
        self.N = _check_array("N", self.N, (T, nx, nx))
        self.x0_mean = _check_array("x0_mean", self.x0_mean, (nx,))
        self.x0_cov = _check_array("x0_cov", self.x0_cov, (nx, nx))
        _check_psd("N", self.N)
        _check_psd("x0_cov", self.x0_cov)

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

    def propagate(
        self,
        K: np.ndarray,
        a: np.ndarray,
        cov: np.ndarray,
        low: np.ndarray | None = None,
        high: np.ndarray | None = None,
    ) -> tuple[TrajectoryDistribution, np.ndarray]:
        """Forward pass of u_t ~ N(K_t x_t + a_t, cov_t) through the model (full covariances).

        If ``low``/``high`` are given, the *mean* action on the predicted mean trajectory is
        clipped by shifting a_t, so the nominal plan respects the action limits. Returns the
        distribution and the (possibly shifted) offsets a_t.
        """
        T, nx, nu = self.horizon, self.nx, self.nu
        a = np.array(a, dtype=float, copy=True)
        mu = np.empty((T, nx + nu))
        sigma = np.empty((T, nx + nu, nx + nu))
        mx, sx = self.x0_mean.copy(), self.x0_cov.copy()
        for t in range(T):
            mu_u = K[t] @ mx + a[t]
            if low is not None or high is not None:
                clipped = np.clip(mu_u, low, high)
                a[t] += clipped - mu_u
                mu_u = clipped
            ksx = K[t] @ sx
            mu[t, :nx], mu[t, nx:] = mx, mu_u
            sigma[t, :nx, :nx] = sx
            sigma[t, nx:, :nx] = ksx
            sigma[t, :nx, nx:] = ksx.T
            sigma[t, nx:, nx:] = _sym(ksx @ K[t].T + cov[t])
            mx = self.F[t] @ mu[t] + self.f[t]
            sx = _sym(self.F[t] @ sigma[t] @ self.F[t].T + self.N[t])
        return TrajectoryDistribution(mu, sigma, mx, sx, nx), a

    def trajectory_distribution(
        self, controller: LinearGaussianController
    ) -> TrajectoryDistribution:
        """State/action marginals of the linear-Gaussian trajectory under ``controller``."""
        K, a = controller.absolute_gains()
        return self.propagate(K, a, controller.cov)[0]

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
# prior
# --------------------------------------------------------------------------------------
def _gauss_logpdf(pts: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    chol = np.linalg.cholesky(sigma)
    z = np.linalg.solve(chol, (pts - mu).T)
    logdet = 2.0 * np.log(np.diag(chol)).sum()
    return -0.5 * ((z * z).sum(0) + logdet + mu.size * np.log(2.0 * np.pi))


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    m = a.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis)


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
        X, U = _validate_xu(X, U, min_episodes=1)
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
        cov = _sym(np.cov(data, rowvar=False, bias=True).reshape(D, D)) + np.diag(jitter)
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
                covs[j] = _sym((resp[:, j, None] * dc).T @ dc / nk[j]) + np.diag(jitter)
            logp = np.stack([_gauss_logpdf(data, mus[j], covs[j]) for j in range(k)], 1)
            logp += np.log(w)
            lz = _logsumexp(logp, axis=1)
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
                [_gauss_logpdf(pts, self.means[j], self.covs[j]) for j in range(len(self.weights))],
                axis=1,
            ) + np.log(self.weights)
            resp = np.exp(logp - _logsumexp(logp, axis=1)[:, None])
            w = resp.mean(0)
            mu0 = w @ self.means
            dm = self.means - mu0
            sigma0 = np.einsum("k,kij->ij", w, self.covs) + (w[:, None] * dm).T @ dm
        if self.center_per_step:  # the prior carries no information about the step's mean
            return pts.mean(axis=0) * 0.0, self.strength * _sym(sigma0), 0.0, self.strength
        return mu0, self.strength * _sym(sigma0), self.mean_strength, self.strength


# --------------------------------------------------------------------------------------
# fitting
# --------------------------------------------------------------------------------------
def _validate_xu(X: np.ndarray, U: np.ndarray, min_episodes: int) -> tuple[np.ndarray, np.ndarray]:
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
    X, U = _validate_xu(X, U, min_episodes=max(1, min_episodes))
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
        Ft, ft, Nt = condition_gaussian(mun, sigma, nxu, reg=reg)
        F[t], f[t], Ncov[t] = Ft, ft, _floor_eig(Nt, min_noise_var)
    x0 = X[:, 0]
    x0_cov = _floor_eig(np.atleast_2d(np.cov(x0, rowvar=False, bias=True)), min_x0_var)
    if not all(np.all(np.isfinite(a)) for a in (F, f, Ncov, x0_cov)):
        raise DynamicsFitError("fit produced non-finite parameters (degenerate data)")
    return LinearGaussianDynamics(F=F, f=f, N=Ncov, x0_mean=x0.mean(axis=0), x0_cov=x0_cov)


# --------------------------------------------------------------------------------------
# global neural-network model ("-NN" variant)
# --------------------------------------------------------------------------------------
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
        X, U = _validate_xu(X, U, min_episodes=1)
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
