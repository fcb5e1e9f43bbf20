"""Command interfaces: the action -> command mapping in closed form, and the sim driven
through effort motors, velocity servos and position servos as a ForwardCommandController
of that interface would drive the arm."""

import mujoco
import numpy as np
import pytest

from naf_ros.envs import ARM7_VELOCITY
from naf_ros.envs.arm import ArmModel, ArmModelError, asset_path
from naf_ros.envs.command import ArmCommand, resolve_velocity_limits
from naf_ros.envs.reacher_env import ArmReachEnv, Reacher3DOFEnv
from naf_ros.envs.sim import ArmSim

RNG = np.random.default_rng(0)


def arm7() -> ArmModel:
    return ArmModel.from_file(asset_path("arm7dof.xml"), velocity=ARM7_VELOCITY)


def reacher(velocity=None) -> ArmModel:
    return ArmModel.from_file(asset_path("reacher3dof.xml"), tip="fingertip", velocity=velocity)


def test_effort_is_the_scaled_action_plus_the_gravity_torque():
    arm = arm7()
    q = arm.sample_joint_positions(RNG)
    a = RNG.uniform(-1, 1, 7)
    cmd = ArmCommand(arm, "effort")
    assert cmd.gravity_compensation  # on by default: the model has gravity
    # The gravity term is MuJoCo's bias force of the description at rest, computed here
    # independently of ArmModel.gravity_effort.
    m = arm.mj_model
    d = mujoco.MjData(m)
    d.qpos[[m.joint(n).qposadr[0] for n in arm.joint_names]] = q
    mujoco.mj_forward(m, d)
    bias = d.qfrc_bias[[m.joint(n).dofadr[0] for n in arm.joint_names]]
    assert np.abs(bias).max() > 1.0
    assert np.allclose(cmd.command(a, q), a * arm.effort_limits + bias)
    plain = ArmCommand(arm, "effort", gravity_compensation=False)
    assert np.array_equal(plain.command(a, q), a * arm.effort_limits)
    # Clipped actions, and the inverse recovers the action.
    assert np.allclose(cmd.command(np.full(7, 3.0), q), arm.effort_limits + bias)
    assert np.allclose(cmd.action(cmd.command(a, q), q), a)
    # The planar reacher has no gravity: off by default, q not even needed.
    flat = ArmCommand(reacher(), "effort")
    assert not flat.gravity_compensation
    assert np.array_equal(flat.command(np.array([0.5, -1.0, 2.0])), [0.15, -0.3, 0.3])


def test_velocity_and_position_in_closed_form():
    arm = arm7()
    v = np.asarray(ARM7_VELOCITY)
    q = arm.sample_joint_positions(RNG)
    a = RNG.uniform(-1, 1, 7)
    vel = ArmCommand(arm, "velocity", control_dt=0.02)
    assert np.allclose(vel.command(a), a * v)
    assert np.allclose(vel.action(vel.command(a)), a)
    assert np.array_equal(vel.rest(q), np.zeros(7))
    pos = ArmCommand(arm, "position", control_dt=0.02)
    assert np.allclose(pos.command(a, q), q + a * v * 0.02)
    assert np.allclose(pos.command(np.ones(7) * 5, q), q + v * 0.02)
    assert np.allclose(pos.action(pos.command(a, q), q), a)
    assert np.array_equal(pos.rest(q), q)  # holding, never zero
    with pytest.raises(ValueError, match="measured joint positions"):
        pos.command(a)


def test_velocity_limits_from_the_description_else_the_fallback_else_an_error():
    bare = reacher()  # MJCF: no velocity limits
    assert np.isinf(bare.velocity_limits).all()
    with pytest.raises(ValueError, match=r"no velocity limit.*safety.velocity"):
        ArmCommand(bare, "velocity")
    with pytest.raises(ValueError, match="no velocity limit"):
        ArmCommand(bare, "position")
    assert np.allclose(ArmCommand(bare, "velocity", velocity_limits=1.5).velocity_limits, 1.5)
    described = reacher(velocity=[1.0, 2.0, 3.0])
    # The description wins over the fallback where it has a limit.
    assert np.allclose(resolve_velocity_limits(described, 9.0), [1.0, 2.0, 3.0])
    ArmCommand(bare, "effort")  # effort needs none
    with pytest.raises(ValueError, match="is not one of effort, velocity, position"):
        ArmCommand(bare, "torque")
    with pytest.raises(ValueError, match="only the effort interface"):
        ArmCommand(described, "velocity", gravity_compensation=True)


