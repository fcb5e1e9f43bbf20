"""One iLQG step with a KL trust region on fitted linear-Gaussian dynamics (paper app. 8.1).

The new controller maximises E[sum_t r(x_t, u_t)] under the fitted model subject to
KL(p_new(tau) || p_old(tau)) <= epsilon. Both trajectory distributions share the dynamics, so
the KL reduces to the expected per-step KL between the controllers' action conditionals, and
the Lagrangian is solved by a maximum-entropy LQR on the augmented cost
``c(x, u) / eta - log pi_old(u | x)`` (c = -r). The dual variable eta is found by geometric
bisection; the step size epsilon is adapted from predicted vs. actual improvement.

Internally everything is in *costs* and in absolute coordinates (u = K x + a); the public
controller keeps the paper's form u = u_hat + k + K (x - x_hat).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from naf_ros.core.dynamics import LinearGaussianDynamics
from naf_ros.core.lin_gauss_policy import LinearGaussianController
from naf_ros.core.linalg import chol_inv, floor_eig, sym

__all__ = [
    "ILQGOptimizer",
    "QuuNotPositiveDefinite",
    "RewardDerivatives",
    "TrajectoryDistribution",
    "backward_pass",
    "expected_return",
    "ilqg_step",
    "per_step_kl",
    "propagate",
    "quadratize_reward",
    "trajectory_distribution",
    "trajectory_kl",
]

#: ``(x, u) -> (r, r_x, r_u, r_xx, r_uu, r_ux)`` at a single point (rewards are maximised).
RewardDerivatives = Callable[[np.ndarray, np.ndarray], tuple]


class QuuNotPositiveDefinite(np.linalg.LinAlgError):
    """Raised by :func:`backward_pass` when the augmented cost is not convex in u at step t."""

    def __init__(self, t: int) -> None:
        super().__init__(f"Q_uu not positive definite at t={t}")
        self.t = t


# --------------------------------------------------------------------------------------
# trajectory distributions under a controller
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


def propagate(
    dynamics: LinearGaussianDynamics,
    K: np.ndarray,
    a: np.ndarray,
    cov: np.ndarray,
    low: np.ndarray | None = None,
    high: np.ndarray | None = None,
) -> tuple[TrajectoryDistribution, np.ndarray]:
    """Forward pass of u_t ~ N(K_t x_t + a_t, cov_t) through ``dynamics`` (full covariances).

    If ``low``/``high`` are given, the *mean* action on the predicted mean trajectory is
    clipped by shifting a_t, so the nominal plan respects the action limits. Returns the
    distribution and the (possibly shifted) offsets a_t.
    """
    T, nx, nu = dynamics.horizon, dynamics.nx, dynamics.nu
    a = np.array(a, dtype=float, copy=True)
    mu = np.empty((T, nx + nu))
    sigma = np.empty((T, nx + nu, nx + nu))
    mx, sx = dynamics.x0_mean.copy(), dynamics.x0_cov.copy()
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
        sigma[t, nx:, nx:] = sym(ksx @ K[t].T + cov[t])
        mx = dynamics.F[t] @ mu[t] + dynamics.f[t]
        sx = sym(dynamics.F[t] @ sigma[t] @ dynamics.F[t].T + dynamics.N[t])
    return TrajectoryDistribution(mu, sigma, mx, sx, nx), a


def trajectory_distribution(
    dynamics: LinearGaussianDynamics, controller: LinearGaussianController
) -> TrajectoryDistribution:
    """State/action marginals of the linear-Gaussian trajectory under ``controller``."""
    K, a = controller.absolute_gains()
    return propagate(dynamics, K, a, controller.cov)[0]


# --------------------------------------------------------------------------------------
# building blocks
# --------------------------------------------------------------------------------------
def quadratize_reward(
    reward_derivatives: RewardDerivatives, traj: TrajectoryDistribution
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Second-order expansion of the reward at the trajectory means, as absolute costs.

    Returns ``(C, c, r, H)``: cost(z) ≈ ½ zᵀC_t z + c_tᵀ z + const for z = [x; u], the reward
    r_t at the means and its Hessian H_t (for the Laplace estimate of the expected return).
    """
    T, D = traj.mu.shape
    nx = traj.nx
    C = np.empty((T, D, D))
    c = np.empty((T, D))
    r = np.empty(T)
    for t in range(T):
        x, u = traj.mu[t, :nx], traj.mu[t, nx:]
        rt, r_x, r_u, r_xx, r_uu, r_ux = reward_derivatives(x, u)
        H = np.block([[np.asarray(r_xx), np.asarray(r_ux).T], [np.asarray(r_ux), np.asarray(r_uu)]])
        g = np.concatenate([np.ravel(r_x), np.ravel(r_u)])
        C[t] = -sym(H)
        c[t] = -g - C[t] @ traj.mu[t]
        r[t] = rt
    return C, c, r, -C


