"""Tests of the iLQG step with a KL trust region and of the linear-Gaussian controller."""

from __future__ import annotations

import numpy as np
import pytest

from naf_ros.core.dynamics import DynamicsPrior, LinearGaussianDynamics, fit_linear_gaussian
from naf_ros.core.ilqg import (
    ILQGOptimizer,
    QuuNotPositiveDefinite,
    backward_pass,
    expected_return,
    ilqg_step,
    quadratize_reward,
    trajectory_distribution,
    trajectory_kl,
)
from naf_ros.core.lin_gauss_policy import LinearGaussianController

NX, NU, T = 4, 2, 15


def make_system(seed: int = 0, noise: float = 0.01) -> tuple[LinearGaussianDynamics, dict]:
    """Time-invariant x' = A x + B u + noise with reward -(½xᵀQx + qᵀx + ½uᵀRu)."""
    rng = np.random.default_rng(seed)
    A = np.eye(NX) + 0.1 * rng.standard_normal((NX, NX))
    B = 0.3 * rng.standard_normal((NX, NU))
    Q = np.diag(rng.uniform(0.5, 2.0, NX))
    R = np.diag(rng.uniform(0.1, 1.0, NU))
    q = rng.standard_normal(NX)
    dyn = LinearGaussianDynamics(
        F=np.tile(np.hstack([A, B]), (T, 1, 1)),
        f=np.zeros((T, NX)),
        N=np.tile(noise * np.eye(NX), (T, 1, 1)),
        x0_mean=np.ones(NX),
        x0_cov=0.05 * np.eye(NX),
    )
    return dyn, {"A": A, "B": B, "Q": Q, "R": R, "q": q}


def quadratic_reward(p: dict, r_uu_sign: float = -1.0):
    Q, R, q = p["Q"], p["R"], p["q"]

    def rd(x, u):
        r = -(0.5 * x @ Q @ x + q @ x) + r_uu_sign * 0.5 * u @ R @ u
        return r, -(Q @ x + q), r_uu_sign * R @ u, -Q, r_uu_sign * R, np.zeros((NU, NX))

    return rd


def random_controller(rng: np.random.Generator, scale: float = 0.3, bound: float = 1e3):
    cov = np.empty((T, NU, NU))
    for t in range(T):
        a = rng.standard_normal((NU, NU))
        cov[t] = 0.1 * (a @ a.T) + 0.05 * np.eye(NU)
    return LinearGaussianController(
        K=scale * rng.standard_normal((T, NU, NX)),
        k=scale * rng.standard_normal((T, NU)),
        x_hat=rng.standard_normal((T, NX)),
        u_hat=scale * rng.standard_normal((T, NU)),
        cov=cov,
        low=-bound,
        high=bound,
    )