def test_the_envelopes_velocity_limits_hold_under_effort_too():
    """A URDF's velocity limits bound the effort interface's envelope (the lower of them and
    safety.velocity): at the limit no effort beyond holding accelerates the joint further."""
    from naf_ros.core.safety import SafetyEnvelope, SafetyLimits

    urdf = ArmModel.from_file(asset_path("arm7dof.urdf"))
    effort = ArmCommand(urdf, "effort")
    assert np.array_equal(effort.envelope_velocity(), ARM7_VELOCITY)
    assert np.array_equal(effort.envelope_velocity(2.4), np.minimum(ARM7_VELOCITY, 2.4))
    assert np.isinf(ArmCommand(reacher(), "effort").envelope_velocity()).all()
    assert np.array_equal(ArmCommand(reacher(), "effort").envelope_velocity(1.5), [1.5] * 3)
    velocity = ArmCommand(urdf, "velocity")
    assert np.array_equal(velocity.envelope_velocity(9.0), velocity.velocity_limits)

    limits = SafetyLimits.from_arm(urdf, velocity=effort.envelope_velocity().tolist())
    envelope = SafetyEnvelope(limits, "effort", 0.02, hold_effort=effort.hold_effort)
    q = urdf.initial_positions
    qd = np.zeros(7)
    qd[6] = ARM7_VELOCITY[6] + 0.1  # the wrist past its limit, still pushed that way
    envelope.command_received(0.0)
    safe, reasons = envelope.filter(effort.command(np.ones(7), q), q, qd, 0.0)
    beyond = safe - effort.gravity(q)
    assert "velocity_limit" in reasons and beyond[6] <= 0.0 and beyond[:6].min() > 0


@pytest.mark.parametrize("make", [arm7, lambda: reacher(1.0)], ids=["arm7", "reacher"])
def test_a_velocity_command_gives_that_joint_velocity(make):
    arm = make()
    sim = ArmSim(arm, target_dims=3, command_interface="velocity")
    home = 0.5 * (np.clip(arm.joint_lower, -1, 1) + np.clip(arm.joint_upper, -1, 1))
    sim.reset(home, np.zeros(arm.n_joints), np.zeros(3))
    v = 0.3 * np.where(np.arange(arm.n_joints) % 2, -1.0, 1.0)
    sim.set_command(v)
    for _ in range(5):  # settle
        sim.step()
    assert np.allclose(sim.joint_velocities(), v, atol=0.02 * 0.3)
    assert np.all(np.abs(sim.effort) <= arm.effort_limits + 1e-9)  # forcerange
    sim.set_command(np.zeros(arm.n_joints))
    sim.step()  # stopped within a period, up to the coupling of the other joints' braking
    assert np.abs(sim.joint_velocities()).max() < 0.1 * 0.3


@pytest.mark.parametrize("make", [arm7, lambda: reacher(1.0)], ids=["arm7", "reacher"])
def test_a_position_target_is_reached_and_held(make):
    arm = make()
    sim = ArmSim(arm, target_dims=3, command_interface="position")
    home = 0.5 * (np.clip(arm.joint_lower, -1, 1) + np.clip(arm.joint_upper, -1, 1))
    sim.reset(home, np.zeros(arm.n_joints), np.zeros(3))
    sim.step()
    assert np.abs(sim.joint_positions() - home).max() < 1e-4  # reset holds where it starts
    target = home + 0.1 * np.where(np.arange(arm.n_joints) % 2, -1.0, 1.0)
    sim.set_command(target)
    for _ in range(50):
        sim.step()
    assert np.abs(sim.joint_positions() - target).max() < 1e-3
    assert np.abs(sim.joint_velocities()).max() < 1e-3
    assert np.all(np.abs(sim.effort) <= arm.effort_limits + 1e-9)


def test_position_targets_one_period_ahead_move_at_about_the_commanded_velocity():
    env = ArmReachEnv(velocity=ARM7_VELOCITY, command_interface="position")
    env.reset(seed=0)
    a = np.array([0.3, -0.3, 0.3, -0.3, 0.3, -0.3, 0.3])
    for _ in range(10):
        q0 = env.sim.joint_positions()
        env.step(a)
    moved = (env.sim.joint_positions() - q0) / env.sim.control_dt
    assert np.allclose(moved / (a * np.asarray(ARM7_VELOCITY)), 1.0, atol=0.1)


def test_servos_replace_the_files_motors_and_keep_the_effort_limits():
    arm = arm7()
    for interface in ("velocity", "position"):
        m = ArmSim(arm, command_interface=interface).model
        assert m.nu == 7
        assert np.allclose(np.abs(m.actuator_forcerange).max(1), arm.effort_limits)
        assert (m.actuator_biastype == mujoco.mjtBias.mjBIAS_AFFINE).all()
    assert ArmSim(arm).model.nu == 7  # effort: the file's motors as they are


def test_an_actuator_of_another_kind_is_one_clear_error():
    xml = (asset_path("reacher3dof.xml")).read_text()
    start = xml.index("<actuator>")
    end = xml.index("</actuator>") + len("</actuator>")
    servo = (
        '<actuator><position name="j1_servo" joint="joint1" kp="10" ctrlrange="-3 3"/></actuator>'
    )
    arm = ArmModel.from_xml(xml[:start] + servo + xml[end:], tip="fingertip", effort=0.3)
    with pytest.raises(ArmModelError, match=r"'j1_servo' on joint 'joint1' is not a velocity"):
        ArmSim(arm, target_dims=2, command_interface="velocity")
    with pytest.raises(ArmModelError, match="not an effort motor"):
        ArmSim(arm, target_dims=2)
    sim = ArmSim(arm, target_dims=2, command_interface="position")  # its own servo is used
    assert sim.model.actuator("j1_servo").gainprm[0] == 10


