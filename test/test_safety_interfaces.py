"""Safety envelope under the velocity and position command interfaces: for ANY command and
ANY joint state the output respects every rule (module docstring of naf_ros.core.safety).

Same strategies as test_safety (random per-joint limits, commands with NaN/inf/huge values
and wrong shapes, states with NaN), with the velocity limits made finite (both interfaces
need them) and each rule checked independently of the implementation.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_safety import FAST, limits, scenario

from naf_ros.core.safety import (
    BAD_INPUT,
    ESTOP,
    NONFINITE_COMMAND,
    POSITION_LIMIT,
    VELOCITY_LIMIT,
    WATCHDOG,
    SafetyEnvelope,
    SafetyLimits,
)

DT = 0.02


def finite_velocity(lim: SafetyLimits, rng: np.random.Generator) -> SafetyLimits:
    """The same limits with every velocity limit finite (velocity/position need them)."""
    v = np.where(
        np.isfinite(lim.velocity), lim.velocity, 10.0 ** rng.uniform(-2, 1.7, lim.n_joints)
    )
    return SafetyLimits(**{**lim.__dict__, "velocity": v})  # type: ignore[arg-type]


def as_vector(command, n: int) -> np.ndarray | None:
    """The command as the envelope reads it, or None when it is malformed."""
    try:
        arr = np.array(command, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        return None
    return arr if arr.shape == (n,) else None


def check_velocity(lim, command, out, q, qd, reasons) -> None:
    assert out.shape == (lim.n_joints,) and out.dtype == np.float64
    assert np.isfinite(out).all()
    assert (np.abs(out) <= lim.velocity).all(), "faster than the velocity limit"
    c = as_vector(command, lim.n_joints)
    if c is None:
        assert reasons == (BAD_INPUT,) and (out == 0).all(), "malformed -> zero velocity"
        return
    for i in range(lim.n_joints):
        if not (math.isfinite(q[i]) and math.isfinite(qd[i])):
            assert out[i] == 0.0, "unknown joint state must get zero velocity"
            continue
        if not math.isfinite(c[i]):
            assert out[i] == 0.0, "a non-finite entry must become zero"
        if q[i] >= lim.soft_upper[i]:
            assert out[i] <= 0.0, "moves further past the upper soft limit"
        if q[i] <= lim.soft_lower[i]:
            assert out[i] >= 0.0, "moves further past the lower soft limit"


@FAST
@given(scenario(), st.integers(0, 2**32 - 1))
def test_velocity_any_command_any_state_is_made_safe(case, seed):
    lim, command, q, qd = case
    lim = finite_velocity(lim, np.random.default_rng(seed))
    env = SafetyEnvelope(lim, "velocity")
    env.command_received(0.0)
    out, reasons = env.filter(command, q, qd, 0.0)
    check_velocity(lim, command, out, q, qd, reasons)
    assert WATCHDOG not in reasons and ESTOP not in reasons


def check_position(lim, command, out, q, qd, reasons, last, step) -> None:
    """``last``: the previous safe target (None before the first)."""
    n = lim.n_joints
    assert out.shape == (n,) and out.dtype == np.float64
    assert np.isfinite(out).all()
    c = as_vector(command, n)
    if c is None:  # malformed -> hold where the arm is, never zero
        assert reasons == (BAD_INPUT,)
        for i in range(n):
            if math.isfinite(q[i]):
                assert out[i] == q[i], "malformed command must hold the arm"
        return
    for i in range(n):
        if not (math.isfinite(q[i]) and math.isfinite(qd[i])):
            expected = (
                last[i] if last is not None else np.clip(0.0, lim.soft_lower[i], lim.soft_upper[i])
            )
            assert out[i] == expected, "unknown state: the last safe target"
            continue
        # q ± step is rounded to the precision of the result, which can be coarser than q's
        # (q = -0.062, out = -0.514 exceeded step by 5e-17 < ulp(out) once in CI).
        slack = step[i] + 2 * math.ulp(max(abs(q[i]), abs(out[i])))
        assert abs(out[i] - q[i]) <= slack, "a target further than one period at the limit"
        within = lim.soft_lower[i] <= q[i] <= lim.soft_upper[i]
        if not math.isfinite(c[i]) and within:
            assert out[i] == q[i], "a non-finite entry must hold that joint"
        # Inside the soft limits, or between the arm and the limit it is past (never outward).
        assert min(q[i], lim.soft_lower[i]) <= out[i] <= max(q[i], lim.soft_upper[i])
        if within:
            assert lim.soft_lower[i] <= out[i] <= lim.soft_upper[i], "target past a soft limit"


@FAST
@given(scenario(), st.integers(0, 2**32 - 1), st.booleans())
def test_position_any_command_any_state_is_made_safe(case, seed, commanded_before):
    lim, command, q, qd = case
    rng = np.random.default_rng(seed)
    lim = finite_velocity(lim, rng)
    env = SafetyEnvelope(lim, "position", control_dt=DT)
    env.command_received(0.0)
    last = None
    if commanded_before:  # a previous safe target for the unknown-state rule to fall back on
        q0 = np.clip(rng.uniform(-3, 3, lim.n_joints), lim.soft_lower, lim.soft_upper)
        last, _ = env.filter(q0, q0, np.zeros(lim.n_joints), 0.0)
    out, reasons = env.filter(command, q, qd, 0.0)
    check_position(lim, command, out, q, qd, reasons, last, lim.velocity * DT)
    assert WATCHDOG not in reasons and ESTOP not in reasons


def inside(lim: SafetyLimits, rng: np.random.Generator) -> np.ndarray:
    lo = np.where(np.isfinite(lim.soft_lower), lim.soft_lower, -5.0)
    hi = np.where(np.isfinite(lim.soft_upper), lim.soft_upper, 5.0)
    q = rng.uniform(lo, hi)
    return np.clip(q, np.nextafter(lim.soft_lower, np.inf), np.nextafter(lim.soft_upper, -np.inf))


@settings(max_examples=500, deadline=None, database=None)
@given(limits(), st.integers(0, 2**32 - 1))
def test_safe_commands_pass_unchanged(lim, seed):
    """Not just 'always zero / always hold': inside every limit a command is untouched."""
    rng = np.random.default_rng(seed)
    lim = finite_velocity(lim, rng)
    n = lim.n_joints
    q = inside(lim, rng)
    qd = rng.uniform(-1, 1, n) * lim.velocity
    v = rng.uniform(-1, 1, n) * lim.velocity
    env = SafetyEnvelope(lim, "velocity")
    env.command_received(0.0)
    out, reasons = env.filter(v, q, qd, 0.0)
    assert reasons == () and np.array_equal(out, v)
    target = np.clip(q + 0.999 * v * DT, lim.soft_lower, lim.soft_upper)
    env = SafetyEnvelope(lim, "position", control_dt=DT)
    env.command_received(0.0)
    out, reasons = env.filter(target, q, qd, 0.0)
    assert reasons == () and np.array_equal(out, target)


def test_restoring_velocity_points_back_inside_and_is_bounded():
    lim = SafetyLimits(
        joint_names=("j",),
        effort=np.array([1.0]),
        soft_lower=np.array([-1.0]),
        soft_upper=np.array([1.0]),
        velocity=np.array([0.5]),
        restoring_gain=np.array([2.0]),
    )
    env = SafetyEnvelope(lim, "velocity")
    env.command_received(0.0)
    out, reasons = env.filter([0.3], [1.05], [0.0], 0.0)
    assert out[0] == pytest.approx(-0.1) and reasons == (POSITION_LIMIT,)
    out, _ = env.filter([0.3], [3.0], [0.0], 0.0)
    assert out[0] == -0.5  # bounded by the velocity limit
    out, reasons = env.filter([-0.2], [1.5], [0.0], 0.0)  # already inward: left alone
    assert out[0] == -0.2 and reasons == ()
    out, reasons = env.filter([9.0], [0.0], [0.0], 0.0)
    assert out[0] == 0.5 and reasons == (VELOCITY_LIMIT,)
    out, reasons = env.filter([math.nan], [0.0], [0.0], 0.0)
    assert out[0] == 0.0 and reasons == (NONFINITE_COMMAND,)


def three_joints(timeout=0.1) -> SafetyLimits:
    return SafetyLimits(
        joint_names=("a", "b", "c"),
        effort=np.ones(3),
        soft_lower=np.array([-1.0, -2.0, -math.inf]),
        soft_upper=np.array([1.0, 2.0, math.inf]),
        velocity=np.array([1.0, 2.0, 3.0]),
        command_timeout=timeout,
    )


def test_position_stops_hold_the_arm_where_it_was_never_at_zero():
    """E-stop, watchdog and malformed input hold the position at which the hold began,
    however the measured position drifts afterwards (no creeping), until a fresh command."""
    env = SafetyEnvelope(three_joints(), "position", control_dt=DT)
    q0 = np.array([0.5, -0.5, 7.0])
    env.command_received(0.0)
    out, reasons = env.filter(q0 + 0.01, q0, np.zeros(3), 0.0)
    assert reasons == () and np.allclose(out, q0 + 0.01)
    env.engage_estop("operator")
    for drift in (0.0, 0.05, 0.2):
        out, reasons = env.filter(q0 + 0.02, q0 + drift, np.zeros(3), 0.01)
        assert reasons == (ESTOP,) and np.array_equal(out, q0)
    assert np.array_equal(env.rest(q0 + 1.0), q0)
    env.release_estop()
    out, reasons = env.filter(q0 + 0.02, q0 + 0.3, np.zeros(3), 0.02)
    assert reasons == (WATCHDOG,) and np.array_equal(out, q0), "still held until a command"
    env.command_received(0.02)
    out, reasons = env.filter(q0 + 0.31, q0 + 0.3, np.zeros(3), 0.02)
    assert reasons == () and np.allclose(out, q0 + 0.31)
    # A stale command: a new hold, at the position the arm has now.
    out, reasons = env.filter(q0 + 0.31, q0 + 0.3, np.zeros(3), 5.0)
    assert reasons == (WATCHDOG,) and np.array_equal(out, q0 + 0.3)
    env.command_received(5.0)
    out, reasons = env.filter([1.0, 2.0], q0, np.zeros(3), 5.0)
    assert reasons == (BAD_INPUT,) and np.array_equal(out, q0 + 0.3)


def test_position_clips_into_soft_limits_and_one_period_at_the_velocity_limit():
    env = SafetyEnvelope(three_joints(), "position", control_dt=DT)
    env.command_received(0.0)
    q = np.array([0.99, 0.0, 0.0])
    out, reasons = env.filter([1.5, 0.5, -0.01], q, np.zeros(3), 0.0)
    assert np.allclose(out, [1.0, 0.04, -0.01])
    assert set(reasons) == {POSITION_LIMIT, VELOCITY_LIMIT}
    # Past a limit: back towards it at most one period's travel, never further out.
    out, _ = env.filter([5.0, 0.0, 0.0], np.array([1.5, 0.0, 0.0]), np.zeros(3), 0.0)
    assert out[0] == pytest.approx(1.48)
    # Unknown state: that joint keeps its last safe target.
    out2, _ = env.filter([0.0, 0.0, 0.0], np.array([math.nan, 0.0, 0.0]), np.zeros(3), 0.0)
    assert out2[0] == out[0]


def test_stopped_velocity_is_zero():
    env = SafetyEnvelope(three_joints(), "velocity")
    env.command_received(0.0)
    env.engage_estop()
    out, reasons = env.filter([0.5, 0.5, 0.5], np.zeros(3), np.zeros(3), 0.0)
    assert reasons == (ESTOP,) and not out.any()
    assert not env.rest(np.ones(3)).any()


def test_interfaces_need_finite_velocity_limits_and_position_a_period():
    lim = SafetyLimits(**{**three_joints().__dict__, "velocity": np.array([1.0, np.inf, 1.0])})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs a finite velocity limit"):
        SafetyEnvelope(lim, "velocity")
    with pytest.raises(ValueError, match="control_dt"):
        SafetyEnvelope(three_joints(), "position")
    with pytest.raises(ValueError, match="not one of effort, velocity, position"):
        SafetyEnvelope(three_joints(), "torque")
    SafetyEnvelope(lim)  # effort needs neither