def expected_return(reward_derivatives: RewardDerivatives, traj: TrajectoryDistribution) -> float:
    """Laplace estimate E[sum r] ≈ sum_t r(mu_t) + ½ tr(H_t Sigma_t)."""
    _, _, r, H = quadratize_reward(reward_derivatives, traj)
    return float(r.sum() + 0.5 * np.einsum("tij,tji->", H, traj.sigma))


@dataclass
class BackwardResult:
    K: np.ndarray  # (T, nu, nx)
    a: np.ndarray  # (T, nu) absolute offsets: mean action K x + a
    cov: np.ndarray  # (T, nu, nu)


def backward_pass(
    dynamics: LinearGaussianDynamics,
    C: np.ndarray,
    c: np.ndarray,
    prev: LinearGaussianController | None = None,
    eta: float | None = None,
    cov_scale: float = 1.0,
) -> BackwardResult:
    """Maximum-entropy LQR on ``cost/eta - log prev(u|x)`` (or on the plain cost).

    With ``prev``/``eta`` given, the result is the KL-Lagrangian solution for that eta:
    covariance Q̃_uu⁻¹ in the augmented units. Without them it is plain finite-horizon LQR
    (no terminal cost) with covariance ``cov_scale * Q_uu⁻¹`` — the paper's -c Q_uu⁻¹ in
    reward terms. Raises :class:`QuuNotPositiveDefinite` instead of producing NaN.
    """
    T, nx, nu = dynamics.horizon, dynamics.nx, dynamics.nu
    C = np.asarray(C, dtype=float)
    c = np.asarray(c, dtype=float)
    if prev is not None and eta is not None:
        Kp, ap = prev.absolute_gains()
        P = chol_inv(prev.chol)  # (T, nu, nu) precision of the old controller
        PK = P @ Kp
        Pa = np.einsum("tij,tj->ti", P, ap)
        M = np.empty_like(C)
        M[:, :nx, :nx] = np.swapaxes(Kp, 1, 2) @ PK
        M[:, :nx, nx:] = -np.swapaxes(PK, 1, 2)
        M[:, nx:, :nx] = -PK
        M[:, nx:, nx:] = P
        m = np.concatenate([np.einsum("tji,tj->ti", Kp, Pa), -Pa], axis=1)
        C = C / eta + M
        c = c / eta + m
    Kout = np.empty((T, nu, nx))
    aout = np.empty((T, nu))
    cov = np.empty((T, nu, nu))
    V = np.zeros((nx, nx))
    v = np.zeros(nx)
    for t in range(T - 1, -1, -1):
        Ft, ft = dynamics.F[t], dynamics.f[t]
        Q = sym(C[t] + Ft.T @ V @ Ft)
        q = c[t] + Ft.T @ (V @ ft + v)
        Quu, Qux, qu = Q[nx:, nx:], Q[nx:, :nx], q[nx:]
        try:
            L = np.linalg.cholesky(Quu)
        except np.linalg.LinAlgError as exc:
            raise QuuNotPositiveDefinite(t) from exc
        if not np.all(np.isfinite(L)):
            raise QuuNotPositiveDefinite(t)
        Quu_inv = chol_inv(L)
        Kt = -Quu_inv @ Qux
        at = -Quu_inv @ qu
        Kout[t], aout[t], cov[t] = Kt, at, Quu_inv
        V = sym(Q[:nx, :nx] + Q[:nx, nx:] @ Kt)
        v = q[:nx] + Q[:nx, nx:] @ at
    if prev is None or eta is None:
        cov = cov * cov_scale
    return BackwardResult(Kout, aout, cov)