def test_non_finite_commands_stop_or_hold_the_joint():
    vel = ArmSim(reacher(1.0), target_dims=2, command_interface="velocity")
    vel.reset(np.zeros(3), np.zeros(3), np.zeros(2))
    assert np.array_equal(vel.set_command([0.1, np.nan, np.inf]), [0.1, 0.0, 0.0])
    pos = ArmSim(reacher(1.0), target_dims=2, command_interface="position")
    pos.reset(np.array([0.1, 0.2, 0.3]), np.zeros(3), np.zeros(2))
    assert np.allclose(pos.set_command([0.0, np.nan, 0.0]), [0.0, 0.2, 0.0])
    with pytest.raises(ValueError, match="position commands, not efforts"):
        pos.set_effort(np.zeros(3))


def test_envs_take_the_interface():
    env = Reacher3DOFEnv(command_interface="velocity", velocity=1.0)
    env.reset(seed=0)
    for _ in range(5):
        env.step(np.array([0.5, -0.5, 0.2]))
    assert np.allclose(env.sim.joint_velocities(), [0.5, -0.5, 0.2], atol=0.01)
    with pytest.raises(ValueError, match="no velocity limit"):
        Reacher3DOFEnv(command_interface="position")


def _drift_under_estop(hold: bool) -> float:
    """Largest joint excursion (rad) of the gravity-loaded 7-DOF arm over 1 s of e-stop, the
    envelope's commands applied through the effort interface while the policy keeps asking
    for full effort."""
    from naf_ros.core.safety import SafetyEnvelope, SafetyLimits

    arm = arm7()
    sim = ArmSim(arm, target_dims=3, command_interface="effort")
    cmd = ArmCommand(arm, "effort")
    q0 = np.array([0.0, 0.3, 0.0, -1.8, 0.0, 2.0, 0.8])  # a pose where gravity pulls hard
    sim.reset(q0, np.zeros(7), np.zeros(3))
    env = SafetyEnvelope(
        SafetyLimits.from_arm(arm, command_timeout=None),
        hold_effort=cmd.hold_effort if hold else None,
    )
    env.engage_estop("test")
    worst = 0.0
    for k in range(50):
        q, qd = sim.joint_positions(), sim.joint_velocities()
        safe, reasons = env.filter(cmd.command(np.ones(7), q), q, qd, 0.02 * k)
        assert reasons == ("estop",)
        sim.set_command(safe)
        sim.step()
        worst = max(worst, float(np.abs(sim.joint_positions() - q0).max()))
    return worst


def test_an_estop_holds_a_gravity_loaded_arm_on_the_effort_interface():
    # With the model's gravity torque as the holding effort the arm stays where it stopped
    # (the zero-order hold of G(q) over a period leaves a small creep); zero effort drops it.
    held = _drift_under_estop(hold=True)
    dropped = _drift_under_estop(hold=False)
    assert held < 0.01, held
    assert dropped > 0.3, dropped


def test_the_effort_rules_act_on_the_effort_beyond_holding():
    from naf_ros.core.safety import SafetyEnvelope, SafetyLimits

    arm = arm7()
    cmd = ArmCommand(arm, "effort")
    limits = SafetyLimits.from_arm(arm, command_timeout=None)
    env = SafetyEnvelope(limits, hold_effort=cmd.hold_effort)
    q = arm.sample_joint_positions(RNG)
    g = arm.gravity_effort(q)
    # Past the upper soft limit of joint 1, an outward push beyond G is cut back to G(q)[1];
    # the other joints keep their command (inside every limit).
    q_out = q.copy()
    q_out[1] = limits.soft_upper[1] + 0.01
    g_out = arm.gravity_effort(q_out)
    wanted = g_out + 0.3 * np.sign(RNG.uniform(-1, 1, 7)) * np.minimum(limits.effort, 5.0)
    wanted[1] = g_out[1] + 5.0
    safe, reasons = env.filter(wanted, q_out, np.zeros(7), 0.0)
    assert "position_limit" in reasons
    assert np.isclose(safe[1], np.clip(g_out[1], -limits.effort[1], limits.effort[1]))
    others = np.arange(7) != 1
    assert np.allclose(safe[others], np.clip(wanted, -limits.effort, limits.effort)[others])
    # A non-finite entry falls back to the holding effort, not to zero.
    bad = cmd.command(np.zeros(7), q)
    bad[3] = np.nan
    safe, reasons = env.filter(bad, q, np.zeros(7), 0.0)
    assert reasons == ("nonfinite_command",)
    assert np.isclose(safe[3], g[3])
    # Only the effort interface holds with torques.
    with pytest.raises(ValueError, match="hold_effort"):
        SafetyEnvelope(limits, "velocity", 0.02, hold_effort=cmd.hold_effort)
