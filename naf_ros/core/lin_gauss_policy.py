"""The time-varying linear-Gaussian controller iLQG produces and the iLQG explorer runs.

u_t ~ N(u_hat_t + k_t + K_t (x - x_hat_t), cov_t): the paper's form (app. 8.1), kept apart from
the optimiser that computes it (as GPS keeps its policy class apart from its trajectory
optimiser) so that whoever only *acts* with a controller (the policy node, the explorer,
Algorithm 2's episodes) or ships one in a message needs neither the dynamics nor iLQG.
Construction validates every array, so a controller that exists never yields a NaN action.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from naf_ros.core.linalg import check_array, check_symmetric, sym

__all__ = ["LinearGaussianController"]


@dataclass
class LinearGaussianController:
    """u_t ~ N(u_hat_t + k_t + K_t (x - x_hat_t), cov_t), sampled actions clipped to bounds."""

    K: np.ndarray
    k: np.ndarray
    x_hat: np.ndarray
    u_hat: np.ndarray
    cov: np.ndarray
    low: np.ndarray | float = -1.0
    high: np.ndarray | float = 1.0
    chol: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        K = np.asarray(self.K, dtype=float)
        if K.ndim != 3:
            raise ValueError(f"K: expected shape (T, nu, nx), got {K.shape}")
        T, nu, nx = K.shape
        arrays = {
            "K": (K, (T, nu, nx)),
            "k": (self.k, (T, nu)),
            "x_hat": (self.x_hat, (T, nx)),
            "u_hat": (self.u_hat, (T, nu)),
            "cov": (self.cov, (T, nu, nu)),
        }
        for name, (val, shape) in arrays.items():
            setattr(self, name, check_array(name, val, shape))
        self.low = np.broadcast_to(np.asarray(self.low, dtype=float), (nu,)).copy()
        self.high = np.broadcast_to(np.asarray(self.high, dtype=float), (nu,)).copy()
        if (
            np.any(np.isnan(self.low))
            or np.any(np.isnan(self.high))
            or np.any(self.low > self.high)
        ):
            raise ValueError("action bounds: need low <= high and no NaN")
        check_symmetric("cov", self.cov, atol=1e-12)
        self.cov = sym(self.cov)
        try:
            self.chol = np.linalg.cholesky(self.cov)
        except np.linalg.LinAlgError as exc:
            raise ValueError("cov: not positive definite") from exc

    @classmethod
    def initial(
        cls,
        T: int,
        nx: int,
        nu: int,
        init_var: float,
        x_hat: np.ndarray | None = None,
        u_hat: np.ndarray | float = 0.0,
        low: np.ndarray | float = -1.0,
        high: np.ndarray | float = 1.0,
    ) -> LinearGaussianController:
        """Zero-gain exploration controller u ~ N(u_hat, init_var I) (first iLQG iteration)."""
        if init_var <= 0:
            raise ValueError("init_var must be > 0")
        xh = np.zeros((T, nx)) if x_hat is None else np.broadcast_to(x_hat, (T, nx))
        return cls(
            K=np.zeros((T, nu, nx)),
            k=np.zeros((T, nu)),
            x_hat=np.array(xh, dtype=float),
            u_hat=np.array(np.broadcast_to(u_hat, (T, nu)), dtype=float),
            cov=np.broadcast_to(init_var * np.eye(nu), (T, nu, nu)).copy(),
            low=low,
            high=high,
        )

    @property
    def horizon(self) -> int:
        return self.K.shape[0]

    @property
    def nx(self) -> int:
        return self.K.shape[2]

    @property
    def nu(self) -> int:
        return self.K.shape[1]

    def absolute_gains(self) -> tuple[np.ndarray, np.ndarray]:
        """(K, a) with mean action K_t x + a_t, the form the LQR algebra uses."""
        a = self.u_hat + self.k - np.einsum("tij,tj->ti", self.K, self.x_hat)
        return self.K, a

    def mean_action(self, t: int, x: np.ndarray) -> np.ndarray:
        """Unclipped Gaussian mean for x (nx,) or a batch (B, nx)."""
        x = np.asarray(x, dtype=float)
        return self.u_hat[t] + self.k[t] + (x - self.x_hat[t]) @ self.K[t].T

    def act(
        self, t: int, x: np.ndarray, rng: np.random.Generator | None = None, noise: bool = True
    ) -> np.ndarray:
        """Sample (or take the mean), then clip to [low, high]; never returns NaN."""
        mean = self.mean_action(t, x)
        if noise:
            if rng is None:
                raise ValueError("act(noise=True) needs an rng")
            mean = mean + rng.standard_normal(mean.shape) @ self.chol[t].T
        mean = np.where(np.isfinite(mean), mean, 0.0)
        return np.clip(mean, self.low, self.high)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Plain arrays for ROS messages and checkpoints (never the object: no pickling)."""
        return {
            "K": self.K.copy(),
            "k": self.k.copy(),
            "x_hat": self.x_hat.copy(),
            "u_hat": self.u_hat.copy(),
            "cov": self.cov.copy(),
            "low": self.low.copy(),
            "high": self.high.copy(),
        }

    @classmethod
    def from_arrays(cls, d: dict[str, Any]) -> LinearGaussianController:
        """Rebuild from :meth:`to_arrays`; ValueError on missing keys, shapes, NaN, non-PD cov."""
        missing = [n for n in ("K", "k", "x_hat", "u_hat", "cov") if n not in d]
        if missing:
            raise ValueError(f"LinearGaussianController: missing arrays {missing}")
        return cls(
            K=d["K"],
            k=d["k"],
            x_hat=d["x_hat"],
            u_hat=d["u_hat"],
            cov=d["cov"],
            low=d.get("low", -1.0),
            high=d.get("high", 1.0),
        )

    def copy(self) -> LinearGaussianController:
        """An independent controller (iLQG's fallbacks hand back a copy of the previous one)."""
        return LinearGaussianController.from_arrays(self.to_arrays())
