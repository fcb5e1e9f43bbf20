"""The NIW dynamics fit (fit_linear_gaussian with a DynamicsPrior) against regression oracles.

**Pooled regression identity.** Per step t the fit uses the joint covariance

    Sigma = (n0 Sigma0 + n S + n m / (n + m) (x̄ - mu0)(x̄ - mu0)ᵀ) / (n + n0)

(S, x̄: the step's n samples, biased; Sigma0, mu0: the prior Gaussian, fitted to M pooled
points). By the parallel-axis rule, the scatter of a weighted union of two point sets about
their joint mean is the sum of the two scatters plus n w / (n + w) times the outer product of
the mean difference. So with the M prior points weighted n0 / M each (total weight n0) and
translated by s (x̄ - mu0), where (1 - s)² = m (n + n0) / (n0 (n + m)) (needs m <= n0),
Sigma is *exactly* the weighted covariance of the union. Conditioning a Gaussian on [x; u]
is least squares, so F_t must equal the weighted least-squares slope on all n + M points
(m = n0 = M: plain pooled linear regression; m = 0: the prior carries no mean). With ``reg``
on the diagonal of the [x; u] block it is ridge regression with penalty (n + n0) reg on the
slope only. The implementation keeps the step's own mean (the pooled mean mixes time steps),
so f_t = ȳ - F_t x̄ with the *local* means, and N_t = the weighted residual covariance of the
ridge fit + reg F_t F_tᵀ (the Gaussian conditional of the regularised joint).

The oracle is numpy's lstsq on the stacked, weighted design [z, 1] (with sqrt(W reg) I rows
for the ridge), so no covariance formula is shared with the implementation.

**Why the tolerance is a bound, not a guess.** The prior adds a jitter to the diagonal of
Sigma0 (relative 1e-6 of each variance, plus 1e-12), so the identity holds up to a diagonal
E with |E| <= n0 / (n + n0) (1e-6 max var + 1e-12). E has no off-diagonal blocks, so
F' - F = -F' E_zz (Sigma_zz + reg I)^-1 and N' - N = E_yy + F E_zz F'ᵀ; the test bounds both
by norms (plus 1e-10 of round-off) and checks the bound is tiny. ``min_noise_var`` is set far
below the noise eigenvalues so the floor never applies.

**Strongly time-varying system.** F_t is a different random rotation and input matrix at
each step, so the pooled prior is wrong for every t; only a fit that weighs the n local
samples against the prior's n0 pseudo-samples as the NIW posterior does recovers each F_t.
"""

from __future__ import annotations

import numpy as np
import pytest

from naf_ros.core.dynamics import DynamicsPrior, fit_linear_gaussian
from naf_ros.core.linalg import condition_gaussian

NX, NU = 2, 1
NZ = NX + NU


def rollouts(rng, n, T, A, B, f, x0_mean, noise, u_mean=0.0):
    X = np.empty((n, T + 1, NX))
    U = u_mean + rng.standard_normal((n, T, NU))
    X[:, 0] = x0_mean + rng.standard_normal((n, NX))
    for t in range(T):
        X[:, t + 1] = X[:, t] @ A.T + U[:, t] @ B.T + f + noise * rng.standard_normal((n, NX))
    return X, U


def weighted_ridge(Z, Y, w, lam_total):
    """argmin_{F, f} sum_i w_i |y_i - F z_i - f|² + lam_total |F|² (intercept unpenalised)."""
    sw = np.sqrt(w)[:, None]
    design = np.hstack([Z, np.ones((len(Z), 1))]) * sw
    target = Y * sw
    if lam_total > 0:
        pen = np.hstack([np.sqrt(lam_total) * np.eye(Z.shape[1]), np.zeros((Z.shape[1], 1))])
        design = np.vstack([design, pen])
        target = np.vstack([target, np.zeros((Z.shape[1], Y.shape[1]))])
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    F, f = coef[:-1].T, coef[-1]
    resid = Y - Z @ F.T - f
    return F, f, (w[:, None] * resid).T @ resid / w.sum()


