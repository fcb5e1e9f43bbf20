"""iLQG against oracles written independently of naf_ros.core.ilqg (plain numpy only).

Two oracles, both for time-varying dynamics *with* an offset f_t (the existing Riccati
reference uses f = 0, so dropping f_t from the backward pass went unnoticed):

1. An augmented-state Riccati recursion: with w = [x; 1] the affine dynamics
   x' = A x + B u + f become linear, w' = [[A, f], [0, 1]] w + [B; 0] u, and the quadratic
   cost with linear terms becomes a pure quadratic form in [w; u]. The textbook LQR
   recursion on w then gives K_t and the offset a_t (last column of the augmented gain)
   and the max-entropy covariance G_t^-1, G_t = R + B~^T P B~. The KL-augmented cost
   c/eta - log pi_old(u|x) is quadratic in [w; u] too, so the same recursion covers it.

2. Optimality of the Lagrangian J - eta KL for the controller iLQG returns: J (expected sum
   of rewards) and KL(p_new(tau) || p_old(tau)) are evaluated exactly from the joint
   Gaussian over the *whole* trajectory tau = (x_0, u_0, ..., u_{T-1}, x_T), built as
   tau = (I - B)^-1 (b + e) from the linear recursion, and the KL is the closed form between
   two Gaussians of dimension T (nx + nu) + nx. No per-step KL formula is shared with the
   implementation. The maximiser over all policies of J - eta KL is the max-entropy LQR
   solution for cost/eta - log pi_old, so every perturbation of K, k or the covariance
   must lower the objective. Everything is exact (no sampling), so the tolerance only has
   to absorb float64 round-off: |objective| is O(10-100) here and the linear algebra is on
   28x28 well-conditioned matrices, so 1e-9 relative is many orders above round-off, while
   the smallest perturbation (1e-3) lowers an exact optimum by ~1e-6 and improves a wrong
   one at first order.
"""

from __future__ import annotations

import numpy as np
import pytest

from naf_ros.core.dynamics import LinearGaussianDynamics
from naf_ros.core.ilqg import (
    backward_pass,
    ilqg_step,
    quadratize_reward,
    trajectory_distribution,
)
from naf_ros.core.lin_gauss_policy import LinearGaussianController

NX, NU, T = 3, 2, 5
BOUND = 1e3  # action bounds far away: no clipping, so the optimum is the unconstrained one


# --- problem ----------------------------------------------------------------------------------
def make_problem(seed: int = 0) -> tuple[LinearGaussianDynamics, dict]:
    """Strongly time-varying affine dynamics with large offsets and a quadratic reward
    r(x, u) = -(½xᵀQx + qᵀx + ½uᵀRu + uᵀSx + sᵀu) that has cross and linear terms."""
    rng = np.random.default_rng(seed)
    A = np.stack([np.eye(NX) + 0.3 * rng.standard_normal((NX, NX)) for _ in range(T)])
    B = 0.5 * rng.standard_normal((T, NX, NU))
    f = 1.5 * rng.standard_normal((T, NX))  # the term under test: far from zero
    N = np.stack([0.02 * np.eye(NX) + 0.01 * _spd(rng, NX) for _ in range(T)])
    dyn = LinearGaussianDynamics(
        F=np.concatenate([A, B], axis=2),
        f=f,
        N=N,
        x0_mean=rng.standard_normal(NX),
        x0_cov=0.05 * np.eye(NX) + 0.02 * _spd(rng, NX),
    )
    Q = _spd(rng, NX) + 0.5 * np.eye(NX)
    R = 0.5 * _spd(rng, NU) + 0.3 * np.eye(NU)
    S = 0.2 * rng.standard_normal((NU, NX))
    p = {
        "A": A,
        "B": B,
        "f": f,
        "N": N,
        "Q": Q,
        "q": rng.standard_normal(NX),
        "R": R,
        "S": S,
        "s": rng.standard_normal(NU),
    }
    return dyn, p


def _spd(rng: np.random.Generator, n: int) -> np.ndarray:
    a = rng.standard_normal((n, n))
    return a @ a.T / n


