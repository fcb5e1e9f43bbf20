"""Safety envelope: for ANY command and ANY joint state the output respects every limit.

Property tests (hypothesis) over random per-joint limits, commands that include NaN, inf,
huge values and wrong shapes, and joint states that include NaN; a state machine for the
e-stop latch and the watchdog; plus the config validation's one-line errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from naf_ros.core.plausibility import StatePlausibility
from naf_ros.core.safety import (
    BAD_INPUT,
    ESTOP,
    WATCHDOG,
    SafetyEnvelope,
    SafetyLimits,
)
from naf_ros.envs.arm import ArmModel

ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True)
SPECIAL = np.array(
    [math.nan, math.inf, -math.inf, 1.7976931348623157e308, -1.7976931348623157e308]
    + [5e-324, -5e-324, 0.0, -0.0, 1e-300, 1e300, -1e300]
)
GAINS = np.array([0.0, 0.5, 10.0, 1e6])
# A hypothesis draw costs ~0.1-0.5 ms on these machines, so each example is a few draws:
# hypothesis picks the structure (joint count, which entries are special, boundary or huge)
# and a seed; numpy fills in the continuous values. Shrinking still reaches "all plain".
FAST = settings(max_examples=2000, deadline=None, database=None)
SEED = st.integers(0, 2**32 - 1)


def _kinds(draw, n: int, k: int) -> list[int]:
    """One draw for n per-entry categories in [0, k); 0 is the plain (shrunk-to) case."""
    code = draw(st.integers(0, k**n - 1))
    return [(code // k**i) % k for i in range(n)]


@st.composite
def limits(draw, n: int | None = None) -> SafetyLimits:
    n = n or draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(SEED))
    kinds = _kinds(draw, n, 8)  # bit 0: unlimited position, bit 1: no velocity limit, ...
    lo, hi = np.sort(rng.uniform(-4.0, 4.0, (2, n)), axis=0)
    hi = np.maximum(hi, lo + 1e-3)
    unlimited = np.array([k & 1 for k in kinds], bool)
    no_vel = np.array([k & 2 for k in kinds], bool)
    return SafetyLimits(
        joint_names=tuple(f"j{i}" for i in range(n)),
        effort=10.0 ** rng.uniform(-3, 3, n),
        soft_lower=np.where(unlimited, -math.inf, lo),
        soft_upper=np.where(unlimited, math.inf, hi),
        velocity=np.where(no_vel, math.inf, 10.0 ** rng.uniform(-2, 1.7, n)),
        restoring_gain=np.where([k & 4 for k in kinds], rng.choice(GAINS, n), 0.0),
        command_timeout=float(10.0 ** rng.uniform(-3, 1)),
    )


def _values(draw, n: int, scale: float, edges: list[np.ndarray]) -> np.ndarray:
    """n floats: plain, special (NaN/inf/huge/subnormal), exactly on a limit, or any magnitude."""
    rng = np.random.default_rng(draw(SEED))
    out = rng.uniform(-scale, scale, n)
    for i, kind in enumerate(_kinds(draw, n, 4)):
        if kind == 1:
            out[i] = rng.choice(SPECIAL)
        elif kind == 2 and edges:
            edge = edges[rng.integers(len(edges))][i]
            out[i] = (
                np.nextafter(edge, rng.choice([-np.inf, 0.0, np.inf]))
                if rng.random() < 0.5
                else edge
            )
        elif kind == 3:
            out[i] = rng.choice([-1.0, 1.0]) * 10.0 ** rng.uniform(-320, 308)
    return out


@st.composite
def scenario(draw):
    lim = draw(limits())
    n = lim.n_joints
    effort = _values(draw, n, 2.0 * lim.effort.max(), [lim.effort, -lim.effort])
    shape = draw(st.integers(0, 7))
    if shape == 1:
        effort = effort.tolist()
    elif shape == 2:
        effort = draw(st.lists(ANY_FLOAT, max_size=8))  # wrong length (mostly)
    elif shape == 3:
        effort = draw(st.sampled_from([None, "abc", [[1.0, 2.0]], {"a": 1}, 10**400, object()]))
    q = _values(draw, n, 5.0, [lim.soft_lower, lim.soft_upper])
    qd = _values(draw, n, 20.0, [lim.velocity, -lim.velocity])
    return lim, effort, q, qd


def check_safe(lim: SafetyLimits, out: np.ndarray, q: np.ndarray, qd: np.ndarray) -> None:
    """Every limit the envelope promises, checked independently of its implementation."""
    assert out.shape == (lim.n_joints,)
    assert out.dtype == np.float64
    assert np.isfinite(out).all()
    assert (np.abs(out) <= lim.effort).all()
    for i in range(lim.n_joints):
        if not (math.isfinite(q[i]) and math.isfinite(qd[i])):
            assert out[i] == 0.0, "unknown joint state must get zero effort"
            continue
        if q[i] >= lim.soft_upper[i]:
            assert out[i] <= 0.0, "pushes further past the upper soft limit"
        if q[i] <= lim.soft_lower[i]:
            assert out[i] >= 0.0, "pushes further past the lower soft limit"
        if qd[i] >= lim.velocity[i]:
            assert out[i] <= 0.0, "accelerates further beyond the velocity limit"
        if qd[i] <= -lim.velocity[i]:
            assert out[i] >= 0.0, "accelerates further beyond the velocity limit"


@FAST
@given(scenario(), st.floats(0.0, 1.0))
def test_any_command_any_state_is_made_safe(case, frac):
    lim, effort, q, qd = case
    env = SafetyEnvelope(lim)
    env.command_received(0.0)
    out, reasons = env.filter(effort, q, qd, frac * lim.command_timeout)
    check_safe(lim, out, q, qd)
    assert WATCHDOG not in reasons and ESTOP not in reasons
    assert all(env.counters[r] == 1 for r in reasons)


@settings(max_examples=500, deadline=None, database=None)
@given(limits(), st.data())
def test_safe_commands_pass_unchanged(lim, data):
    """The envelope is not just 'always zero': inside every limit a command is untouched."""
    n = lim.n_joints
    e = np.array([data.draw(st.floats(-1.0, 1.0)) * lim.effort[i] for i in range(n)])
    q = np.array(
        [
            data.draw(st.floats(-5.0, 5.0))
            if not math.isfinite(lim.soft_lower[i])
            else data.draw(
                st.floats(lim.soft_lower[i], lim.soft_upper[i], exclude_min=True, exclude_max=True)
            )
            for i in range(n)
        ]
    )
    qd = np.array(
        [
            data.draw(st.floats(-20.0, 20.0))
            if not math.isfinite(lim.velocity[i])
            else data.draw(
                st.floats(-lim.velocity[i], lim.velocity[i], exclude_min=True, exclude_max=True)
            )
            for i in range(n)
        ]
    )
    env = SafetyEnvelope(lim)
    env.command_received(0.0)
    out, reasons = env.filter(e, q, qd, 0.0)
    assert reasons == ()
    np.testing.assert_array_equal(out, e)


@settings(max_examples=200, deadline=None, database=None)
@given(scenario(), st.floats(1e-6, 1e6), st.booleans())
def test_watchdog_zeroes_stale_or_missing_commands(case, late, never):
    lim, effort, q, qd = case
    env = SafetyEnvelope(lim)
    if never:
        now = 5.0
    else:
        env.command_received(5.0)
        now = 5.0 + lim.command_timeout * (1.0 + late)
    assert env.watchdog_expired(now)
    out, reasons = env.filter(effort, q, qd, now)
    assert reasons == (WATCHDOG,)
    assert (out == 0).all()
    # A clock that jumps backwards (sim reset) is treated as stale too.
    env.command_received(5.0)
    out, reasons = env.filter(effort, q, qd, 4.0)
    assert reasons == (WATCHDOG,) and (out == 0).all()
    # Non-finite time never counts as fresh.
    assert env.watchdog_expired(math.nan)


class EstopMachine(RuleBasedStateMachine):
    """Model: zero while latched; after release, zero until a fresh command arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.lim = SafetyLimits(
            joint_names=("a", "b"),
            effort=np.array([1.0, 2.0]),
            soft_lower=np.array([-1.0, -math.inf]),
            soft_upper=np.array([1.0, math.inf]),
            velocity=np.array([3.0, math.inf]),
            command_timeout=0.1,
        )
        self.env = SafetyEnvelope(self.lim)
        self.now = 0.0
        self.latched = False
        self.fresh_at: float | None = None
        self.engagements = 0

    @rule(reason=st.sampled_from(["button", "fault", "limit"]))
    def engage(self, reason):
        self.env.engage_estop(reason)
        if not self.latched:
            self.engagements += 1
        self.latched = True

    @rule()
    def release(self):
        self.env.release_estop()
        self.latched = False
        self.fresh_at = None

    @rule(dt=st.floats(0.0, 0.2))
    def tick(self, dt):
        self.now += dt

    @rule()
    def command(self):
        self.env.command_received(self.now)
        self.fresh_at = self.now

    @rule(effort=st.lists(ANY_FLOAT, min_size=2, max_size=2))
    def control(self, effort):
        out, reasons = self.env.filter(effort, [0.0, 0.0], [0.0, 0.0], self.now)
        check_safe(self.lim, out, np.zeros(2), np.zeros(2))
        if self.latched:
            assert reasons == (ESTOP,) and (out == 0).all()
        elif self.fresh_at is None or self.now - self.fresh_at > 0.1:
            assert reasons == (WATCHDOG,) and (out == 0).all()
        else:
            assert ESTOP not in reasons and WATCHDOG not in reasons
            clean = np.where(np.isfinite(effort), effort, 0.0)
            np.testing.assert_array_equal(out, np.clip(clean, [-1.0, -2.0], [1.0, 2.0]))

    @precondition(lambda self: self.latched)
    @rule(dt=st.floats(0.0, 100.0))
    def latch_survives_time_and_commands(self, dt):
        self.now += dt
        self.env.command_received(self.now)
        self.fresh_at = self.now
        out, reasons = self.env.filter([1.0, 1.0], [0.0, 0.0], [0.0, 0.0], self.now)
        assert reasons == (ESTOP,) and (out == 0).all()

    @invariant()
    def latch_matches_model(self):
        assert self.env.estopped == self.latched