@pytest.fixture(scope="module")
def pooled_data():
    rng = np.random.default_rng(0)
    # Prior history and the current episodes come from *different* systems with different
    # offsets and operating points, so the mean term and the weights both move F_t.
    A_p = np.array([[0.9, 0.3], [-0.2, 0.8]])
    B_p = np.array([[0.5], [1.0]])
    Xp, Up = rollouts(rng, 6, 5, A_p, B_p, np.array([0.5, -1.0]), np.array([2.0, -1.0]), 0.3)
    A_l = np.array([[1.1, -0.4], [0.3, 0.6]])
    B_l = np.array([[-0.6], [0.4]])
    X, U = rollouts(rng, 8, 3, A_l, B_l, np.array([-1.0, 2.0]), np.array([-1.0, 1.5]), 0.1, 0.7)
    return Xp, Up, X, U


# (n0, m, reg) as multiples of M for n0 and m where marked; m <= n0 always
CASES = {
    "pooled_M": (1.0, 1.0, 0.0),
    "pooled_M_ridge": (1.0, 1.0, 0.05),
    "weighted": (0.35, 0.35, 0.0),
    "weak_mean": (1.0, 0.25, 0.0),
    "no_mean_ridge": (0.1, 0.0, 0.02),
}


@pytest.mark.parametrize("case", list(CASES))
def test_niw_fit_equals_weighted_pooled_regression(pooled_data, case):
    Xp, Up, X, U = pooled_data
    n0_rel, m_rel, reg = CASES[case]
    prior_pts = np.concatenate([Xp[:, :-1], Up, Xp[:, 1:]], axis=-1).reshape(-1, 2 * NX + NU)
    M = len(prior_pts)
    n0, m = n0_rel * M, m_rel * M
    prior = DynamicsPrior(strength=n0, mean_strength=m)
    prior.update(Xp, Up)
    fit = fit_linear_gaussian(X, U, prior=prior, reg=reg, min_noise_var=1e-300)
    n, T = U.shape[:2]
    mu0 = prior_pts.mean(axis=0)
    var_p = prior_pts.var(axis=0)
    assert var_p.min() >= 1e-6 * var_p.mean()  # the jitter is then 1e-6 var_i + 1e-12
    e = n0 / (n + n0) * (1e-6 * var_p.max() + 1e-12)
    s = 1.0 - np.sqrt(m * (n + n0) / (n0 * (n + m)))
    max_dF = 0.0
    for t in range(T):
        local = np.concatenate([X[:, t], U[:, t], X[:, t + 1]], axis=1)
        mun = local.mean(axis=0)
        moved = prior_pts + s * (mun - mu0)
        pts = np.vstack([local, moved])
        w = np.concatenate([np.ones(n), np.full(M, n0 / M)])
        W = n + n0
        F, _, resid_cov = weighted_ridge(pts[:, :NZ], pts[:, NZ:], w, W * reg)
        f_local = mun[NZ:] - F @ mun[:NZ]
        N = resid_cov + reg * F @ F.T
        # analytic bound for the prior's diagonal jitter (see module docstring)
        zc = pts[:, :NZ] - (w @ pts[:, :NZ]) / W
        A_zz = (w[:, None] * zc).T @ zc / W + reg * np.eye(NZ)
        inv_norm = 1.0 / np.linalg.eigvalsh(A_zz).min()
        Ft = fit.F[t]
        bound_F = np.linalg.norm(Ft, 2) * e * inv_norm + 1e-10
        assert bound_F < 1e-4
        assert np.linalg.norm(Ft - F, 2) <= bound_F, (t, Ft, F)
        assert np.linalg.norm(fit.f[t] - f_local) <= bound_F * np.linalg.norm(mun[:NZ]) + 1e-10
        bound_N = e + np.linalg.norm(F, 2) * e * np.linalg.norm(Ft, 2) + 1e-10
        assert np.linalg.norm(fit.N[t] - N, 2) <= bound_N, (t, fit.N[t], N)
        # the oracle is not trivially close to the local-only regression: the prior matters
        F_loc, _, _ = weighted_ridge(local[:, :NZ], local[:, NZ:], np.ones(n), 0.0)
        max_dF = max(max_dF, np.abs(F_loc - F).max())
    assert max_dF > 0.05