def reward_derivatives(p: dict):
    Q, q, R, S, s = p["Q"], p["q"], p["R"], p["S"], p["s"]

    def rd(x, u):
        r = -(0.5 * x @ Q @ x + q @ x + 0.5 * u @ R @ u + u @ S @ x + s @ u)
        return r, -(Q @ x + q + S.T @ u), -(R @ u + S @ x + s), -Q, -R, -S

    return rd


def old_controller(seed: int = 1) -> LinearGaussianController:
    rng = np.random.default_rng(seed)
    return LinearGaussianController(
        K=0.3 * rng.standard_normal((T, NU, NX)),
        k=0.3 * rng.standard_normal((T, NU)),
        x_hat=rng.standard_normal((T, NX)),
        u_hat=0.3 * rng.standard_normal((T, NU)),
        cov=np.stack([0.2 * _spd(rng, NU) + 0.1 * np.eye(NU) for _ in range(T)]),
        low=-BOUND,
        high=BOUND,
    )


def absolute(ctrl_arrays: dict) -> tuple[np.ndarray, np.ndarray]:
    """u = u_hat + k + K (x - x_hat) written as u = K x + a."""
    K = ctrl_arrays["K"]
    a = ctrl_arrays["u_hat"] + ctrl_arrays["k"] - np.einsum("tij,tj->ti", K, ctrl_arrays["x_hat"])
    return K, a


# --- oracle 1: augmented-state Riccati ---------------------------------------------------------
def augmented_riccati(p: dict, old: dict | None = None, eta: float | None = None):
    """Finite-horizon LQR on w = [x; 1] (no terminal cost), optionally for c/eta - log pi_old.

    Per-step cost ½ wᵀW w + uᵀM w + ½ uᵀR u. Returns (K, a, G^-1) per step.
    """
    W = np.zeros((NX + 1, NX + 1))
    W[:NX, :NX], W[:NX, NX], W[NX, :NX] = p["Q"], p["q"], p["q"]
    M = np.hstack([p["S"], p["s"][:, None]])
    R = p["R"]
    Ks, As, covs = np.empty((T, NU, NX)), np.empty((T, NU)), np.empty((T, NU, NU))
    P = np.zeros((NX + 1, NX + 1))
    for t in reversed(range(T)):
        Wt, Mt, Rt = W, M, R
        if old is not None:
            # -log pi_old(u|w) = ½ (u - G w)ᵀ Prec (u - G w) + const, G = [K_old, a_old]
            K_old, a_old = absolute(old)
            G = np.hstack([K_old[t], a_old[t][:, None]])
            prec = np.linalg.inv(old["cov"][t])
            Wt = W / eta + G.T @ prec @ G
            Mt = M / eta - prec @ G
            Rt = R / eta + prec
        At = np.zeros((NX + 1, NX + 1))
        At[:NX, :NX], At[:NX, NX], At[NX, NX] = p["A"][t], p["f"][t], 1.0
        Bt = np.vstack([p["B"][t], np.zeros((1, NU))])
        Gm = Rt + Bt.T @ P @ Bt
        H = Mt + Bt.T @ P @ At
        gain = -np.linalg.solve(Gm, H)
        Ks[t], As[t], covs[t] = gain[:, :NX], gain[:, NX], np.linalg.inv(Gm)
        P = Wt + At.T @ P @ At - H.T @ np.linalg.solve(Gm, H)
        P = 0.5 * (P + P.T)
    return Ks, As, covs


def quadratized(dyn: LinearGaussianDynamics, p: dict, around: LinearGaussianController):
    C, c, _, _ = quadratize_reward(reward_derivatives(p), trajectory_distribution(dyn, around))
    return C, c


