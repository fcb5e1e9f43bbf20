"""The safety envelope between whatever computes a command (policy, iLQG, a human) and the arm.

A learning policy will, sooner or later, output NaN, a huge number or a torque that drives a
joint into its end stop; a ForwardCommandController holds its last command forever if commands
stop (BRIEF §3). This module is the one place that turns *any* proposed command into one that
is safe for the current joint state. It is pure numpy so it can be property-tested and run
unchanged in the sim bridge, the policy node or a hardware driver.

Rules, applied per joint, in this order (each can only move a command towards zero or towards
a restoring effort, so later rules never undo earlier ones):

1. e-stop latched, command watchdog expired, or malformed input -> all efforts zero;
2. non-finite command entry -> zero for that joint;
3. non-finite joint state -> zero for that joint (we cannot check its limits);
4. at or past a soft position limit -> no effort further outwards (optionally a bounded
   restoring effort back inside);
5. at or past the velocity limit -> no effort that accelerates further in the direction of
   motion;
6. clip to the effort limit.

That is the ``effort`` interface. With ``hold_effort`` (the model's gravity torque G(q), for
an arm on a plain effort interface that carries its own weight), "zero" above reads "the
holding effort": the rules act on the effort beyond G(q), so an e-stop or a watchdog trip
holds the arm up instead of dropping it, and rule 6 caps the total.

A ForwardCommandController may claim ``velocity`` or
``position`` instead; the same rules then read (restoring gain in 1/s for velocity):

- velocity: 1. -> zero velocity; 2./3. -> zero for that joint; 4. at or past a soft limit no
  outward velocity (with a restoring gain: ``min(gain * overshoot, velocity limit)`` back
  inside); 5./6. clip to the velocity limit.
- position: 1. -> HOLD: the measured position, latched when the hold begins (zero would be
  a target at 0 rad, and re-reading the position every tick lets a sagging arm creep);
  2. -> hold that joint at its measured position; 3. -> that joint's last safe target (its
  position is unknown, so nothing relative to it can be checked; a joint never commanded
  before gets 0 clipped into its soft limits - the nodes never get there, their plausibility
  check refuses a non-finite state before anything is commanded); 4. clip the target into
  [soft_lower, soft_upper]; 5. clip ``|target - q|`` to ``velocity limit * control_dt``, so
  the arm is never asked to move faster than its limit. Rule 5 moves the target towards
  ``q``, so a target past a soft limit only ever lies between the arm and the limit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from naf_ros.config import EFFORT, POSITION, VELOCITY, check_interface

# Reasons a filter call changed (or zeroed) the command; also the keys of the counters.
ESTOP = "estop"
WATCHDOG = "watchdog"
BAD_INPUT = "bad_input"
NONFINITE_COMMAND = "nonfinite_command"
INVALID_STATE = "invalid_state"
POSITION_LIMIT = "position_limit"
VELOCITY_LIMIT = "velocity_limit"
EFFORT_LIMIT = "effort_limit"
REASONS = (
    ESTOP,
    WATCHDOG,
    BAD_INPUT,
    NONFINITE_COMMAND,
    INVALID_STATE,
    POSITION_LIMIT,
    VELOCITY_LIMIT,
    EFFORT_LIMIT,
)

PER_JOINT_KEYS = ("effort", "soft_lower", "soft_upper", "velocity", "restoring_gain")
SCALAR_KEYS = ("command_timeout",)


def _as_joint_array(values: Any, n: int) -> np.ndarray:
    arr = np.array(values, dtype=np.float64).reshape(-1)
    if arr.shape != (n,):
        raise ValueError(f"expected {n} per-joint values, got shape {np.shape(values)}")
    return arr


@dataclass(frozen=True, eq=False)  # arrays make == ambiguous; compare fields explicitly
class SafetyLimits:
    """Per-joint limits (SI units: N·m, rad, rad/s) and the command timeout (s).

    ``soft_lower``/``soft_upper`` may be ``-inf``/``inf`` (unlimited joint), ``velocity`` may
    be ``inf``; ``effort`` must be finite and > 0 because an unbounded torque is never safe.
    ``restoring_gain`` (N·m/rad) > 0 replaces an outward command past a soft limit by
    ``gain * overshoot`` (capped at the effort limit) pointing back inside; 0 just cuts it.
    ``command_timeout`` None disables the watchdog (only sensible in lockstep simulation).
    """

    joint_names: tuple[str, ...]
    effort: np.ndarray
    soft_lower: np.ndarray
    soft_upper: np.ndarray
    velocity: np.ndarray
    restoring_gain: np.ndarray | None = None
    command_timeout: float | None = 0.5

    def __post_init__(self) -> None:
        names = tuple(str(n) for n in self.joint_names)
        n = len(names)
        if n == 0:
            raise ValueError("safety: joint_names is empty")
        if len(set(names)) != n:
            raise ValueError(f"safety: joint_names has duplicates: {list(names)}")
        object.__setattr__(self, "joint_names", names)
        gain = np.zeros(n) if self.restoring_gain is None else self.restoring_gain
        arrays = {
            "effort": self.effort,
            "soft_lower": self.soft_lower,
            "soft_upper": self.soft_upper,
            "velocity": self.velocity,
            "restoring_gain": gain,
        }
        for key, value in arrays.items():
            try:
                arr = _as_joint_array(value, n)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"safety.{key}: {exc}") from None
            if np.isnan(arr).any():
                raise ValueError(f"safety.{key}: NaN is not a limit")
            arr.setflags(write=False)
            object.__setattr__(self, key, arr)
        if not (np.isfinite(self.effort).all() and (self.effort > 0).all()):
            raise ValueError(f"safety.effort: {self.effort.tolist()} must be finite and > 0")
        if not (self.velocity > 0).all():
            raise ValueError(f"safety.velocity: {self.velocity.tolist()} must be > 0 (or inf)")
        if not (self.soft_lower < self.soft_upper).all():
            bad = [names[i] for i in np.flatnonzero(~(self.soft_lower < self.soft_upper))]
            raise ValueError(f"safety.soft_lower: must be below soft_upper (joints {bad})")
        gain = self.restoring_gain
        if not (np.isfinite(gain).all() and (gain >= 0).all()):
            raise ValueError(f"safety.restoring_gain: {gain.tolist()} must be finite and >= 0")
        timeout = self.command_timeout
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise ValueError(f"safety.command_timeout: {timeout!r} must be a number or None")
            if not (timeout > 0 and math.isfinite(timeout)):
                raise ValueError(f"safety.command_timeout: {timeout!r} must be finite and > 0")
            object.__setattr__(self, "command_timeout", float(timeout))

    @property
    def n_joints(self) -> int:
        return len(self.joint_names)

    @classmethod
    def from_arm(
        cls,
        arm: Any,
        *,
        position_margin: float = 0.0,
        velocity: float = math.inf,
        restoring_gain: float = 0.0,
        command_timeout: float | None = 0.5,
        **overrides: Any,
    ) -> SafetyLimits:
        """Limits from an :class:`~naf_ros.envs.arm.ArmModel`: the description's effort limits, its
        joint ranges shrunk by ``position_margin`` (so we stop *before* the hard stop), plus
        ``overrides`` in :meth:`from_dict` form."""
        if position_margin < 0:
            raise ValueError(f"safety.position_margin: {position_margin!r} must be >= 0")
        base = {
            "effort": np.asarray(arm.effort_limits, float).tolist(),
            "soft_lower": (np.asarray(arm.joint_lower, float) + position_margin).tolist(),
            "soft_upper": (np.asarray(arm.joint_upper, float) - position_margin).tolist(),
            "velocity": velocity,
            "restoring_gain": restoring_gain,
            "command_timeout": command_timeout,
        }
        return cls.from_dict(overrides, joint_names=tuple(arm.joint_names), defaults=base)

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any] | None,
        joint_names: Sequence[str] | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> SafetyLimits:
        """Validate a config mapping; every problem is one ``ValueError`` line naming the key.

        Per-joint keys (``effort``, ``soft_lower``, ``soft_upper``, ``velocity``,
        ``restoring_gain``) take a number (all joints), a list in ``joint_names`` order, or a
        mapping ``{joint_name: value}`` that overrides only the joints it names - joints are
        matched by name, never by position, as on a real arm. ``joint_names`` may also be a
        key of ``data``. Missing keys fall back to ``defaults`` (then: no position/velocity
        limit, no restoring effort, 0.5 s timeout; ``effort`` has no default).
        """
        data = dict(data or {})
        allowed = ("joint_names",) + PER_JOINT_KEYS + SCALAR_KEYS
        unknown = [k for k in data if k not in allowed]
        if unknown:
            raise ValueError(
                f"safety.{unknown[0]}: unknown key; allowed keys: {', '.join(allowed)}"
            )
        arm_names = _names("joint_names", joint_names) if joint_names is not None else None
        cfg_names = _names("joint_names", data.pop("joint_names", None) or arm_names)
        if arm_names is not None and sorted(cfg_names) != sorted(arm_names):
            raise ValueError(
                f"safety.joint_names: {list(cfg_names)} are not the arm's joints {list(arm_names)}"
            )
        names = arm_names or cfg_names
        order = [cfg_names.index(name) for name in names]  # config order -> arm order
        merged = {
            "soft_lower": -math.inf,
            "soft_upper": math.inf,
            "velocity": math.inf,
            "restoring_gain": 0.0,
            "command_timeout": 0.5,
            **dict(defaults or {}),
        }
        values: dict[str, np.ndarray] = {}
        for key in PER_JOINT_KEYS:
            arr = np.full(len(names), math.nan)
            if merged.get(key) is not None:  # defaults are already in arm order
                arr = _per_joint(key, merged[key], names)
            if key in data:
                given = data[key]
                if isinstance(given, (list, tuple, np.ndarray)):
                    arr = _per_joint(key, given, cfg_names)[order]
                else:
                    arr = _per_joint(key, given, names, start=arr)
            missing = [names[i] for i in np.flatnonzero(np.isnan(arr))]
            if missing:
                raise ValueError(f"safety.{key}: no value for joints {missing}")
            values[key] = arr
        timeout = data.get("command_timeout", merged["command_timeout"])
        return cls(joint_names=names, command_timeout=timeout, **values)


def _names(key: str, value: Any) -> tuple[str, ...]:
    if (
        not value
        or isinstance(value, str)
        or not isinstance(value, (list, tuple))
        or not all(isinstance(x, str) and x for x in value)
    ):
        raise ValueError(f"safety.{key}: need a non-empty list of joint names, got {value!r}")
    return tuple(value)


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(f"safety.{key}: {value!r} is not a number")
    return float(value)


def _per_joint(
    key: str, value: Any, names: tuple[str, ...], start: np.ndarray | None = None
) -> np.ndarray:
    """A number (every joint), a list in ``names`` order or a ``{name: value}`` mapping."""
    n = len(names)
    if isinstance(value, Mapping):
        out = np.array(start, dtype=float) if start is not None else np.full(n, np.nan)
        for name, v in value.items():
            if name not in names:
                raise ValueError(f"safety.{key}: unknown joint {name!r}; joints: {list(names)}")
            out[names.index(name)] = _number(f"{key}.{name}", v)
        return out
    if isinstance(value, (list, tuple, np.ndarray)):
        if len(value) != n:
            raise ValueError(f"safety.{key}: {len(value)} values for {n} joints {list(names)}")
        return np.array([_number(key, v) for v in value], dtype=float)
    return np.full(n, _number(key, value))


class SafetyEnvelope:
    """Stateful filter: e-stop latch, command watchdog and counters around the limit rules.

    Usage: call :meth:`command_received` when a new command arrives, then :meth:`filter` on
    every control tick with the latest command and joint state. ``now`` is seconds on one
    clock (sim time or monotonic), the same for both calls. ``interface`` is the command's
    kind (module docstring); velocity and position need finite velocity limits, position
    also the ``control_dt`` (s) a target has to be reached in.
    """

    def __init__(
        self,
        limits: SafetyLimits,
        interface: str = EFFORT,
        control_dt: float | None = None,
        hold_effort: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.limits = limits
        # Effort only: the torque that holds the arm still against gravity at q (the model's
        # G(q)). Given, every effort rule moves the command towards it instead of towards
        # zero, so an e-stop, a watchdog trip or a soft limit never drops a gravity-loaded
        # arm on a plain effort interface; the effort limit still caps the total.
        if hold_effort is not None and interface != EFFORT:
            raise ValueError(
                f"hold_effort: only the effort interface holds with torques, not {interface}"
            )
        self.hold_effort = hold_effort
        self.n = limits.n_joints
        self.interface = check_interface(interface)
        if interface != EFFORT and not np.isfinite(limits.velocity).all():
            raise ValueError(
                f"safety.velocity: the {interface} interface needs a finite velocity limit per "
                f"joint, got {limits.velocity.tolist()}"
            )
        self.max_step: np.ndarray | None = None
        if interface == POSITION:
            if control_dt is None or not (math.isfinite(control_dt) and control_dt > 0):
                raise ValueError(f"control_dt: {control_dt!r} must be finite and > 0")
            self.max_step = limits.velocity * float(control_dt)
        self._hold: np.ndarray | None = None  # position: the latched hold target
        self._last_target: np.ndarray | None = None  # position: the last safe target
        self._estop = False
        self._estop_reason = ""
        self._last_command: float | None = None
        self.counters: dict[str, int] = dict.fromkeys(REASONS, 0)
        self.calls = 0

    # --- latch and watchdog ----------------------------------------------------------------
    @property
    def holding(self) -> bool:
        """Position: a hold is latched (an e-stop, watchdog or malformed command began it)."""
        return self._hold is not None

    @property
    def estopped(self) -> bool:
        return self._estop

    @property
    def estop_reason(self) -> str:
        return self._estop_reason

    def engage_estop(self, reason: str = "requested") -> None:
        """Latch zero effort (zero velocity, a position hold). Only :meth:`release_estop`
        clears it - no timeout, no command."""
        if not self._estop:
            self._estop_reason = str(reason)
        self._estop = True

    def release_estop(self) -> None:
        """Explicitly clear the latch. The watchdog is reset too, so the command held from
        before the stop is not replayed: motion resumes only after a fresh command."""
        self._estop = False
        self._estop_reason = ""
        self._last_command = None

    def command_received(self, now: float) -> None:
        """Mark a fresh command at time ``now`` (s); non-finite times are ignored."""
        if math.isfinite(now):
            self._last_command = float(now)

    def watchdog_expired(self, now: float) -> bool:
        """True if no command arrived within ``command_timeout`` before ``now``.

        Never-commanded, non-finite ``now`` and a clock that went backwards (sim reset) all
        count as expired: when in doubt the arm gets zero effort until a new command.
        """
        timeout = self.limits.command_timeout
        if timeout is None:
            return False
        if self._last_command is None or not math.isfinite(now):
            return True
        age = now - self._last_command
        return not (0.0 <= age <= timeout)

    # --- the filter --------------------------------------------------------------------------
    def filter(
        self, command: Any, q: Any, qd: Any, now: float
    ) -> tuple[np.ndarray, tuple[str, ...]]:
        """Return ``(safe_command, reasons)``; never raises, always ``n`` finite values.

        ``reasons`` names every rule that changed the command (empty when it passed as is).
        """
        self.calls += 1
        try:
            now = float(now)
        except (TypeError, ValueError, OverflowError):
            now = math.nan
        if self._estop:
            return self._count(self._rest(q), (ESTOP,))
        if self.watchdog_expired(now):
            return self._count(self._rest(q), (WATCHDOG,))
        arrays = []
        for value in (command, q, qd):
            try:
                arr = np.array(value, dtype=np.float64).reshape(-1)
            except (TypeError, ValueError, OverflowError):
                return self._count(self._rest(q), (BAD_INPUT,))
            if arr.shape != (self.n,):
                return self._count(self._rest(q), (BAD_INPUT,))
            arrays.append(arr)
        if self.interface == EFFORT:
            return self._filter_effort(*arrays)
        self._hold = None
        if self.interface == VELOCITY:
            return self._filter_velocity(*arrays)
        return self._filter_position(*arrays)

    def _filter_effort(
        self, e: np.ndarray, q: np.ndarray, qd: np.ndarray
    ) -> tuple[np.ndarray, tuple[str, ...]]:
        lim = self.limits
        # The common case in one pass (it runs in the realtime path): a finite command within
        # its effort limit, from a finite state strictly inside every limit, passes as is.
        # Anything else, NaN included (it compares False), takes the rules below.
        nominal = (
            (np.abs(e) <= lim.effort)
            & (q > lim.soft_lower)
            & (q < lim.soft_upper)
            & (np.abs(qd) < lim.velocity)
        )
        if nominal.all():
            return e, ()
        reasons: list[str] = []
        # The rules act on the effort beyond holding (all of it without a gravity model);
        # computed only off the nominal path, which passes the command (G(q) included) as is.
        hold = self._holding_effort(q)
        e, q, qd, bad = self._finite(e - hold, q, qd, reasons)

        # Soft position limits: never push further out; optionally push back in.
        e = self._soft_limits(e, q, bad, lim.effort, reasons)

        # Velocity limit: at or beyond it, nothing that accelerates further along the motion.
        fast_pos = qd >= lim.velocity
        fast_neg = qd <= -lim.velocity
        cut = (fast_pos & (e > 0)) | (fast_neg & (e < 0))
        if cut.any():
            e[cut] = 0.0
            reasons.append(VELOCITY_LIMIT)

        e = e + hold
        clipped = np.clip(e, -lim.effort, lim.effort)
        if (clipped != e).any():
            reasons.append(EFFORT_LIMIT)
        return self._count(clipped, tuple(reasons))

    def _finite(
        self, c: np.ndarray, q: np.ndarray, qd: np.ndarray, reasons: list[str]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Rules 2 and 3 for effort and velocity: zero for a non-finite entry or state."""
        bad = ~np.isfinite(c)
        if bad.any():
            c[bad] = 0.0
            reasons.append(NONFINITE_COMMAND)
        bad = ~(np.isfinite(q) & np.isfinite(qd))
        if bad.any() and (c[bad] != 0).any():
            reasons.append(INVALID_STATE)
        c[bad] = 0.0
        q = np.where(bad, 0.0, q)  # placeholders; those joints are already zero
        qd = np.where(bad, 0.0, qd)
        return c, q, qd, bad

    def _soft_limits(
        self, c: np.ndarray, q: np.ndarray, bad: np.ndarray, cap: np.ndarray, reasons: list[str]
    ) -> np.ndarray:
        """Rule 4 for effort and velocity: nothing outwards at or past a soft limit; with a
        restoring gain, ``min(gain * overshoot, cap)`` back inside instead."""
        lim = self.limits
        over = (q >= lim.soft_upper) & ~bad
        under = (q <= lim.soft_lower) & ~bad
        outward = (over & (c > 0)) | (under & (c < 0))
        restore = lim.restoring_gain > 0
        replace = (over | under) & restore
        new = c.copy()
        new[outward] = 0.0
        if replace.any():
            with np.errstate(invalid="ignore", over="ignore"):
                depth = np.where(over, q - lim.soft_upper, lim.soft_lower - q)
                push = np.minimum(lim.restoring_gain * depth, cap)
            push = np.where(np.isfinite(push), push, 0.0)
            inward = np.where(over, -push, push)
            new[outward & replace] = inward[outward & replace]
        if (new != c).any():
            reasons.append(POSITION_LIMIT)
        return new

    def _filter_velocity(
        self, v: np.ndarray, q: np.ndarray, qd: np.ndarray
    ) -> tuple[np.ndarray, tuple[str, ...]]:
        lim = self.limits
        nominal = (np.abs(v) <= lim.velocity) & (q > lim.soft_lower) & (q < lim.soft_upper)
        if nominal.all() and np.isfinite(qd).all():
            return v, ()
        reasons: list[str] = []
        v, q, qd, bad = self._finite(v, q, qd, reasons)
        v = self._soft_limits(v, q, bad, lim.velocity, reasons)
        clipped = np.clip(v, -lim.velocity, lim.velocity)
        if (clipped != v).any():
            reasons.append(VELOCITY_LIMIT)
        return self._count(clipped, tuple(reasons))

    def _filter_position(
        self, target: np.ndarray, q: np.ndarray, qd: np.ndarray
    ) -> tuple[np.ndarray, tuple[str, ...]]:
        lim, step = self.limits, self.max_step
        reasons: list[str] = []
        bad = ~np.isfinite(target)
        if bad.any():
            target[bad] = q[bad]  # hold that joint (a non-finite q is rule 3's)
            reasons.append(NONFINITE_COMMAND)
        invalid = ~(np.isfinite(q) & np.isfinite(qd))
        if invalid.any():
            fallback = self._unknown_state_target()
            if (target[invalid] != fallback[invalid]).any():
                reasons.append(INVALID_STATE)
            target[invalid] = fallback[invalid]
        qv = np.where(invalid, target, q)  # the invalid joints are settled; skip them below
        inside = np.clip(target, lim.soft_lower, lim.soft_upper)
        inside[invalid] = target[invalid]
        if (inside != target).any():
            reasons.append(POSITION_LIMIT)
        with np.errstate(invalid="ignore", over="ignore"):
            stepped = np.clip(inside, qv - step, qv + step)
        stepped = np.where(np.isfinite(stepped), stepped, inside)
        if (stepped != inside).any():
            reasons.append(VELOCITY_LIMIT)
        self._last_target = stepped.copy()
        return self._count(stepped, tuple(reasons))

    def _unknown_state_target(self) -> np.ndarray:
        """Targets for joints whose position is unknown: the last safe one, else 0 clipped
        into the soft limits (see the module docstring)."""
        if self._last_target is not None:
            return self._last_target.copy()
        return np.clip(np.zeros(self.n), self.limits.soft_lower, self.limits.soft_upper)

    def _holding_effort(self, q: Any) -> np.ndarray:
        """``hold_effort(q)`` capped at the effort limits; zero without a gravity model or
        where ``q`` is unknown (no finite state, no gravity torque to compute)."""
        if self.hold_effort is None:
            return np.zeros(self.n)
        try:
            arr = np.array(q, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError, OverflowError):
            return np.zeros(self.n)
        if arr.shape != (self.n,) or not np.isfinite(arr).all():
            return np.zeros(self.n)
        hold = np.asarray(self.hold_effort(arr), dtype=np.float64).reshape(-1)
        if hold.shape != (self.n,) or not np.isfinite(hold).all():
            return np.zeros(self.n)
        return np.clip(hold, -self.limits.effort, self.limits.effort)

    def _rest(self, q: Any) -> np.ndarray:
        """Rule 1's command: the holding effort (zero without a gravity model), zero
        velocity, or the latched position hold."""
        if self.interface == EFFORT:
            return self._holding_effort(q)
        if self.interface != POSITION:
            return np.zeros(self.n)
        if self._hold is None:
            self._hold = self.rest(q)
            self._last_target = self._hold.copy()
        return self._hold.copy()

    def rest(self, q: Any = None) -> np.ndarray:
        """The command that asks for no motion at joint positions ``q`` (for deactivate,
        shutdown, the end of an episode): zero effort or velocity; for position the hold
        while one is latched, else ``q`` where it is finite and the last safe target (else
        0 clipped into the soft limits) where not."""
        if self.interface == EFFORT:
            return self._holding_effort(q)
        if self.interface != POSITION:
            return np.zeros(self.n)
        if self._hold is not None:
            return self._hold.copy()
        fallback = self._unknown_state_target()
        try:
            arr = np.array(q, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError, OverflowError):
            return fallback
        if arr.shape != (self.n,):
            return fallback
        return np.where(np.isfinite(arr), arr, fallback)

    def _count(self, command: np.ndarray, reasons: tuple[str, ...]) -> tuple[np.ndarray, tuple]:
        for r in reasons:
            self.counters[r] += 1
        return command, reasons

    def diagnostics(self) -> dict[str, Any]:
        """Flat key/values for a ``/diagnostics`` status."""
        return {
            "estop": self._estop,
            "estop_reason": self._estop_reason,
            "filter_calls": self.calls,
            **{f"limited_{k}": v for k, v in self.counters.items()},
        }
