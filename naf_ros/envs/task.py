"""The reaching task: observation, reward and its derivatives from joint states and a target.

The same code serves the MuJoCo environments, the ROS nodes and a real arm, so it reads
nothing from a simulator: the tip comes from the arm's kinematics (:class:`ArmModel`, built
from the arm's own MJCF or URDF), everything else from joint positions, velocities and the
target.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from naf_ros.envs.arm import HINGE, ArmModel, ArmModelError

TargetBox = tuple[Sequence[float], Sequence[float]]


class ReachTask:
    """Bring the tip of a serial arm to a target: in 3D, or in the base's xy-plane (``dims=2``).

    Observation ``[cos q_h, sin q_h, q_s, qd, target, tip - target]``: ``q_h`` the hinge
    angles (as cos/sin, limited or not: bounded and continuous across a turn, as the paper's
    reacher observes them), ``q_s`` the slide positions as they are (metres), ``qd`` all joint
    velocities, then the target and the tip-to-target vector in the arm's base frame (``dims``
    coordinates each). The target rather than the tip sits beside the vector, as in the
    paper's reacher: either determines the other linearly (tip = target + vector).

    Reward ``r(x, u) = -(sqrt(|d|^2 + a^2) - a) - w |u|^2`` with ``d`` the tip-to-target vector
    of the observation *before* the step (as Gymnasium's Reacher) and ``u`` the normalised
    action in [-1, 1]: -|d| away from the target but smooth at it, so iLQG gets a usable
    second-order expansion.
    """

    def __init__(
        self,
        arm: ArmModel,
        ctrl_cost_weight: float = 0.02,
        huber_alpha: float = 0.01,
        dims: int = 3,
    ) -> None:
        if dims not in (2, 3):
            raise ValueError(f"dims: {dims!r} must be 2 (the base's xy-plane) or 3")
        self.arm = arm
        self.ctrl_cost_weight = float(ctrl_cost_weight)
        self.huber_alpha = float(huber_alpha)
        self.dims = int(dims)
        n = self.arm.n_joints
        self.n_joints = n
        self.act_dim = n
        hinge = np.array([kind == HINGE for kind in arm.joint_types])
        self._hinge = np.flatnonzero(hinge)
        self._slide = np.flatnonzero(~hinge)
        self._all_hinges = bool(hinge.all())
        # Hinges limited to less than a turn but not within (-pi, pi] (the Panda's joint 6):
        # their angle comes back in the turn centred on the range, so within the limits.
        lo, hi = arm.joint_lower[self._hinge], arm.joint_upper[self._hinge]
        shifted = (hi - lo < 2 * np.pi) & ((hi > np.pi) | (lo <= -np.pi))
        self._shifted = np.flatnonzero(shifted)
        self._shift_centre = 0.5 * (lo[shifted] + hi[shifted])
        n_pos = 2 * len(self._hinge) + len(self._slide)
        self.qd_slice = slice(n_pos, n_pos + n)
        self.target_slice = slice(n_pos + n, n_pos + n + dims)
        self.delta_slice = slice(n_pos + n + dims, n_pos + n + 2 * dims)
        self.obs_dim = n_pos + n + 2 * dims

    # --- kinematics -------------------------------------------------------------------
    def tip(self, q: np.ndarray) -> np.ndarray:
        """Tip position (..., dims) in the base frame for joint positions ``q`` (..., n)."""
        return self.arm.tip_position(q)[..., : self.dims]

    # --- observation ------------------------------------------------------------------
    def observation(self, q: np.ndarray, qd: np.ndarray, target: np.ndarray) -> np.ndarray:
        """One observation, or a batch when ``q``/``qd`` are (..., n) (imagined joint states)."""
        q = np.asarray(q, dtype=float)
        qd = np.asarray(qd, dtype=float)
        target = np.broadcast_to(np.asarray(target, dtype=float), q.shape[:-1] + (self.dims,))
        if self._all_hinges:
            angles = [np.cos(q), np.sin(q)]
        else:
            qh = q[..., self._hinge]
            angles = [np.cos(qh), np.sin(qh), q[..., self._slide]]
        return np.concatenate([*angles, qd, target, self.tip(q) - target], axis=-1)

    def joint_state_from_observation(
        self, obs: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Invert :meth:`observation` (one or a batch): q, qd, target. Hinge angles come back
        in (-pi, pi], except a hinge limited to less than a turn outside that interval: in the
        turn centred on its range."""
        obs = np.asarray(obs, dtype=float)
        nh = len(self._hinge)
        angles = np.arctan2(obs[..., nh : 2 * nh], obs[..., :nh])
        if len(self._shifted):
            c = self._shift_centre
            picked = angles[..., self._shifted]
            angles[..., self._shifted] = c + (picked - c + np.pi) % (2 * np.pi) - np.pi
        if self._all_hinges:
            q = angles
        else:
            q = np.empty(obs.shape[:-1] + (self.n_joints,))
            q[..., self._hinge] = angles
            q[..., self._slide] = obs[..., 2 * nh : 2 * nh + len(self._slide)]
        return q, obs[..., self.qd_slice].copy(), obs[..., self.target_slice].copy()

    def tip_distance(self, obs: np.ndarray) -> np.ndarray | float:
        return np.linalg.norm(np.asarray(obs)[..., self.delta_slice], axis=-1)

    # --- targets ----------------------------------------------------------------------
    def sample_target(
        self, rng: np.random.Generator, box: TargetBox | None = None, max_tries: int = 10_000
    ) -> np.ndarray:
        """A reachable target: the tip at joint positions uniform within the limits, the first
        inside ``box`` ((lower corner), (upper corner), base frame) when one is given."""
        lo = hi = None
        if box is not None:
            lo, hi = (np.asarray(c, dtype=float) for c in box)
            if lo.shape != (self.dims,) or hi.shape != (self.dims,) or np.any(lo > hi):
                raise ValueError(f"target box {box!r}: two corners of {self.dims} values, lo <= hi")
        batch = 100 if box is not None else 1
        for _ in range(max(1, max_tries // batch)):
            tips = self.tip(self.arm.sample_joint_positions(rng, batch))
            if box is None:
                return tips[0]
            inside = np.flatnonzero(np.all((tips >= lo) & (tips <= hi), axis=-1))
            if len(inside):
                return tips[inside[0]]
        raise ArmModelError(
            f"target box {box!r}: no reachable tip position inside after {max_tries} tries"
        )

    # --- reward -------------------------------------------------------------------------
    def reward(self, obs: np.ndarray, action: np.ndarray) -> np.ndarray | float:
        obs = np.asarray(obs, dtype=float)
        action = np.asarray(action, dtype=float)
        d = obs[..., self.delta_slice]
        a = self.huber_alpha
        dist = np.sqrt((d * d).sum(-1) + a * a) - a
        return -dist - self.ctrl_cost_weight * (action * action).sum(-1)

    def reward_derivatives(self, obs: np.ndarray, action: np.ndarray):
        """Exact r, r_x, r_u, r_xx, r_uu, r_ux at one (x, u): the quadratic expansion for iLQG."""
        obs = np.asarray(obs, dtype=float)
        action = np.asarray(action, dtype=float)
        nx, nu = obs.shape[-1], action.shape[-1]
        d = obs[self.delta_slice]
        a = self.huber_alpha
        s = np.sqrt(d @ d + a * a)
        r = float(self.reward(obs, action))
        r_x = np.zeros(nx)
        r_x[self.delta_slice] = -d / s
        r_xx = np.zeros((nx, nx))
        r_xx[self.delta_slice, self.delta_slice] = -(np.eye(self.dims) / s - np.outer(d, d) / s**3)
        r_u = -2.0 * self.ctrl_cost_weight * action
        r_uu = -2.0 * self.ctrl_cost_weight * np.eye(nu)
        r_ux = np.zeros((nu, nx))
        return r, r_x, r_u, r_xx, r_uu, r_ux


class ReacherTask(ReachTask):
    """The paper's planar reacher: :class:`ReachTask` in the base's xy-plane.

    Observation (13 for the shipped 3-DOF arm): ``[cos q, sin q, qd, target_xy, tip_xy -
    target_xy]``. The arm must move its tip in that plane only (checked), else the reward
    would ignore a coordinate the arm can change.
    """

    def __init__(
        self,
        arm: ArmModel | None = None,
        ctrl_cost_weight: float = 0.02,
        huber_alpha: float = 0.01,
    ) -> None:
        arm = arm if arm is not None else ArmModel.from_mjcf()
        super().__init__(arm, ctrl_cost_weight, huber_alpha, dims=2)
        q = arm.sample_joint_positions(np.random.default_rng(0), 4)
        if np.abs(arm.tip_jacobian(q)[..., 2, :]).max() > 1e-9 * max(arm.reach, 1.0):
            raise ArmModelError(
                f"{arm.source}: the tip moves out of the base's xy-plane; the planar reacher "
                "needs a planar arm (use ReachTask for a spatial one)"
            )

    def fingertip(self, q: np.ndarray) -> np.ndarray:
        """Tip xy (..., 2) for joint angles ``q`` (..., n)."""
        return self.tip(q)
