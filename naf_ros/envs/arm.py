"""A serial arm's kinematics and limits, read from its own MJCF or URDF by MuJoCo's compiler.

Why MuJoCo: the package simulates with it already, its compiler reads both MJCF and URDF
(the form a ROS arm publishes on ``robot_description``), and ``mj_kinematics`` /
``mj_jacSite`` give the tip and its Jacobian without any hand-written kinematics. Pinocchio
(the field's standard for URDF) serves as the independent check in the tests.

A URDF usually names meshes under ``package://`` URIs that the learning machine cannot
resolve; kinematics does not need them, so its ``<visual>``/``<collision>`` elements are
dropped before MuJoCo sees it, and ``fusestatic="false"`` keeps fixed-joint links (a UR's
``tool0``) as frames a tip can name. The model then has no collision geometry: the sim built
on it has no contacts (no self-collision), which reaching does not need.

What MuJoCo's URDF import cannot take from plain URDF is read here and applied to the spec:
a joint's rotor inertia (MuJoCo's ``armature``) from Drake's transmission extension
(``<drake:rotor_inertia>`` x ``<drake:gear_ratio>``^2 on a ``<transmission>``'s actuator), and
the joint limits become hard end stops (MuJoCo's limit time constant of two physics steps,
not its soft default of 0.02 s, which lets a joint sink far past a URDF's limit). The
``ros2_control`` tag's position ``initial_value`` per joint, where given, is the arm's
``initial_positions`` (where a mock system starts; the environments' default home pose).

The tip is a site, a body (URDF link) frame, or a body plus an offset in its frame; its
position and Jacobian are expressed in the base body's frame (default: the world, i.e. the
URDF's root). Only the joints on the chain from the base to the tip count; they must be
hinges (revolute/continuous) or slides (prismatic). Other joints (e.g. a gripper's fingers)
stay at their reference position for the kinematics.
"""

from __future__ import annotations

import math
import threading
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import mujoco
import numpy as np

from naf_ros.envs import urdf

LimitSpec = float | Sequence[float] | Mapping[str, float] | None

TIP_SITE = "naf_ros_tip"  # the site added when the tip is a body (plus offset)
DEFAULT_TIP_SITE = "fingertip"
HINGE, SLIDE = "hinge", "slide"
_JOINT_KINDS = {int(mujoco.mjtJoint.mjJNT_HINGE): HINGE, int(mujoco.mjtJoint.mjJNT_SLIDE): SLIDE}


class ArmModelError(ValueError):
    """The arm description cannot serve as a serial arm; the message is one line naming why."""


def asset_path(name: str) -> Path:
    """Path of a model file shipped with the package (``naf_ros/envs/assets``)."""
    return Path(str(resources.files("naf_ros.envs") / "assets" / name))


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _per_joint(what: str, spec: LimitSpec, names: Sequence[str]) -> dict[str, float]:
    """A limit given as a number, a list in ``names`` order or ``{joint: value}``."""
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        unknown = [k for k in spec if k not in names]
        if unknown:
            raise ArmModelError(
                f"{what}: joint {unknown[0]!r} is not one of the arm's {list(names)}"
            )
        return {str(k): float(v) for k, v in spec.items()}
    if isinstance(spec, (int, float)):
        return {n: float(spec) for n in names}
    values = [float(v) for v in spec]
    if len(values) != len(names):
        raise ArmModelError(f"{what}: {len(values)} values for {len(names)} joints {list(names)}")
    return dict(zip(names, values))