def per_step_kl(
    dynamics: LinearGaussianDynamics,
    ctrl_new: LinearGaussianController,
    ctrl_old: LinearGaussianController,
    traj_new: TrajectoryDistribution | None = None,
) -> np.ndarray:
    """E_{x_t ~ p_new}[KL(new(u|x_t) || old(u|x_t))] for each t (dynamics terms cancel)."""
    if traj_new is None:
        traj_new = trajectory_distribution(dynamics, ctrl_new)
    Kn, an = ctrl_new.absolute_gains()
    Ko, ao = ctrl_old.absolute_gains()
    nu = ctrl_new.nu
    P = chol_inv(ctrl_old.chol)
    mx, Sx = traj_new.state_mean, traj_new.state_cov
    dK = Kn - Ko
    delta = np.einsum("tij,tj->ti", dK, mx) + an - ao
    logdet_old = 2.0 * np.log(np.diagonal(ctrl_old.chol, axis1=1, axis2=2)).sum(1)
    logdet_new = 2.0 * np.log(np.diagonal(ctrl_new.chol, axis1=1, axis2=2)).sum(1)
    tr = np.einsum("tij,tji->t", P, ctrl_new.cov)
    quad = np.einsum("ti,tij,tj->t", delta, P, delta)
    feedback = np.einsum("tji,tjk,tkl,tli->t", dK, P, dK, Sx)
    return 0.5 * (tr + quad + feedback - nu + logdet_old - logdet_new)


def trajectory_kl(
    dynamics: LinearGaussianDynamics,
    ctrl_new: LinearGaussianController,
    ctrl_old: LinearGaussianController,
    traj_new: TrajectoryDistribution | None = None,
) -> float:
    """KL(p_new(tau) || p_old(tau)) for two controllers on the same linear-Gaussian model."""
    return float(per_step_kl(dynamics, ctrl_new, ctrl_old, traj_new).sum())


def _controller_from(
    res: BackwardResult,
    traj: TrajectoryDistribution,
    a: np.ndarray,
    u_ref: np.ndarray,
    prev: LinearGaussianController,
    min_action_var: float,
) -> LinearGaussianController:
    """Re-express K x + a as u_hat + k + K (x - x_hat) around the predicted mean states."""
    cov = floor_eig(res.cov, min_action_var) if min_action_var > 0 else res.cov
    x_hat = traj.state_mean
    mean_at_xhat = np.einsum("tij,tj->ti", res.K, x_hat) + a
    return LinearGaussianController(
        K=res.K,
        k=mean_at_xhat - u_ref,
        x_hat=x_hat.copy(),
        u_hat=u_ref.copy(),
        cov=sym(cov),
        low=prev.low,
        high=prev.high,
    )


