"""Small dense linear-algebra helpers shared by the dynamics fits, the prior and iLQG.

Why one module: covariances are symmetrised, floored, inverted through their Cholesky
factor and validated in several places, and each copy used to carry its own tolerances.
Keeping them here means one definition of "symmetric", "PSD" and "near-singular" for the
whole model-based stack. Everything is plain numpy and batched over leading axes where
that makes sense; nothing here knows about dynamics, controllers or ROS.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "SingularCovarianceError",
    "check_array",
    "check_psd",
    "check_symmetric",
    "chol_inv",
    "condition_gaussian",
    "floor_eig",
    "gauss_logpdf",
    "logsumexp",
    "sym",
]


class SingularCovarianceError(ValueError):
    """The block a Gaussian is conditioned on is (near-)singular even after regularisation.

    ``detail`` ("singular" or "near-singular (cond ~ ...)") lets callers phrase the message
    in their own terms (the dynamics fit names the [x; u] block and the cure).
    """

    def __init__(self, detail: str) -> None:
        super().__init__(f"conditioning block of the covariance is {detail}")
        self.detail = detail


def sym(a: np.ndarray) -> np.ndarray:
    """½ (A + Aᵀ) over the last two axes: rounding must not make a covariance asymmetric."""
    return 0.5 * (a + np.swapaxes(a, -1, -2))


def floor_eig(cov: np.ndarray, min_eig: float) -> np.ndarray:
    """Symmetrise and lift eigenvalues to ``min_eig`` (keeps N_t usable as a covariance)."""
    w, v = np.linalg.eigh(sym(cov))
    w = np.maximum(w, min_eig)
    return sym((v * w[..., None, :]) @ np.swapaxes(v, -1, -2))


def chol_inv(chol: np.ndarray) -> np.ndarray:
    """Inverse of L Lᵀ from its Cholesky factor (batched), without forming (L Lᵀ)⁻¹ directly."""
    eye = np.broadcast_to(np.eye(chol.shape[-1]), chol.shape)
    linv = np.linalg.solve(chol, eye)
    return sym(np.swapaxes(linv, -1, -2) @ linv)


def check_array(name: str, a: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``a`` as a float array of exactly ``shape`` with finite entries, else ValueError.

    Model and controller parameters arrive from messages and checkpoints; a wrong shape or a
    NaN must be refused at construction, not discovered as a NaN command later.
    """
    arr = np.asarray(a, dtype=float)
    if arr.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains non-finite values")
    return arr


def check_symmetric(name: str, a: np.ndarray, atol: float = 1e-10) -> None:
    """ValueError unless ``a`` is symmetric over its last two axes (rtol 1e-6, ``atol``)."""
    if not np.allclose(a, np.swapaxes(a, -1, -2), rtol=1e-6, atol=atol):
        raise ValueError(f"{name}: not symmetric")


def check_psd(name: str, cov: np.ndarray, rtol: float = 1e-8) -> None:
    """ValueError unless ``cov`` is symmetric and positive semidefinite up to ``rtol`` of its
    largest eigenvalue (per matrix of a batch)."""
    check_symmetric(name, cov)
    w = np.linalg.eigvalsh(sym(cov))
    scale = np.maximum(np.abs(w).max(axis=-1, keepdims=True), 1e-300)
    if np.any(w < -rtol * scale):
        raise ValueError(f"{name}: not positive semidefinite (min eigenvalue {w.min():.3g})")


def condition_gaussian(
    mu: np.ndarray, sigma: np.ndarray, n_in: int, reg: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Condition a joint Gaussian over [z; y] on z (the first ``n_in`` entries).

    Returns ``(F, f, cov)`` with y | z ~ N(F z + f, cov). ``reg`` is added to the *diagonal*
    of the z block (ridge regression); adding it to every entry would only add a rank-one
    term and leave a singular block singular. Raises :class:`SingularCovarianceError` if
    the regularised block is still not positive definite (condition number above ~1e14).
    """
    mu = np.asarray(mu, dtype=float)
    sigma = sym(np.asarray(sigma, dtype=float))
    szz = sigma[:n_in, :n_in] + reg * np.eye(n_in)
    szy = sigma[:n_in, n_in:]
    syy = sigma[n_in:, n_in:]
    try:
        chol = np.linalg.cholesky(szz)
    except np.linalg.LinAlgError as exc:
        raise SingularCovarianceError("singular") from exc
    d = np.diag(chol)
    if d.min() <= 1e-7 * d.max():  # condition number of szz above ~1e14
        raise SingularCovarianceError(f"near-singular (cond ~ {(d.max() / d.min()) ** 2:.2g})")
    tmp = np.linalg.solve(chol, szy)  # L^{-1} Σ_zy
    F = np.linalg.solve(chol.T, tmp).T  # Σ_yz Σ_zz^{-1}
    f = mu[n_in:] - F @ mu[:n_in]
    cov = sym(syy - tmp.T @ tmp)
    return F, f, cov


def gauss_logpdf(pts: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """log N(pts | mu, sigma) for rows of ``pts`` (n, D), through a Cholesky solve."""
    chol = np.linalg.cholesky(sigma)
    z = np.linalg.solve(chol, (pts - mu).T)
    logdet = 2.0 * np.log(np.diag(chol)).sum()
    return -0.5 * ((z * z).sum(0) + logdet + mu.size * np.log(2.0 * np.pi))


def logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    """log Σ exp(a) along ``axis`` without overflow (shifted by the maximum)."""
    m = a.max(axis=axis, keepdims=True)
    return (m + np.log(np.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis)