class ArmModel:
    """Kinematics and limits of one serial arm; see the module docstring for what counts.

    Build it with :meth:`load` (a path or an XML string), :meth:`from_file`,
    :meth:`from_xml` (e.g. the ``robot_description`` string) or :meth:`from_mjcf`.
    Attributes (arrays in ``joint_names`` order, the chain from base to tip):
    ``joint_names``, ``joint_types`` (``"hinge"``/``"slide"``), ``joint_lower``/``joint_upper``
    (``±inf`` where unlimited), ``velocity_limits`` (``inf`` where unknown), ``effort_limits``
    (N·m or N), ``tip``, ``tip_offset``, ``base``, ``gravity`` (world frame), ``kind``
    (``"mjcf"``/``"urdf"``), ``source`` (the path or ``"<robot_description string>"``) and
    ``notes``: one line per value that did not come from the description, for the start-up log;
    ``initial_positions``: a URDF's ros2_control initial values (None unless every joint has one).
    """

    def __init__(
        self,
        *,
        kind: str,
        source: str,
        path: Path | None,
        xml: str | None,
        tip: str | None = None,
        tip_offset: Sequence[float] | None = None,
        base: str | None = None,
        joints: Sequence[str] | None = None,
        effort: LimitSpec = None,
        velocity: LimitSpec = None,
        description_velocity: Mapping[str, float] | None = None,
        description_armature: Mapping[str, float] | None = None,
        description_initial: Mapping[str, float] | None = None,
    ) -> None:
        self.kind, self.source, self.path, self._xml = kind, source, path, xml
        self._armature = dict(description_armature or {})
        spec = self._parse()  # find the tip before adding a site for it
        self.tip, self.tip_offset = self._resolve_tip(spec, tip, tip_offset)
        self._tip_is_site = tip_offset is None and self._has_site(spec, self.tip)
        try:
            self.mj_model = self.spec().compile()
        except Exception as err:  # MuJoCo raises ValueError; keep any failure to one line
            raise ArmModelError(f"{source}: MuJoCo cannot load it: {_first_line(err)}") from None
        m = self.mj_model
        self.base = base if base is not None else m.body(0).name
        base_id = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, self.base)
        if base_id < 0:
            raise ArmModelError(f"{source}: base {self.base!r} is not a body/link of the model")
        self._site = m.site(self._site_name).id
        tip_body = int(m.site_bodyid[self._site])
        chain = self._chain(base_id, tip_body)
        names = joints if joints is not None else chain
        off_chain = [n for n in names if n not in chain]
        absent = [n for n in off_chain if mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, n) < 0]
        if absent:
            raise ArmModelError(
                f"{source}: joint {absent[0]!r} is not in the description (the chain from "
                f"{self.base!r} to the tip {self.tip!r} has {chain})"
            )
        if off_chain:
            raise ArmModelError(
                f"{source}: joint {off_chain[0]!r} is not on the chain from {self.base!r} to "
                f"the tip {self.tip!r} (chain joints: {chain})"
            )
        if not names:
            raise ArmModelError(f"{source}: no joint between {self.base!r} and {self.tip!r}")
        if len(set(names)) != len(names):
            raise ArmModelError(f"{source}: joints {list(names)} name a joint twice")
        self.joint_names: tuple[str, ...] = tuple(names)
        ids = [m.joint(n).id for n in self.joint_names]
        self.joint_types = tuple(_JOINT_KINDS[int(m.jnt_type[j])] for j in ids)
        self._qadr = np.array([m.jnt_qposadr[j] for j in ids])
        self._dofadr = np.array([m.jnt_dofadr[j] for j in ids])
        self._base_id = base_id
        limited = np.array([bool(m.jnt_limited[j]) for j in ids])
        rng = np.array([m.jnt_range[j] for j in ids], dtype=float).reshape(-1, 2)
        self.joint_lower = np.where(limited, rng[:, 0], -np.inf)
        self.joint_upper = np.where(limited, rng[:, 1], np.inf)
        self.gravity = np.array(m.opt.gravity, dtype=float)
        notes = [f"joint {n!r} not driven: held at its reference" for n in chain if n not in names]
        self.effort_limits = self._limits(
            "effort", self._description_effort(ids), effort, notes, required=True
        )
        self.velocity_limits = self._limits(
            "velocity", dict(description_velocity or {}), velocity, notes, required=False
        )
        self.notes: tuple[str, ...] = tuple(notes)
        initial = dict(description_initial or {})
        self.initial_positions: np.ndarray | None = (
            np.array([initial[n] for n in self.joint_names], dtype=float)
            if all(n in initial for n in self.joint_names)
            else None
        )
        self._local = threading.local()
        self.reach = self._reach()

    # --- construction ---------------------------------------------------------------------
    @classmethod
    def load(cls, model: str | Path, **options: Any) -> ArmModel:
        """From a path or an XML string (MJCF or URDF); a string starting with ``<`` is XML."""
        if isinstance(model, str) and model.lstrip().startswith("<"):
            return cls.from_xml(model, **options)
        if isinstance(model, str) and ("\n" in model or len(model) > 4096):
            raise ArmModelError(
                f"the arm description is neither a file path nor XML (starts {model[:40]!r})"
            )
        return cls.from_file(model, **options)

    @classmethod
    def from_file(cls, path: str | Path, **options: Any) -> ArmModel:
        """From an MJCF or URDF file (told apart by the root element)."""
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as err:
            raise ArmModelError(f"{path}: cannot read the arm model ({err.strerror})") from None
        return cls._from_text(text, str(path), path, **options)

    @classmethod
    def from_xml(cls, text: str, **options: Any) -> ArmModel:
        """From an XML string, e.g. what ``robot_state_publisher`` publishes on
        ``robot_description`` (URDF) or an MJCF without relative asset files."""
        return cls._from_text(text, "<robot_description string>", None, **options)

    @classmethod
    def from_mjcf(
        cls, path: str | Path | None = None, tip_site: str = DEFAULT_TIP_SITE
    ) -> ArmModel:
        """An MJCF arm whose tip is the site ``tip_site``; no path: the shipped 3-DOF reacher."""
        return cls.from_file(
            path if path is not None else asset_path("reacher3dof.xml"), tip=tip_site
        )

    @classmethod
    def _from_text(cls, text: str, source: str, path: Path | None, **options: Any) -> ArmModel:
        try:
            root = ET.fromstring(text)
        except ET.ParseError as err:
            raise ArmModelError(f"{source}: not XML ({err})") from None
        if root.tag == "robot":
            velocity = urdf.velocity_limits(root)
            armature, initial = urdf.rotor_inertia(root), urdf.initial_positions(root)
            xml = urdf.for_mujoco(root)
            return cls(
                kind="urdf",
                source=source,
                path=None,
                xml=xml,
                description_velocity=velocity,
                description_armature=armature,
                description_initial=initial,
                **options,
            )
        if root.tag == "mujoco":
            # A file keeps its directory (includes, meshes); a string is compiled as it is.
            xml = None if path is not None else text
            return cls(kind="mjcf", source=source, path=path, xml=xml, **options)
        raise ArmModelError(
            f"{source}: root element <{root.tag}> is neither <robot> (URDF) nor <mujoco> (MJCF)"
        )

    def spec(self) -> mujoco.MjSpec:
        """A fresh, editable MuJoCo spec of the arm, with the tip site added when the tip is a
        body (the sim adds actuators and a target to it)."""
        spec = self._parse()
        if not self._tip_is_site:
            spec.body(self.tip).add_site(name=TIP_SITE, pos=list(self.tip_offset))
        return spec

    def _parse(self) -> mujoco.MjSpec:
        try:
            if self._xml is None:
                spec = mujoco.MjSpec.from_file(str(self.path))
            else:
                spec = mujoco.MjSpec.from_string(self._xml)
        except Exception as err:  # MuJoCo raises ValueError; keep any failure to one line
            raise ArmModelError(
                f"{self.source}: MuJoCo cannot load it: {_first_line(err)}"
            ) from None
        if self.kind == "urdf":
            self._urdf_dynamics(spec)
        return spec

    def _urdf_dynamics(self, spec: mujoco.MjSpec) -> None:
        """What plain URDF cannot tell MuJoCo (module docstring): rotor inertia, hard stops."""
        stop = [2.0 * spec.option.timestep, 1.0]
        for joint in spec.joints:
            joint.solref_limit = stop
            if joint.name in self._armature:
                joint.armature = self._armature[joint.name]

    @property
    def _site_name(self) -> str:
        return self.tip if self._tip_is_site else TIP_SITE

    @staticmethod
    def _has_site(spec: mujoco.MjSpec, name: str) -> bool:
        return any(s.name == name for s in spec.sites)

    def _resolve_tip(
        self, spec: mujoco.MjSpec, tip: str | None, offset: Sequence[float] | None
    ) -> tuple[str, np.ndarray]:
        """The tip's name and offset: a named site or body, else site ``fingertip``, else the
        single leaf body."""
        bodies = [b.name for b in spec.bodies]
        if offset is not None:
            offset = np.asarray(offset, dtype=float)
            if offset.shape != (3,) or not np.isfinite(offset).all():
                raise ArmModelError(
                    f"{self.source}: tip offset {offset.tolist()} is not 3 finite numbers"
                )
        if tip is None:
            if self._has_site(spec, DEFAULT_TIP_SITE) and offset is None:
                tip = DEFAULT_TIP_SITE
            else:
                parents = {b.parent.name for b in spec.bodies if b.name != bodies[0]}
                leaves = [b for b in bodies if b not in parents and b != bodies[0]]
                if len(leaves) != 1:
                    raise ArmModelError(
                        f"{self.source}: no tip given and no single end link; name one of {leaves}"
                    )
                tip = leaves[0]
        if offset is None and self._has_site(spec, tip):
            site = next(s for s in spec.sites if s.name == tip)
            return tip, np.asarray(site.pos, dtype=float).copy()
        if tip not in bodies:
            raise ArmModelError(
                f"{self.source}: tip {tip!r} is neither a site nor a body/link of the model"
            )
        if self._has_site(spec, TIP_SITE):
            raise ArmModelError(f"{self.source}: the model already has a site named {TIP_SITE!r}")
        return tip, (offset if offset is not None else np.zeros(3))

    def _chain(self, base_id: int, tip_body: int) -> list[str]:
        """Names of the joints from the base body to the tip body, base first."""
        m = self.mj_model
        path = []
        b = tip_body
        while b != base_id:
            if b == 0:
                raise ArmModelError(
                    f"{self.source}: base {self.base!r} is not on the path from the world to "
                    f"the tip {self.tip!r}"
                )
            path.append(b)
            b = int(m.body_parentid[b])
        names = []
        for b in reversed(path):
            for j in range(m.body_jntadr[b], m.body_jntadr[b] + m.body_jntnum[b]):
                if int(m.jnt_type[j]) not in _JOINT_KINDS:
                    raise ArmModelError(
                        f"{self.source}: joint {m.joint(j).name!r} on the chain is a "
                        f"{mujoco.mjtJoint(m.jnt_type[j]).name}; only hinge (revolute, continuous) "
                        "and slide (prismatic) joints make a serial arm"
                    )
                names.append(m.joint(j).name)
        return names

    def _description_effort(self, ids: Sequence[int]) -> dict[str, float]:
        """Effort limits the description states: a motor's ctrlrange x gear (capped by its
        forcerange) or the joint's actuator force range (a URDF's ``<limit effort>``)."""
        m = self.mj_model
        found: dict[str, float] = {}
        for j in ids:
            name = m.joint(j).name
            limit = math.inf
            for a in range(m.nu):
                if (
                    m.actuator_trntype[a] != mujoco.mjtTrn.mjTRN_JOINT
                    or m.actuator_trnid[a, 0] != j
                ):
                    continue
                is_motor = (
                    m.actuator_gaintype[a] == mujoco.mjtGain.mjGAIN_FIXED
                    and m.actuator_biastype[a] == mujoco.mjtBias.mjBIAS_NONE
                )
                if is_motor and m.actuator_ctrllimited[a]:
                    gear = abs(float(m.actuator_gear[a, 0])) * float(m.actuator_gainprm[a, 0])
                    limit = min(limit, float(np.abs(m.actuator_ctrlrange[a]).max()) * abs(gear))
                if m.actuator_forcelimited[a]:
                    limit = min(limit, float(np.abs(m.actuator_forcerange[a]).max()))
            if m.jnt_actfrclimited[j]:
                limit = min(limit, float(np.abs(m.jnt_actfrcrange[j]).max()))
            if 0 < limit < math.inf:
                found[name] = limit
        return found

    def _limits(
        self,
        what: str,
        described: Mapping[str, float],
        given: LimitSpec,
        notes: list[str],
        required: bool,
    ) -> np.ndarray:
        """Per-joint limits: the description's, missing ones from ``given`` (noted)."""
        fallback = _per_joint(what, given, self.joint_names)
        values, given_names, unlimited = [], [], []
        for name in self.joint_names:
            value = described.get(name)
            if value is None:
                value = fallback.get(name)
                if value is None or not value > 0:
                    if required:
                        raise ArmModelError(
                            f"{self.source}: joint {name!r} has no {what} limit in the "
                            f"description; give one (arm {what})"
                        )
                    unlimited.append(name)
                    value = math.inf
                else:
                    given_names.append(f"{name}={value:g}")
            values.append(float(value))
        if given_names:
            notes.append(f"{what} limits not in the description, given: {', '.join(given_names)}")
        if unlimited:
            notes.append(f"{what} limits not in the description, none given: {unlimited} unlimited")
        return np.array(values, dtype=float)

    def _reach(self) -> float:
        """Upper bound on the tip's distance from the first joint: the lengths between joint
        anchors and the tip at the reference pose, plus slide travel."""
        m, d = self.mj_model, self._data()
        d.qpos[:] = m.qpos0
        mujoco.mj_kinematics(m, d)
        ids = [m.joint(n).id for n in self.joint_names]
        points = [d.xanchor[j].copy() for j in ids] + [d.site_xpos[self._site].copy()]
        length = float(sum(np.linalg.norm(b - a) for a, b in zip(points[:-1], points[1:])))
        for k, kind in enumerate(self.joint_types):
            if kind == SLIDE and np.isfinite(self.joint_upper[k] - self.joint_lower[k]):
                length += float(self.joint_upper[k] - self.joint_lower[k])
        return length

    # --- queries ---------------------------------------------------------------------------
    @property
    def n_joints(self) -> int:
        return len(self.joint_names)

    @property
    def has_gravity(self) -> bool:
        return bool(np.any(self.gravity != 0.0))

    def describe(self) -> str:
        """One line for the start-up log: what was loaded and what did not come from it."""
        text = (
            f"arm {self.source} ({self.kind}): {self.n_joints} joints {list(self.joint_names)}, "
            f"tip {self.tip!r}, base {self.base!r}; effort limits "
            f"{np.round(self.effort_limits, 3).tolist()}, velocity limits "
            f"{np.round(self.velocity_limits, 3).tolist()}, ranges "
            f"{np.round(np.stack([self.joint_lower, self.joint_upper], 1), 3).tolist()}"
        )
        return text + ("; " + "; ".join(self.notes) if self.notes else "")

    def _data(self) -> mujoco.MjData:
        """Scratch data of the calling thread (the policy node observes from two threads)."""
        data = getattr(self._local, "data", None)
        if data is None:
            data = self._local.data = mujoco.MjData(self.mj_model)
        return data

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_local")
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def _states(self, q: np.ndarray) -> np.ndarray:
        q = np.asarray(q, dtype=float)
        if q.shape[-1:] != (self.n_joints,):
            raise ValueError(
                f"joint positions of shape {q.shape}: last axis must be {self.n_joints}"
            )
        return q.reshape(-1, self.n_joints)

    def tip_kinematics(
        self, q: np.ndarray, jacobian: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Tip position (..., 3) and its Jacobian d tip / d q (..., 3, n), in the base frame,
        for joint positions ``q`` (..., n) (one state or a batch)."""
        flat = self._states(q)
        batch = np.shape(q)[:-1]
        m, d = self.mj_model, self._data()
        pos = np.empty((len(flat), 3))
        jac = np.empty((len(flat), 3, self.n_joints)) if jacobian else None
        jacp = np.zeros((3, m.nv))
        for i, qi in enumerate(flat):
            d.qpos[self._qadr] = qi
            mujoco.mj_kinematics(m, d)
            pos[i] = d.site_xpos[self._site]
            if jac is not None:
                mujoco.mj_comPos(m, d)
                mujoco.mj_jacSite(m, d, jacp, None, self._site)
                jac[i] = jacp[:, self._dofadr]
        if self._base_id != 0:
            rot = d.xmat[self._base_id].reshape(3, 3)
            pos = (pos - d.xpos[self._base_id]) @ rot
            if jac is not None:
                jac = np.einsum("ji,bjk->bik", rot, jac)
        pos = pos.reshape(batch + (3,))
        return pos, (jac.reshape(batch + (3, self.n_joints)) if jac is not None else None)

    def tip_position(self, q: np.ndarray) -> np.ndarray:
        """Tip position (..., 3) in the base frame."""
        return self.tip_kinematics(q, jacobian=False)[0]

    def tip_jacobian(self, q: np.ndarray) -> np.ndarray:
        """d tip / d q (..., 3, n) in the base frame."""
        return self.tip_kinematics(q)[1]

    def gravity_effort(self, q: np.ndarray) -> np.ndarray:
        """Joint efforts (..., n) that hold the arm still at ``q``: MuJoCo's bias force at zero
        velocity (what a gravity-compensated effort interface adds)."""
        flat = self._states(q)
        m, d = self.mj_model, self._data()
        out = np.empty_like(flat)
        bias = np.zeros(m.nv)
        for i, qi in enumerate(flat):
            d.qpos[:] = m.qpos0
            d.qpos[self._qadr] = qi
            d.qvel[:] = 0.0
            mujoco.mj_kinematics(m, d)
            mujoco.mj_comPos(m, d)
            mujoco.mj_comVel(m, d)
            mujoco.mj_rne(m, d, 0, bias)
            out[i] = bias[self._dofadr]
        return out.reshape(np.shape(q))

    def sample_joint_positions(
        self, rng: np.random.Generator, size: int | None = None
    ) -> np.ndarray:
        """Joint positions uniform within the limits (an unlimited hinge: one turn)."""
        lo = np.where(np.isfinite(self.joint_lower), self.joint_lower, -np.pi)
        hi = np.where(np.isfinite(self.joint_upper), self.joint_upper, np.pi)
        unbounded = [
            n
            for n, k, a, b in zip(
                self.joint_names, self.joint_types, self.joint_lower, self.joint_upper
            )
            if k == SLIDE and not np.isfinite(b - a)
        ]
        if unbounded:
            raise ArmModelError(
                f"{self.source}: slide joint {unbounded[0]!r} has no range to sample"
            )
        shape = (self.n_joints,) if size is None else (int(size), self.n_joints)
        return rng.uniform(lo, hi, shape)