def test_backward_pass_with_offsets_matches_augmented_riccati():
    dyn, p = make_problem()
    old = old_controller()
    C, c = quadratized(dyn, p, old)
    res = backward_pass(dyn, C, c, cov_scale=1.7)
    Ks, As, covs = augmented_riccati(p)
    np.testing.assert_allclose(res.K, Ks, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(res.a, As, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(res.cov, 1.7 * covs, rtol=1e-8, atol=1e-12)
    # The offsets matter here: with f = 0 the recursion gives clearly different a_t.
    p0 = {**p, "f": np.zeros_like(p["f"])}
    assert np.abs(augmented_riccati(p0)[1] - As).max() > 0.1


@pytest.mark.parametrize("eta", [0.2, 1.0, 7.0])
def test_kl_augmented_backward_pass_matches_augmented_riccati(eta):
    dyn, p = make_problem()
    old = old_controller()
    C, c = quadratized(dyn, p, old)
    res = backward_pass(dyn, C, c, prev=old, eta=eta)
    Ks, As, covs = augmented_riccati(p, old=old.to_arrays(), eta=eta)
    np.testing.assert_allclose(res.K, Ks, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(res.a, As, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(res.cov, covs, rtol=1e-8, atol=1e-12)


# --- oracle 2: exact J and KL from the joint trajectory Gaussian -------------------------------
def trajectory_gaussian(p: dict, x0_mean, x0_cov, K, a, cov) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of tau = (x_0, u_0, x_1, ..., u_{T-1}, x_T) under u ~ N(Kx + a, cov).

    tau = B tau + b + e with B strictly block lower-triangular and e ~ N(0, Omega)
    independent across blocks, so tau = (I - B)^-1 (b + e).
    """
    d = NX + NU
    D = T * d + NX
    Bm, b, Om = np.zeros((D, D)), np.zeros(D), np.zeros((D, D))

    def xs(t):
        return slice(t * d, t * d + NX)

    def us(t):
        return slice(t * d + NX, (t + 1) * d)

    b[xs(0)], Om[xs(0), xs(0)] = x0_mean, x0_cov
    for t in range(T):
        Bm[us(t), xs(t)], b[us(t)], Om[us(t), us(t)] = K[t], a[t], cov[t]
        Bm[xs(t + 1), xs(t)], Bm[xs(t + 1), us(t)] = p["A"][t], p["B"][t]
        b[xs(t + 1)], Om[xs(t + 1), xs(t + 1)] = p["f"][t], p["N"][t]
    inv = np.linalg.inv(np.eye(D) - Bm)
    return inv @ b, inv @ Om @ inv.T


def exact_return(p: dict, mu: np.ndarray, sigma: np.ndarray) -> float:
    """E[sum_t r(x_t, u_t)] for the quadratic reward: r(mean) + ½ tr(Hess Sigma), exactly."""
    d = NX + NU
    Hc = np.block([[p["Q"], p["S"].T], [p["S"], p["R"]]])  # cost Hessian in z = [x; u]
    g = np.concatenate([p["q"], p["s"]])
    total = 0.0
    for t in range(T):
        z, Sz = mu[t * d : (t + 1) * d], sigma[t * d : (t + 1) * d, t * d : (t + 1) * d]
        total -= 0.5 * z @ Hc @ z + g @ z + 0.5 * np.trace(Hc @ Sz)
    return float(total)


def gaussian_kl(mu1, s1, mu0, s0) -> float:
    """KL(N(mu1, s1) || N(mu0, s0))."""
    dm = mu0 - mu1
    _, ld0 = np.linalg.slogdet(s0)
    _, ld1 = np.linalg.slogdet(s1)
    return float(
        0.5 * (np.trace(np.linalg.solve(s0, s1)) + dm @ np.linalg.solve(s0, dm) - len(mu1))
        + 0.5 * (ld0 - ld1)
    )


def lagrangian(dyn, p, new: dict, old: dict, eta: float) -> float:
    """J(new) - eta KL(p_new(tau) || p_old(tau)), both exact."""
    mu1, s1 = trajectory_gaussian(p, dyn.x0_mean, dyn.x0_cov, *absolute(new), new["cov"])
    mu0, s0 = trajectory_gaussian(p, dyn.x0_mean, dyn.x0_cov, *absolute(old), old["cov"])
    return exact_return(p, mu1, s1) - eta * gaussian_kl(mu1, s1, mu0, s0)


def perturbed(arrays: dict, rng: np.random.Generator, scale: float, which: str) -> dict:
    out = {k: np.array(v, copy=True) for k, v in arrays.items()}
    if which in ("K", "all"):
        out["K"] += scale * rng.standard_normal(out["K"].shape)
    if which in ("k", "all"):
        out["k"] += scale * rng.standard_normal(out["k"].shape)
    if which in ("cov", "all"):
        for t in range(T):  # cov' = L (I + s E) Lᵀ stays positive definite for |s E| < 1
            L = np.linalg.cholesky(out["cov"][t])
            E = rng.uniform(-1.0, 1.0, (NU, NU))
            E = 0.5 * (E + E.T) / max(1.0, np.abs(np.linalg.eigvalsh(0.5 * (E + E.T))).max())
            out["cov"][t] = L @ (np.eye(NU) + min(scale, 0.5) * E) @ L.T
    return out


def assert_no_perturbation_improves(dyn, p, new: dict, old: dict, eta: float) -> None:
    rng = np.random.default_rng(7)
    best = lagrangian(dyn, p, new, old, eta)
    tol = 1e-9 * max(1.0, abs(best))
    worst_gain = -np.inf
    for which in ("K", "k", "cov", "all"):
        for scale in (1e-1, 1e-2, 1e-3):
            for _ in range(4):
                delta = perturbed(new, rng, scale, which)
                for sign in (1.0, -1.0):  # both directions: a wrong optimum improves on one
                    cand = {k: new[k] + sign * (delta[k] - new[k]) for k in ("K", "k")}
                    cand = {**new, **cand}
                    if which in ("cov", "all"):
                        cand["cov"] = delta["cov"] if sign > 0 else 2 * new["cov"] - delta["cov"]
                        if np.linalg.eigvalsh(cand["cov"]).min() <= 0:
                            continue
                    gain = lagrangian(dyn, p, cand, old, eta) - best
                    worst_gain = max(worst_gain, gain)
                    assert gain <= tol, (which, scale, sign, gain, best)
    assert worst_gain < 0.0


def test_oracle_objective_is_sensitive():
    """Guard for the oracle itself: the old controller is far from optimal at eta = 1."""
    dyn, p = make_problem()
    old = old_controller().to_arrays()
    C, c = quadratized(dyn, p, LinearGaussianController.from_arrays(old))
    res = backward_pass(dyn, C, c, prev=LinearGaussianController.from_arrays(old), eta=1.0)
    new = {**old, "K": res.K, "k": res.a, "x_hat": np.zeros((T, NX)), "u_hat": np.zeros((T, NU))}
    new["cov"] = res.cov
    assert lagrangian(dyn, p, new, old, 1.0) > lagrangian(dyn, p, old, old, 1.0) + 1.0
    assert (
        abs(
            lagrangian(dyn, p, old, old, 1.0)
            - exact_return(
                p, *trajectory_gaussian(p, dyn.x0_mean, dyn.x0_cov, *absolute(old), old["cov"])
            )
        )
        < 1e-9
    )


@pytest.mark.parametrize("eta", [0.3, 3.0])
def test_backward_pass_at_fixed_eta_maximises_kl_penalised_return(eta):
    dyn, p = make_problem()
    old = old_controller()
    C, c = quadratized(dyn, p, old)
    res = backward_pass(dyn, C, c, prev=old, eta=eta)
    new = LinearGaussianController(
        K=res.K,
        k=res.a,
        x_hat=np.zeros((T, NX)),
        u_hat=np.zeros((T, NU)),
        cov=res.cov,
        low=-BOUND,
        high=BOUND,
    )
    assert_no_perturbation_improves(dyn, p, new.to_arrays(), old.to_arrays(), eta)


def test_ilqg_step_controller_maximises_kl_penalised_return_at_its_eta():
    """The controller one iLQG step returns (in u_hat + k + K (x - x_hat) form, around the
    predicted mean states) is the exact maximiser of J - eta KL at the eta it settled on."""
    dyn, p = make_problem()
    old = old_controller()
    epsilon = 2.0
    ctrl, info = ilqg_step(dyn, old, reward_derivatives(p), epsilon, min_action_var=0.0)
    assert info["fallback"] is None, info
    eta = info["eta"]
    assert 1e-3 < eta < 1e3, info  # the trust region is active: a real trade-off
    new, prev = ctrl.to_arrays(), old.to_arrays()
    mu1, s1 = trajectory_gaussian(p, dyn.x0_mean, dyn.x0_cov, *absolute(new), new["cov"])
    mu0, s0 = trajectory_gaussian(p, dyn.x0_mean, dyn.x0_cov, *absolute(prev), prev["cov"])
    assert gaussian_kl(mu1, s1, mu0, s0) == pytest.approx(epsilon, rel=0.11)
    assert_no_perturbation_improves(dyn, p, new, prev, eta)