# --------------------------------------------------------------------------------------
# one iLQG step with the eta search
# --------------------------------------------------------------------------------------
def ilqg_step(
    dynamics: LinearGaussianDynamics,
    prev: LinearGaussianController,
    reward_derivatives: RewardDerivatives,
    epsilon: float,
    eta_init: float = 1.0,
    eta_min: float = 1e-8,
    eta_max: float = 1e16,
    kl_tol: float = 0.1,
    max_iters: int = 60,
    escalate: float = 10.0,
    min_action_var: float = 0.0,
    clip_actions: bool = True,
) -> tuple[LinearGaussianController, dict[str, Any]]:
    """New controller with |KL(new || prev) - epsilon| <= kl_tol * epsilon, or a fallback.

    eta is bracketed in log space: starting from ``eta_init`` it is multiplied/divided by
    ``escalate`` until the KL crosses the band, then bisected geometrically. A Cholesky
    failure of Q̃_uu counts as "eta too small" and escalates eta. If eta leaves
    [eta_min, eta_max] or the band cannot be met, ``prev`` (a copy) is returned with
    ``info["fallback"]`` naming the reason. If even eta_min gives KL below the band the
    constraint is inactive and that controller is returned (``info["constraint_active"]``).
    """
    if not (epsilon > 0 and np.isfinite(epsilon)):
        raise ValueError("epsilon must be a positive finite number")
    if dynamics.horizon != prev.horizon or dynamics.nx != prev.nx or dynamics.nu != prev.nu:
        raise ValueError(
            f"dynamics (T={dynamics.horizon}, nx={dynamics.nx}, nu={dynamics.nu}) and controller "
            f"(T={prev.horizon}, nx={prev.nx}, nu={prev.nu}) disagree"
        )
    info: dict[str, Any] = {
        "eta": float("nan"),
        "kl": float("nan"),
        "epsilon": float(epsilon),
        "fallback": None,
        "n_escalations": 0,
        "n_evals": 0,
        "constraint_active": True,
    }
    traj_old = trajectory_distribution(dynamics, prev)
    C, c, _, _ = quadratize_reward(reward_derivatives, traj_old)
    if not (np.all(np.isfinite(C)) and np.all(np.isfinite(c))):
        info["fallback"] = "non_finite_reward_expansion"
        return prev.copy(), info
    u_ref = traj_old.action_mean
    low = prev.low if clip_actions else None
    high = prev.high if clip_actions else None

    def evaluate(eta: float) -> tuple[LinearGaussianController, float]:
        res = backward_pass(dynamics, C, c, prev=prev, eta=eta)
        traj, a = propagate(dynamics, res.K, res.a, res.cov, low, high)
        ctrl = _controller_from(res, traj, a, u_ref, prev, min_action_var)
        traj = trajectory_distribution(dynamics, ctrl) if min_action_var > 0 else traj
        return ctrl, trajectory_kl(dynamics, ctrl, prev, traj)

    lower, upper = (1.0 - kl_tol) * epsilon, (1.0 + kl_tol) * epsilon
    lo, hi = eta_min, eta_max
    have_lo = have_hi = False
    eta = float(np.clip(eta_init, eta_min, eta_max))
    for _ in range(max_iters):
        info["n_evals"] += 1
        try:
            ctrl, kl = evaluate(eta)
            ok = np.isfinite(kl)
        except (QuuNotPositiveDefinite, ValueError):
            ok, kl = False, float("inf")
        if not ok:
            info["n_escalations"] += 1
        if ok and lower <= kl <= upper:
            info.update(eta=eta, kl=kl)
            return ctrl, info
        if kl > upper:  # step too large (or infeasible): eta must grow
            if eta >= eta_max:
                info.update(eta=eta, kl=kl, fallback="eta_exhausted" if not ok else "kl_not_met")
                return prev.copy(), info
            lo, have_lo = eta, True
        else:  # step smaller than needed: eta may shrink
            if eta <= eta_min:
                info.update(eta=eta, kl=kl, constraint_active=False)
                return ctrl, info
            hi, have_hi = eta, True
        if have_lo and have_hi:
            if hi / lo < 1.0 + 1e-9:
                info.update(eta=eta, kl=kl, fallback="kl_not_met")
                return prev.copy(), info
            eta = float(np.sqrt(lo * hi))
        elif have_lo:
            eta = min(eta * escalate, eta_max)
        else:
            eta = max(eta / escalate, eta_min)
    info.update(eta=eta, fallback="max_iterations")
    return prev.copy(), info