TestEstopLatch = EstopMachine.TestCase
TestEstopLatch.settings = settings(
    max_examples=100, stateful_step_count=30, deadline=None, database=None
)


def test_release_needs_explicit_call_and_a_fresh_command():
    arm = ArmModel.from_mjcf()
    env = SafetyEnvelope(SafetyLimits.from_arm(arm, command_timeout=0.2))
    env.command_received(0.0)
    assert env.filter([0.1, 0.1, 0.1], np.zeros(3), np.zeros(3), 0.05)[1] == ()
    env.engage_estop("operator")
    env.engage_estop("second press keeps the first reason")
    assert env.estop_reason == "operator"
    for t in (0.06, 10.0, 1e6):
        env.command_received(t)
        out, reasons = env.filter([0.1, 0.1, 0.1], np.zeros(3), np.zeros(3), t)
        assert reasons == (ESTOP,) and not out.any()
    env.release_estop()
    out, reasons = env.filter([0.1, 0.1, 0.1], np.zeros(3), np.zeros(3), 1e6)
    assert reasons == (WATCHDOG,), "the command held from before the stop must not resume"
    env.command_received(1e6)
    out, reasons = env.filter([0.1, 0.1, 0.1], np.zeros(3), np.zeros(3), 1e6)
    assert reasons == () and np.allclose(out, 0.1)
    assert env.counters["estop"] == 3 and env.counters["watchdog"] == 1
    assert env.diagnostics()["limited_estop"] == 3