def riccati(p: dict) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Textbook finite-horizon discrete Riccati recursion (no terminal reward at x_T)."""
    A, B, Q, R, q = p["A"], p["B"], p["Q"], p["R"], p["q"]
    P, s = np.zeros((NX, NX)), np.zeros(NX)
    Ks, ks, covs = [None] * T, [None] * T, [None] * T
    for t in reversed(range(T)):
        G = R + B.T @ P @ B
        K = -np.linalg.solve(G, B.T @ P @ A)
        k = -np.linalg.solve(G, B.T @ s)
        Ks[t], ks[t], covs[t] = K, k, np.linalg.inv(G)
        P = Q + A.T @ P @ A - A.T @ P @ B @ np.linalg.solve(G, B.T @ P @ A)
        s = q + (A + B @ K).T @ s
    return Ks, ks, covs


# --- backward pass vs Riccati ---------------------------------------------------------------------
def test_backward_pass_matches_riccati():
    dyn, p = make_system()
    ctrl0 = LinearGaussianController.initial(T, NX, NU, 0.5, low=-1e3, high=1e3)
    C, c, _, _ = quadratize_reward(quadratic_reward(p), trajectory_distribution(dyn, ctrl0))
    res = backward_pass(dyn, C, c, cov_scale=2.0)
    Ks, ks, covs = riccati(p)
    for t in range(T):
        np.testing.assert_allclose(res.K[t], Ks[t], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(res.a[t], ks[t], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(res.cov[t], 2.0 * covs[t], rtol=1e-9)
    # KL-augmented pass with eta -> 0 (weak trust region) tends to the same gains
    prev = random_controller(np.random.default_rng(1))
    res_kl = backward_pass(dyn, C, c, prev=prev, eta=1e-9)
    for t in range(T):
        np.testing.assert_allclose(res_kl.K[t], Ks[t], rtol=1e-5, atol=1e-6)


def test_backward_pass_with_huge_eta_reproduces_previous_controller():
    """eta -> inf: the KL term dominates and the old controller is the optimum (KL = 0)."""
    dyn, p = make_system()
    prev = random_controller(np.random.default_rng(5))
    C, c, _, _ = quadratize_reward(quadratic_reward(p), trajectory_distribution(dyn, prev))
    res = backward_pass(dyn, C, c, prev=prev, eta=1e12)
    K_old, a_old = prev.absolute_gains()
    np.testing.assert_allclose(res.K, K_old, atol=1e-8)
    np.testing.assert_allclose(res.a, a_old, atol=1e-8)
    np.testing.assert_allclose(res.cov, prev.cov, atol=1e-8)


def test_backward_pass_raises_on_non_convex_cost():
    dyn, p = make_system()
    ctrl0 = LinearGaussianController.initial(T, NX, NU, 0.5)
    C, c, _, _ = quadratize_reward(quadratic_reward(p, +1.0), trajectory_distribution(dyn, ctrl0))
    with pytest.raises(QuuNotPositiveDefinite):
        backward_pass(dyn, C, c)


# --- KL between trajectory distributions ----------------------------------------------------------
def _log_policy(ctrl: LinearGaussianController, t: int, x: np.ndarray, u: np.ndarray):
    z = np.linalg.solve(ctrl.chol[t], (u - ctrl.mean_action(t, x)).T).T
    return -0.5 * (z * z).sum(1) - np.log(np.diag(ctrl.chol[t])).sum()


def test_trajectory_kl_matches_monte_carlo():
    dyn, _ = make_system(noise=0.05)
    rng = np.random.default_rng(2)
    old = random_controller(rng)
    arrays = old.to_arrays()  # a nearby controller, as after one trust-region step
    arrays["K"] = arrays["K"] + 0.05 * rng.standard_normal(arrays["K"].shape)
    arrays["k"] = arrays["k"] + 0.05 * rng.standard_normal(arrays["k"].shape)
    arrays["cov"] = 0.6 * arrays["cov"] + 0.02 * np.eye(NU)
    new = LinearGaussianController.from_arrays(arrays)
    analytic = trajectory_kl(dyn, new, old)
    M = 40_000
    x = dyn.x0_mean + rng.standard_normal((M, NX)) @ np.linalg.cholesky(dyn.x0_cov).T
    log_ratio = np.zeros(M)
    for t in range(T):
        u = new.act(t, x, rng)  # bounds are wide: no clipping
        log_ratio += _log_policy(new, t, x, u) - _log_policy(old, t, x, u)
        x = dyn.sample(t, x, u, rng)
    mc, se = log_ratio.mean(), log_ratio.std() / np.sqrt(M)
    # measured: analytic 6.030, MC 6.031 +- 0.018 (s.e.)
    assert abs(mc - analytic) < 4 * se and abs(mc - analytic) < 0.02 * analytic, (mc, se, analytic)
    assert trajectory_kl(dyn, new, new) == pytest.approx(0.0, abs=1e-9)


# --- eta search -----------------------------------------------------------------------------------
@pytest.mark.parametrize("epsilon", [0.5, 2.0, 10.0, 40.0])
def test_eta_search_meets_kl_band(epsilon):
    dyn, p = make_system()
    rd = quadratic_reward(p)
    prev = LinearGaussianController.initial(T, NX, NU, 0.5, low=-5.0, high=5.0)
    ctrl, info = ilqg_step(dyn, prev, rd, epsilon)
    assert info["fallback"] is None
    kl = trajectory_kl(dyn, ctrl, prev)
    assert abs(kl - epsilon) <= 0.1 * epsilon, info
    assert kl == pytest.approx(info["kl"])
    j_old = expected_return(rd, trajectory_distribution(dyn, prev))
    j_new = expected_return(rd, trajectory_distribution(dyn, ctrl))
    assert j_new > j_old
    assert info["n_evals"] <= 15


def test_larger_trust_region_gives_more_improvement():
    dyn, p = make_system()
    rd = quadratic_reward(p)
    prev = LinearGaussianController.initial(T, NX, NU, 0.5, low=-5.0, high=5.0)
    gains = []
    for eps in (0.5, 2.0, 10.0):
        ctrl, info = ilqg_step(dyn, prev, rd, eps)
        gains.append(expected_return(rd, trajectory_distribution(dyn, ctrl)))
        assert info["eta"] > 0
    assert gains[0] < gains[1] < gains[2]


# --- robustness -----------------------------------------------------------------------------------
def test_non_pd_quu_escalates_eta_without_crashing():
    dyn, p = make_system()
    rd = quadratic_reward(p, r_uu_sign=+1.0)  # reward convex in u: Q_uu has the wrong sign
    prev = LinearGaussianController.initial(T, NX, NU, 0.5, low=-2.0, high=2.0)
    ctrl, info = ilqg_step(dyn, prev, rd, 1.0, eta_init=1e-3)
    assert info["n_escalations"] > 0
    assert info["fallback"] is None and abs(info["kl"] - 1.0) <= 0.1
    assert all(np.isfinite(v).all() for v in ctrl.to_arrays().values())


def test_fallbacks_return_previous_controller():
    dyn, p = make_system()
    prev = LinearGaussianController.initial(T, NX, NU, 0.5)
    # eta may not grow enough to meet a tiny KL bound
    ctrl, info = ilqg_step(dyn, prev, quadratic_reward(p), 1e-3, eta_max=1e-2)
    assert info["fallback"] == "kl_not_met"
    assert ctrl is not prev
    for key, val in prev.to_arrays().items():
        np.testing.assert_array_equal(ctrl.to_arrays()[key], val)
    # Q_uu never positive definite within the bracket
    _, info = ilqg_step(dyn, prev, quadratic_reward(p, +1.0), 1.0, eta_init=1e-4, eta_max=1e-2)
    assert info["fallback"] == "eta_exhausted" and info["n_escalations"] >= 1
    # NaN in the reward expansion

    def nan_reward(x, u):
        out = list(quadratic_reward(p)(x, u))
        out[1] = np.full(NX, np.nan)
        return tuple(out)

    ctrl, info = ilqg_step(dyn, prev, nan_reward, 1.0)
    assert info["fallback"] == "non_finite_reward_expansion"
    np.testing.assert_array_equal(ctrl.K, prev.K)
    opt = ILQGOptimizer(nan_reward)
    X = np.zeros((5, T + 1, NX))
    U = np.zeros((5, T, NU))
    ctrl, info = opt.update(dyn, prev, X, U, returns=np.zeros(5))
    assert opt.n_fallbacks == 1 and info["n_fallbacks"] == 1


def test_actions_respect_bounds():
    dyn, p = make_system()
    p = dict(p, q=20.0 * p["q"])  # strong pull: unconstrained actions far beyond the bounds
    rd = quadratic_reward(p)
    prev = LinearGaussianController.initial(T, NX, NU, 0.1, low=-0.5, high=0.5)
    ctrl, info = ilqg_step(dyn, prev, rd, 50.0)
    assert info["fallback"] is None
    nominal = ctrl.u_hat + ctrl.k  # mean action on the predicted mean trajectory
    assert np.all(nominal >= -0.5 - 1e-12) and np.all(nominal <= 0.5 + 1e-12)
    assert np.abs(nominal).max() == pytest.approx(0.5)  # the clip was active
    rng = np.random.default_rng(3)
    x = 100.0 * rng.standard_normal((1000, NX))
    x[0, 1] = np.nan
    for t in range(T):
        u = ctrl.act(t, x, rng)
        assert np.isfinite(u).all() and u.min() >= -0.5 and u.max() <= 0.5
        assert np.all(np.abs(ctrl.act(t, x, noise=False)) <= 0.5)


def test_controller_arrays_round_trip_and_validation():
    ctrl = random_controller(np.random.default_rng(4), bound=2.0)
    arrays = ctrl.to_arrays()
    back = LinearGaussianController.from_arrays(arrays)
    for key, val in arrays.items():
        np.testing.assert_array_equal(getattr(back, key), val)
    np.testing.assert_array_equal(back.chol, ctrl.chol)
    with pytest.raises(ValueError, match="shape"):
        LinearGaussianController.from_arrays(dict(arrays, k=arrays["k"][:-1]))
    with pytest.raises(ValueError, match="shape"):
        LinearGaussianController.from_arrays(dict(arrays, x_hat=arrays["x_hat"][:, :-1]))
    bad = dict(arrays, K=arrays["K"].copy())
    bad["K"][2, 1, 0] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        LinearGaussianController.from_arrays(bad)
    neg = dict(arrays, cov=arrays["cov"].copy())
    neg["cov"][4] = -neg["cov"][4]
    with pytest.raises(ValueError, match="positive definite"):
        LinearGaussianController.from_arrays(neg)
    with pytest.raises(ValueError, match="missing"):
        LinearGaussianController.from_arrays({"K": arrays["K"]})
    with pytest.raises(ValueError, match="bounds"):
        LinearGaussianController.from_arrays(dict(arrays, low=3.0))


# --- step-size adaptation -------------------------------------------------------------------------
def test_optimizer_adapts_kl_step_from_predicted_vs_actual():
    dyn, p = make_system()
    opt = ILQGOptimizer(quadratic_reward(p), kl_step=0.2, min_kl_step=0.01, max_kl_step=1.0)
    ctrl = LinearGaussianController.initial(T, NX, NU, 0.5, low=-5.0, high=5.0)
    X, U = np.zeros((5, T + 1, NX)), np.zeros((5, T, NU))
    ctrl, info = opt.update(dyn, ctrl, X, U, returns=np.full(5, -100.0))
    pred = info["predicted_improvement"]
    assert pred > 0 and info["epsilon"] == pytest.approx(0.2 * T)
    # actual improvement ~ as predicted: the model is trusted, the step grows
    ctrl, info = opt.update(dyn, ctrl, X, U, returns=np.full(5, -100.0 + 0.8 * pred))
    assert info["actual_improvement"] == pytest.approx(0.8 * pred)
    assert info["step_mult"] == pytest.approx(2.5)  # pred / (2 (pred - actual)) = 1 / 0.4
    assert opt.kl_step == pytest.approx(0.5)
    assert info["epsilon"] == pytest.approx(0.5 * T)
    # the return got worse: shrink the step
    before = opt.kl_step
    last_mean = info["mean_return"]
    ctrl, info = opt.update(dyn, ctrl, X, U, returns=np.full(5, last_mean - 1.0))
    assert info["actual_improvement"] < 0 and opt.kl_step < 0.5 * before


def test_optimizer_ignores_non_finite_returns_when_adapting():
    """A NaN mean return (no samples from iLQG) must not poison kl_step (regression)."""
    dyn, p = make_system()
    opt = ILQGOptimizer(quadratic_reward(p), kl_step=0.2, min_kl_step=0.01, max_kl_step=1.0)
    ctrl = LinearGaussianController.initial(T, NX, NU, 0.5, low=-5.0, high=5.0)
    X, U = np.zeros((5, T + 1, NX)), np.zeros((5, T, NU))
    ctrl, _ = opt.update(dyn, ctrl, X, U, returns=np.full(5, np.nan))
    ctrl, info = opt.update(dyn, ctrl, X, U, returns=np.full(5, -100.0))
    ctrl, info = opt.update(dyn, ctrl, X, U, returns=np.full(5, -90.0))
    assert np.isfinite(opt.kl_step) and np.isfinite(info["epsilon"])
    assert 0.01 <= opt.kl_step <= 1.0


# --- end to end on the reacher --------------------------------------------------------------------
def test_reacher_ilqg_improves_return():
    import gymnasium as gym

    import naf_ros.envs  # noqa: F401  (registers the environments)
    from naf_ros.envs import REACHER_FIXED_ID

    env = gym.make(REACHER_FIXED_ID)
    task = env.unwrapped.task
    rng = np.random.default_rng(0)
    horizon, nx, nu = 50, task.obs_dim, task.act_dim

    def rollouts(ctrl: LinearGaussianController, n: int, seed: int):
        X, U, R = np.zeros((n, horizon + 1, nx)), np.zeros((n, horizon, nu)), np.zeros(n)
        for i in range(n):
            x, _ = env.reset(seed=seed + i)
            X[i, 0] = x
            for t in range(horizon):
                U[i, t] = ctrl.act(t, x, rng)
                x, r, terminated, truncated, _ = env.step(U[i, t])
                X[i, t + 1], R[i] = x, R[i] + r
                assert not terminated and (truncated == (t == horizon - 1))
        return X, U, R

    ctrl = LinearGaussianController.initial(horizon, nx, nu, 0.1)
    prior = DynamicsPrior(max_episodes=20)
    opt = ILQGOptimizer(task.reward_derivatives, task.reward, kl_step=0.2)
    returns = []
    for it in range(6):
        X, U, R = rollouts(ctrl, 5, seed=100 * it)
        assert np.all(np.abs(U) <= 1.0)
        returns.append(R.mean())
        prior.update(X, U)
        dyn = fit_linear_gaussian(X, U, prior=prior)
        ctrl, info = opt.update(dyn, ctrl, X, U, returns=R)
        assert info["fallback"] is None, info
    _, _, R = rollouts(ctrl, 5, seed=10_000)
    returns.append(R.mean())
    # measured: -14.6 (random initial controller) -> -2.7 after 6 iterations, ~2 s
    assert returns[-1] > returns[0] + 8.0, returns
    assert returns[-1] > max(returns[:3]), returns