# --------------------------------------------------------------------------------------
# step-size adaptation
# --------------------------------------------------------------------------------------
class ILQGOptimizer:
    """Runs :func:`ilqg_step` and adapts the KL bound from predicted vs. actual improvement.

    ``kl_step`` is the bound per time step; the bound passed to the eta search is
    ``epsilon = kl_step * T``. After each update the model-predicted improvement
    (Laplace estimate of E[return] under the fitted model, new minus old controller) is
    stored; on the next call the actual improvement (mean real return of the new samples
    minus that of the previous ones) rescales kl_step by ``pred / (2 (pred - actual))`` —
    the optimum of a return that is linear-minus-quadratic in the step — clamped to
    [min_mult, max_mult] and then to [min_kl_step, max_kl_step].
    """

    def __init__(
        self,
        reward_derivatives: RewardDerivatives,
        reward: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
        kl_step: float = 0.2,
        min_kl_step: float = 0.01,
        max_kl_step: float = 2.0,
        min_mult: float = 0.1,
        max_mult: float = 5.0,
        min_action_var: float = 1e-4,
        **step_kwargs: Any,
    ) -> None:
        if not 0 < min_kl_step <= kl_step <= max_kl_step:
            raise ValueError("need 0 < min_kl_step <= kl_step <= max_kl_step")
        self.reward_derivatives = reward_derivatives
        self.reward = reward
        self.kl_step = float(kl_step)
        self.min_kl_step, self.max_kl_step = float(min_kl_step), float(max_kl_step)
        self.min_mult, self.max_mult = float(min_mult), float(max_mult)
        self.min_action_var = float(min_action_var)
        self.step_kwargs = step_kwargs
        self.eta = 1.0
        self.n_updates = 0
        self.n_fallbacks = 0
        self._last: dict[str, float] | None = None

    def _mean_return(self, X: np.ndarray, U: np.ndarray) -> float:
        T = U.shape[1]
        if self.reward is not None:
            r = np.asarray(self.reward(X[:, :T], U), dtype=float)
        else:
            r = np.array(
                [
                    [self.reward_derivatives(X[i, t], U[i, t])[0] for t in range(T)]
                    for i in range(U.shape[0])
                ]
            )
        return float(r.sum(axis=1).mean())

    def update(
        self,
        dynamics: LinearGaussianDynamics,
        prev_controller: LinearGaussianController,
        X: np.ndarray,
        U: np.ndarray,
        returns: np.ndarray | None = None,
    ) -> tuple[LinearGaussianController, dict[str, Any]]:
        """One iLQG step from ``prev_controller``, whose samples are X (N, T+1, nx), U (N, T, nu).

        ``dynamics`` should be fitted to those samples; ``returns`` (N,) overrides the
        returns computed from the reward function.
        """
        X = np.asarray(X, dtype=float)
        U = np.asarray(U, dtype=float)
        mean_ret = float(np.mean(returns)) if returns is not None else self._mean_return(X, U)
        actual = pred_prev = float("nan")
        mult = 1.0
        if (
            self._last is not None
            and np.isfinite(mean_ret)
            and np.isfinite(self._last["mean_return"])
        ):
            pred_prev = self._last["predicted"]
            actual = mean_ret - self._last["mean_return"]
            if pred_prev > 1e-12:
                mult = pred_prev / (2.0 * max(pred_prev - actual, 1e-4 * pred_prev))
            else:
                mult = 0.5
            mult = float(np.clip(mult, self.min_mult, self.max_mult))
            self.kl_step = float(np.clip(self.kl_step * mult, self.min_kl_step, self.max_kl_step))
        epsilon = self.kl_step * dynamics.horizon
        kwargs = {"min_action_var": self.min_action_var, **self.step_kwargs}
        ctrl, info = ilqg_step(
            dynamics, prev_controller, self.reward_derivatives, epsilon, eta_init=self.eta, **kwargs
        )
        self.n_updates += 1
        if info["fallback"] is None:
            self.eta = info["eta"]
            j_old = expected_return(
                self.reward_derivatives, trajectory_distribution(dynamics, prev_controller)
            )
            j_new = expected_return(
                self.reward_derivatives, trajectory_distribution(dynamics, ctrl)
            )
            predicted = j_new - j_old
            self._last = {"predicted": predicted, "mean_return": mean_ret}
        else:
            self.n_fallbacks += 1
            predicted = float("nan")
            self._last = None
        info.update(
            kl_step=self.kl_step,
            step_mult=mult,
            mean_return=mean_ret,
            predicted_improvement=predicted,
            previous_predicted_improvement=pred_prev,
            actual_improvement=actual,
            n_fallbacks=self.n_fallbacks,
        )
        return ctrl, info
