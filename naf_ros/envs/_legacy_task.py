"""The reaching task: observation, reward and forward kinematics from joint states alone.

The same code serves the MuJoCo environment, the ROS policy node and a real arm, so it must
not touch simulator internals: it reads the arm's geometry from an MJCF file (plain XML, no
MuJoCo import) and computes everything from joint positions, velocities and the target.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

DEFAULT_MODEL_FILE = "reacher3dof.xml"


def default_model_path() -> Path:
    """Path of the MJCF shipped with the package."""
    return Path(str(resources.files("naf_ros.envs") / "assets" / DEFAULT_MODEL_FILE))


def _vec(text: str | None, n: int = 3) -> np.ndarray:
    if not text:
        return np.zeros(n)
    return np.array([float(v) for v in text.split()], dtype=float)


@dataclass(frozen=True)
class ArmModel:
    """What the task needs to know about a planar serial arm.

    ``link_offsets[i]`` is the xy position of joint i+1's body in link i's frame; the last
    entry is the fingertip site in the last link's frame. Effort limits (N·m) come from the
    actuators' ``ctrlrange``; joint ranges (rad) are ``inf`` where the joint is unlimited.
    """

    joint_names: tuple[str, ...]
    base: np.ndarray
    link_offsets: np.ndarray
    effort_limits: np.ndarray
    joint_lower: np.ndarray
    joint_upper: np.ndarray

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)

    @property
    def reach(self) -> float:
        return float(np.linalg.norm(self.link_offsets, axis=1).sum())

    @classmethod
    def from_mjcf(cls, path: str | Path | None = None, tip_site: str = "fingertip") -> ArmModel:
        """Parse a chain of hinge-jointed bodies ending in ``tip_site``."""
        path = Path(path) if path is not None else default_model_path()
        root = ET.parse(path).getroot()
        worldbody = root.find("worldbody")
        if worldbody is None:
            raise ValueError(f"{path}: no <worldbody>")
        names: list[str] = []
        offsets: list[np.ndarray] = []
        lower: list[float] = []
        upper: list[float] = []
        base = None
        body = next((b for b in worldbody.findall("body") if b.find("joint") is not None), None)
        while body is not None:
            joint = body.find("joint")
            if joint is None:
                break
            pos = _vec(body.get("pos"))[:2]
            if base is None:
                base = pos
            else:
                offsets.append(pos)
            names.append(joint.get("name", f"joint{len(names) + 1}"))
            if joint.get("limited") == "true" and joint.get("range"):
                lo, hi = _vec(joint.get("range"), 2)
            else:
                lo, hi = -np.inf, np.inf
            lower.append(lo)
            upper.append(hi)
            site = body.find(f"site[@name='{tip_site}']")
            if site is not None:
                offsets.append(_vec(site.get("pos"))[:2])
                break
            body = body.find("body")
        if not names or len(offsets) != len(names):
            raise ValueError(f"{path}: expected a hinge chain ending in site '{tip_site}'")
        limits = {}
        for motor in root.iter("motor"):
            lo, hi = _vec(motor.get("ctrlrange"), 2)
            gear = float(motor.get("gear", "1").split()[0])
            limits[motor.get("joint")] = max(abs(lo), abs(hi)) * gear
        missing = [n for n in names if n not in limits]
        if missing:
            raise ValueError(f"{path}: joints without a motor/ctrlrange: {missing}")
        return cls(
            joint_names=tuple(names),
            base=np.asarray(base, dtype=float),
            link_offsets=np.asarray(offsets, dtype=float),
            effort_limits=np.array([limits[n] for n in names], dtype=float),
            joint_lower=np.array(lower, dtype=float),
            joint_upper=np.array(upper, dtype=float),
        )


class ReacherTask:
    """Observation and reward of the reaching task.

    Observation (13 for 3 joints): ``[cos q, sin q, qd, target_xy, tip_xy - target_xy]``.
    Reward ``r(x, u) = -(sqrt(|d|^2 + a^2) - a) - w |u|^2`` with ``d`` the tip-to-target vector
    of the observation *before* the step (as Gymnasium's Reacher) and ``u`` the normalised
    action in [-1, 1]. The pseudo-Huber distance is -|d| away from the target but smooth at
    it, so iLQG gets a usable second-order expansion.
    """

    def __init__(
        self,
        arm: ArmModel | None = None,
        ctrl_cost_weight: float = 0.02,
        huber_alpha: float = 0.01,
    ) -> None:
        self.arm = arm if arm is not None else ArmModel.from_mjcf()
        self.ctrl_cost_weight = float(ctrl_cost_weight)
        self.huber_alpha = float(huber_alpha)
        n = self.arm.n_joints
        self.n_joints = n
        self.obs_dim = 3 * n + 4
        self.act_dim = n
        self.delta_slice = slice(3 * n + 2, 3 * n + 4)
        self.target_slice = slice(3 * n, 3 * n + 2)

    # --- kinematics -------------------------------------------------------------------
    def fingertip(self, q: np.ndarray) -> np.ndarray:
        """Planar forward kinematics: tip xy for joint angles ``q`` (..., n)."""
        q = np.asarray(q, dtype=float)
        phi = np.cumsum(q, axis=-1)
        c, s = np.cos(phi), np.sin(phi)
        off = self.arm.link_offsets
        x = (c * off[:, 0] - s * off[:, 1]).sum(-1)
        y = (s * off[:, 0] + c * off[:, 1]).sum(-1)
        return np.stack([x, y], axis=-1) + self.arm.base

    # --- observation ------------------------------------------------------------------
    def observation(self, q: np.ndarray, qd: np.ndarray, target: np.ndarray) -> np.ndarray:
        """One observation, or a batch when ``q``/``qd`` are (..., n) (imagined joint states)."""
        q = np.asarray(q, dtype=float)
        qd = np.asarray(qd, dtype=float)
        target = np.broadcast_to(np.asarray(target, dtype=float), q.shape[:-1] + (2,))
        tip = self.fingertip(q)
        return np.concatenate([np.cos(q), np.sin(q), qd, target, tip - target], axis=-1)

    def joint_state_from_observation(
        self, obs: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Invert :meth:`observation` (one or a batch): q in (-pi, pi], qd, target."""
        n = self.n_joints
        obs = np.asarray(obs, dtype=float)
        q = np.arctan2(obs[..., n : 2 * n], obs[..., :n])
        return q, obs[..., 2 * n : 3 * n].copy(), obs[..., self.target_slice].copy()

    def tip_distance(self, obs: np.ndarray) -> np.ndarray | float:
        return np.linalg.norm(np.asarray(obs)[..., self.delta_slice], axis=-1)

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
        r_xx[self.delta_slice, self.delta_slice] = -(np.eye(2) / s - np.outer(d, d) / s**3)
        r_u = -2.0 * self.ctrl_cost_weight * action
        r_uu = -2.0 * self.ctrl_cost_weight * np.eye(nu)
        r_ux = np.zeros((nu, nx))
        return r, r_x, r_u, r_xx, r_uu, r_ux

    # --- actions ---------------------------------------------------------------------------
    def effort_from_action(self, action: np.ndarray) -> np.ndarray:
        """Normalised action in [-1, 1] -> joint effort (N·m), clipped to the limits."""
        a = np.clip(np.asarray(action, dtype=float), -1.0, 1.0)
        return a * self.arm.effort_limits

    def action_from_effort(self, effort: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(effort, dtype=float) / self.arm.effort_limits, -1.0, 1.0)