def test_restoring_effort_points_back_inside_and_is_bounded():
    lim = SafetyLimits(
        joint_names=("j",),
        effort=np.array([0.3]),
        soft_lower=np.array([-1.0]),
        soft_upper=np.array([1.0]),
        velocity=np.array([np.inf]),
        restoring_gain=np.array([2.0]),
    )
    env = SafetyEnvelope(lim)
    env.command_received(0.0)
    out, _ = env.filter([0.3], [1.05], [0.0], 0.0)
    assert out[0] == pytest.approx(-0.1)
    out, _ = env.filter([0.3], [3.0], [0.0], 0.0)
    assert out[0] == -0.3
    out, _ = env.filter([-0.2], [-1.5], [0.0], 0.0)
    assert out[0] == pytest.approx(0.3)
    out, reasons = env.filter([-0.2], [1.5], [0.0], 0.0)  # already inward: left alone
    assert out[0] == -0.2 and reasons == ()
    # A restoring effort never accelerates past the velocity limit either.
    env2 = SafetyEnvelope(
        SafetyLimits(**{**lim.__dict__, "velocity": np.array([1.0])})  # type: ignore[arg-type]
    )
    env2.command_received(0.0)
    out, reasons = env2.filter([0.3], [1.5], [-2.0], 0.0)
    assert out[0] == 0.0 and "velocity_limit" in reasons