def test_mean_term_and_weights_change_the_oracle(pooled_data):
    """Guard for the test data: the two terms the review mutated make a visible difference."""
    Xp, Up, X, U = pooled_data
    prior_pts = np.concatenate([Xp[:, :-1], Up, Xp[:, 1:]], axis=-1).reshape(-1, 2 * NX + NU)
    M, n = len(prior_pts), U.shape[0]
    local = np.concatenate([X[:, 0], U[:, 0], X[:, 1]], axis=1)
    w = np.concatenate([np.ones(n), np.ones(M)])
    pooled, _, _ = weighted_ridge(
        np.vstack([local, prior_pts])[:, :NZ], np.vstack([local, prior_pts])[:, NZ:], w, 0.0
    )
    centred = prior_pts + (local.mean(0) - prior_pts.mean(0))  # as if the mean term were gone
    no_mean, _, _ = weighted_ridge(
        np.vstack([local, centred])[:, :NZ], np.vstack([local, centred])[:, NZ:], w, 0.0
    )
    w1 = np.concatenate([np.full(n, 1.0 / n), np.ones(M)])  # local data weighted 1, not n
    misweighted, _, _ = weighted_ridge(
        np.vstack([local, prior_pts])[:, :NZ], np.vstack([local, prior_pts])[:, NZ:], w1, 0.0
    )
    assert np.abs(pooled - no_mean).max() > 0.05
    assert np.abs(pooled - misweighted).max() > 0.05


def test_condition_gaussian_reg_is_ridge_on_the_diagonal():
    """reg must act as a ridge penalty (diagonal), which makes a singular block solvable."""
    rng = np.random.default_rng(3)
    Z = rng.standard_normal((40, 3))
    Z[:, 2] = Z[:, 0] + Z[:, 1]  # exactly collinear inputs: the z block is singular
    Y = Z @ np.array([[1.0, -2.0, 0.5], [0.3, 0.0, 1.0]]).T + 0.1 * rng.standard_normal((40, 2))
    pts = np.hstack([Z, Y])
    mu = pts.mean(0)
    sigma = (pts - mu).T @ (pts - mu) / len(pts)
    lam = 0.1
    F, f, cov = condition_gaussian(mu, sigma, 3, reg=lam)
    F_or, f_or, resid = weighted_ridge(Z, Y, np.ones(40), 40 * lam)
    np.testing.assert_allclose(F, F_or, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(f, f_or, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(cov, resid + lam * F_or @ F_or.T, rtol=1e-9, atol=1e-12)


# --- strongly time-varying system ----------------------------------------------------------------
def test_per_step_fits_recover_strongly_time_varying_dynamics():
    nx, nu, T, n, noise = 3, 2, 8, 40, 0.01
    rng = np.random.default_rng(11)
    A, B = [], []
    for _ in range(T):
        q, _ = np.linalg.qr(rng.standard_normal((nx, nx)))
        A.append(0.9 * q)  # a different rotation/reflection each step
        B.append(0.5 * rng.standard_normal((nx, nu)))
    F_true = np.concatenate([np.stack(A), np.stack(B)], axis=2)
    X = np.empty((n, T + 1, nx))
    U = rng.standard_normal((n, T, nu))
    X[:, 0] = 2.0 * rng.standard_normal((n, nx))  # about the spread of later states
    for t in range(T):
        xu = np.concatenate([X[:, t], U[:, t]], axis=1)
        X[:, t + 1] = xu @ F_true[t].T + noise * rng.standard_normal((n, nx))
    # the system really varies: no single F fits two consecutive steps
    F_mean = F_true.mean(axis=0)
    assert np.abs(F_true - F_mean).max(axis=(1, 2)).min() > 0.5
    prior = DynamicsPrior(max_episodes=40)  # n0 = m = 1 pseudo-sample
    prior.update(X, U)
    fit = fit_linear_gaussian(X, U, prior=prior)
    err = np.abs(fit.F - F_true).max(axis=(1, 2))
    # The NIW estimate is (n S + n0 Sigma0 ...) / (n + n0): a bias towards the pooled fit of
    # about n0 / (n + n0) = 2.4 % of |F_t - F_mean| (measured max 0.044; least squares alone
    # 0.004). Weighing the local scatter like one sample instead of n gives a bias of ~50 %.
    assert err.max() < 0.1, err
    assert np.abs(fit.f).max() < 0.1
    # each step's fit is far closer to its own F_t than to any other step's
    for t in range(T):
        others = [np.abs(fit.F[t] - F_true[s]).max() for s in range(T) if s != t]
        assert min(others) > 3 * err[t]
