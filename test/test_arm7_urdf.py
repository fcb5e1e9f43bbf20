"""The shipped 7-DOF arm as a URDF (``assets/arm7dof.urdf``) is the same arm as its MJCF
(``assets/arm7dof.xml``): kinematics, dynamics and a Gymnasium episode agree, so the ROS
graph can load the arm from ``robot_description`` and run the task the in-process
benchmarks run. Also the URDF import's extras (rotor inertia, hard stops, initial values)."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from naf_ros.config import config_from_dict
from naf_ros.core.envs import make_env
from naf_ros.envs import ARM7_FIXED_ID, ARM7_VELOCITY
from naf_ros.envs.arm import ArmModel, asset_path

URDF = asset_path("arm7dof.urdf")
MJCF = asset_path("arm7dof.xml")


@pytest.fixture(scope="module")
def arms() -> tuple[ArmModel, ArmModel]:
    return ArmModel.load(URDF), ArmModel.load(MJCF)


def mass_matrix(arm: ArmModel, q: np.ndarray) -> np.ndarray:
    """mj_fullM of the arm's chain joints at ``q`` (rotor inertia included)."""
    m = arm.mj_model
    d = mujoco.MjData(m)
    dofs = [m.joint(n).dofadr[0] for n in arm.joint_names]
    for name, value in zip(arm.joint_names, q):
        d.qpos[m.joint(name).qposadr[0]] = value
    mujoco.mj_forward(m, d)
    full = np.zeros((m.nv, m.nv))
    mujoco.mj_fullM(m, d, full)
    return full[np.ix_(dofs, dofs)]


def test_the_urdf_describes_the_same_arm_without_settings(arms):
    urdf, mjcf = arms
    # The tip and base are found without arm.tip / arm.base: the URDF's single end link.
    assert (urdf.tip, urdf.base) == ("fingertip", mjcf.base)
    assert urdf.joint_names == mjcf.joint_names
    assert np.array_equal(urdf.joint_lower, mjcf.joint_lower)
    assert np.array_equal(urdf.joint_upper, mjcf.joint_upper)
    assert np.array_equal(urdf.effort_limits, mjcf.effort_limits)
    assert np.array_equal(urdf.velocity_limits, ARM7_VELOCITY)  # the MJCF cannot carry them
    assert not urdf.notes  # every limit came from the description
    mu, mm = urdf.mj_model, mjcf.mj_model
    for attr in ("dof_damping", "dof_armature", "jnt_solref"):
        assert np.array_equal(getattr(mu, attr), getattr(mm, attr)), attr
    assert np.array_equal(mu.opt.gravity, mm.opt.gravity)
    assert (mu.opt.timestep, mu.opt.integrator) == (mm.opt.timestep, mm.opt.integrator)
    links = [f"link{i}" for i in range(8)]
    assert [mu.body(b).mass[0] for b in links] == [mm.body(b).mass[0] for b in links]
    key = mm.key("home")
    assert np.array_equal(urdf.initial_positions, key.qpos)


def test_kinematics_gravity_and_mass_matrix_agree(arms):
    urdf, mjcf = arms
    q = mjcf.sample_joint_positions(np.random.default_rng(7), 50)
    pos_u, jac_u = urdf.tip_kinematics(q)
    pos_m, jac_m = mjcf.tip_kinematics(q)
    assert np.abs(pos_u - pos_m).max() < 1e-12
    assert np.abs(jac_u - jac_m).max() < 1e-12
    assert np.abs(urdf.gravity_effort(q) - mjcf.gravity_effort(q)).max() < 1e-10
    for qi in q:
        assert np.abs(mass_matrix(urdf, qi) - mass_matrix(mjcf, qi)).max() < 1e-12


def rollout(env, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    obs, _ = env.reset(seed=11)
    observations, rewards = [obs], []
    for a in actions:
        obs, reward, terminated, truncated, _ = env.step(a)
        observations.append(obs)
        rewards.append(reward)
        if terminated or truncated:
            break
    return np.array(observations), np.array(rewards)


def test_the_fixed_target_episode_is_the_same_from_either_file():
    """``arm.model`` = the URDF (as the ROS graph's sim bridge gets it): the registry's
    shipped-arm kwargs are dropped, and the URDF gives them back (velocity limits, home)."""
    cfg = config_from_dict({"env": {"id": ARM7_FIXED_ID}, "arm": {"model": str(URDF)}})
    from_urdf = make_env(cfg.env, cfg.arm)
    shipped = make_env(config_from_dict({"env": {"id": ARM7_FIXED_ID}}).env)
    assert from_urdf.unwrapped.task.arm.kind == "urdf"
    assert np.array_equal(from_urdf.unwrapped.home, shipped.unwrapped.home)
    steps = from_urdf.spec.max_episode_steps
    # Full-range actions: the arm swings hard and reaches its stops, where the stops'
    # stiffness and the rotor inertia matter too.
    actions = np.random.default_rng(3).uniform(-1.0, 1.0, (steps, 7))
    obs_u, rew_u = rollout(from_urdf, actions)
    obs_m, rew_m = rollout(shipped, actions)
    assert len(rew_u) == len(rew_m) == steps
    assert np.abs(obs_u - obs_m).max() < 1e-9, np.abs(obs_u - obs_m).max()
    assert np.abs(rew_u - rew_m).max() < 1e-9
    from_urdf.close()
    shipped.close()


def test_urdf_extras_are_read_and_partial_ones_ignored():
    """Rotor inertia with a gear ratio, hard stops on any URDF, initial values only when
    every chain joint has one."""
    text = URDF.read_text()
    geared = text.replace(
        '<drake:rotor_inertia value="0.05"/>\n      <drake:gear_ratio value="1"/>',
        '<drake:rotor_inertia value="0.0002"/>\n      <drake:gear_ratio value="10"/>',
        1,
    )
    arm = ArmModel.from_xml(geared)
    assert np.isclose(arm.mj_model.dof_armature[4], 0.0002 * 100)
    partial = text.replace('<param name="initial_value">0</param>', "", 1)
    assert ArmModel.from_xml(partial).initial_positions is None
    plain = ArmModel.from_xml(text.split("<transmission", 1)[0] + "</robot>")
    assert not plain.mj_model.dof_armature.any() and plain.initial_positions is None
    assert np.allclose(plain.mj_model.jnt_solref[:, 0], 2 * plain.mj_model.opt.timestep)