def test_bad_shapes_zero_everything():
    env = SafetyEnvelope(SafetyLimits.from_arm(ArmModel.from_mjcf()))
    env.command_received(0.0)
    for effort, q in (([1.0, 2.0], np.zeros(3)), ([0.1] * 3, np.zeros(2))):
        out, reasons = env.filter(effort, q, np.zeros(3), 0.0)
        assert reasons == (BAD_INPUT,) and out.shape == (3,) and not out.any()


def test_limits_from_arm_and_dict():
    arm = ArmModel.from_mjcf()
    lim = SafetyLimits.from_arm(arm, position_margin=0.1, velocity=8.0, effort={"joint3": 0.1})
    assert lim.joint_names == arm.joint_names
    np.testing.assert_allclose(lim.effort, [0.3, 0.3, 0.1])
    np.testing.assert_allclose(lim.soft_upper, [np.inf, 2.7, 2.7])
    np.testing.assert_allclose(lim.velocity, 8.0)
    # Lists follow the config's own joint order and are mapped to the arm's by name.
    lim = SafetyLimits.from_dict(
        {"joint_names": ["joint3", "joint1", "joint2"], "effort": [3.0, 1.0, 2.0]},
        joint_names=arm.joint_names,
    )
    np.testing.assert_allclose(lim.effort, [1.0, 2.0, 3.0])
    assert lim.command_timeout == 0.5


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"effort": [0.3, 0.3]}, "safety.effort: 2 values for 3 joints"),
        ({"effort": {"elbow": 1.0}}, "safety.effort: unknown joint 'elbow'"),
        ({"effort": [0.3, True, 0.3]}, "safety.effort: True is not a number"),
        ({"effort": [0.3, 0.3, float("inf")]}, "safety.effort: [0.3, 0.3, inf] must be finite"),
        ({"effort": 0.3, "velocity": [1.0, 0.0, 1.0]}, "safety.velocity: [1.0, 0.0, 1.0] must"),
        ({"effort": 0.3, "soft_lower": 1.0, "soft_upper": 0.5}, "safety.soft_lower: must be"),
        ({"effort": 0.3, "restoring_gain": -1}, "safety.restoring_gain: [-1.0, -1.0, -1.0]"),
        ({"effort": 0.3, "command_timeout": 0}, "safety.command_timeout: 0 must be finite"),
        ({"effort": 0.3, "command_timeout": "1s"}, "safety.command_timeout: '1s' must be"),
        ({"effort": 0.3, "wrist": 1}, "safety.wrist: unknown key; allowed keys: joint_names"),
        ({"soft_lower": -1.0}, "safety.effort: no value for joints ['joint1'"),
        ({"effort": {"joint1": 0.3}}, "safety.effort: no value for joints ['joint2', 'joint3']"),
        ({"joint_names": ["a", "b", "c"], "effort": 1.0}, "safety.joint_names: ['a', 'b', 'c']"),
        ({"joint_names": "joint1", "effort": 1.0}, "safety.joint_names: need a non-empty list"),
    ],
)
def test_from_dict_errors_are_one_line(data, message):
    arm = ArmModel.from_mjcf()
    with pytest.raises(ValueError) as err:
        SafetyLimits.from_dict(data, joint_names=arm.joint_names)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(message), text


def test_state_plausibility_bounds_positions_and_speeds():
    """Hard range ± slack for limited joints, a wide bound for continuous ones, a speed cap;
    each refusal names the joint."""
    check = StatePlausibility(
        lower=(-math.inf, -2.8), upper=(math.inf, 2.8), position_slack=0.5, max_velocity=100.0
    )
    assert check.check(np.array([50.0, 3.29]), np.array([-99.0, 99.0])) is None
    assert "joint 1 position" in check.check(np.array([0.0, 3.31]), np.zeros(2))
    assert "joint 1 position" in check.check(np.array([0.0, -3.31]), np.zeros(2))
    assert "joint 0 position" in check.check(np.array([1e308, 0.0]), np.zeros(2))
    assert "joint 0 speed" in check.check(np.zeros(2), np.array([-100.5, 0.0]))
    assert check.check(np.array([np.nan, 0.0]), np.zeros(2)) == "non-finite joint state"
    with pytest.raises(ValueError, match="max_velocity"):
        StatePlausibility(lower=(0.0,), upper=(1.0,), max_velocity=math.inf)
