"""The reacher: forward kinematics vs MuJoCo, task observation/reward, env registration."""

import gymnasium as gym
import numpy as np
import pytest

import naf_ros.envs  # noqa: F401
from naf_ros.envs import REACHER_FIXED_ID, REACHER_ID
from naf_ros.envs.arm import ArmModel
from naf_ros.envs.sim import ArmSim
from naf_ros.envs.task import ReacherTask


def test_arm_model_parsed_from_mjcf():
    arm = ArmModel.from_mjcf()
    assert arm.joint_names == ("joint1", "joint2", "joint3")
    assert arm.joint_types == ("hinge",) * 3
    assert np.allclose(arm.tip_position(np.zeros(3)), [0.3, 0, 0])
    assert np.allclose(arm.effort_limits, 0.3)
    assert np.allclose(arm.joint_lower, [-np.inf, -2.8, -2.8])
    assert arm.reach == pytest.approx(0.3)


def test_planar_task_is_the_closed_form_reacher():
    """The MuJoCo-compiled arm gives the planar reacher's closed-form numbers (what the
    hand-parsed task computed before ArmModel; equal to it within 1e-15 on random states)."""
    task = ReacherTask()
    rng = np.random.default_rng(7)
    q, qd = rng.uniform(-4, 4, (300, 3)), rng.normal(size=(300, 3))
    target, u = rng.uniform(-0.3, 0.3, (300, 2)), rng.uniform(-1.2, 1.2, (300, 3))
    phi = np.cumsum(q, axis=-1)
    tip = 0.1 * np.stack([np.cos(phi).sum(-1), np.sin(phi).sum(-1)], axis=-1)
    expected = np.concatenate([np.cos(q), np.sin(q), qd, target, tip - target], axis=-1)
    obs = task.observation(q, qd, target)
    assert obs.shape == (300, 13) and np.allclose(obs, expected, rtol=0, atol=1e-15)
    d = expected[:, 11:13]
    reward = -(np.sqrt((d * d).sum(-1) + 0.01**2) - 0.01) - 0.02 * (u * u).sum(-1)
    assert np.allclose(task.reward(obs, u), reward, rtol=0, atol=1e-15)
    q_back, qd_back, target_back = task.joint_state_from_observation(obs)
    assert np.array_equal(q_back, np.arctan2(np.sin(q), np.cos(q)))
    assert np.array_equal(qd_back, qd) and np.array_equal(target_back, target)
    assert (task.target_slice, task.delta_slice) == (slice(9, 11), slice(11, 13))


def test_forward_kinematics_matches_mujoco_site():
    sim = ArmSim(ArmModel.from_mjcf(), target_dims=2)
    task = ReacherTask(sim.arm)
    rng = np.random.default_rng(0)
    for _ in range(20):
        q = rng.uniform(-2.5, 2.5, 3)
        sim.reset(q, np.zeros(3), np.array([0.1, 0.1]))
        assert np.allclose(task.fingertip(q), sim.data.site("fingertip").xpos[:2], atol=1e-9)


def test_observation_from_joint_states_and_inverse():
    task = ReacherTask()
    q, qd, target = np.array([0.3, -1.0, 2.0]), np.array([0.1, 0.2, -0.3]), np.array([0.1, 0.2])
    obs = task.observation(q, qd, target)
    assert obs.shape == (13,)
    assert np.allclose(obs[task.delta_slice], task.fingertip(q) - target)
    q2, qd2, target2 = task.joint_state_from_observation(obs)
    assert np.allclose(q2, q) and np.allclose(qd2, qd) and np.allclose(target2, target)


def test_reward_is_minus_distance_minus_action_cost():
    task = ReacherTask(huber_alpha=1e-6)
    obs = np.zeros(13)
    obs[task.delta_slice] = [0.03, 0.04]
    assert task.reward(obs, np.zeros(3)) == pytest.approx(-0.05, abs=1e-5)
    assert task.reward(obs, np.ones(3)) == pytest.approx(
        -0.05 - 3 * task.ctrl_cost_weight, abs=1e-5
    )


def test_reward_derivatives_match_finite_differences():
    task = ReacherTask()
    rng = np.random.default_rng(1)
    x, u = rng.normal(size=13) * 0.1, rng.uniform(-1, 1, 3)
    r, r_x, r_u, r_xx, r_uu, _ = task.reward_derivatives(x, u)
    eps = 1e-6
    num_x = np.array(
        [
            (task.reward(x + eps * e, u) - task.reward(x - eps * e, u)) / (2 * eps)
            for e in np.eye(13)
        ]
    )
    num_u = np.array(
        [(task.reward(x, u + eps * e) - task.reward(x, u - eps * e)) / (2 * eps) for e in np.eye(3)]
    )
    assert np.allclose(r_x, num_x, atol=1e-6) and np.allclose(r_u, num_u, atol=1e-6)
    num_xx = np.array(
        [
            (
                task.reward_derivatives(x + 1e-5 * e, u)[1]
                - task.reward_derivatives(x - 1e-5 * e, u)[1]
            )
            / 2e-5
            for e in np.eye(13)
        ]
    )
    assert np.allclose(r_xx, num_xx, atol=1e-4)
    assert np.all(np.linalg.eigvalsh(r_xx) <= 1e-9) and np.all(np.linalg.eigvalsh(r_uu) < 0)


@pytest.mark.parametrize("env_id", [REACHER_ID, REACHER_FIXED_ID])
def test_registered_envs_step_with_time_limit(env_id):
    env = gym.make(env_id)
    obs, info = env.reset(seed=3)
    assert env.observation_space.contains(obs.astype(env.observation_space.dtype))
    steps, truncated, terminated = 0, False, False
    while not (terminated or truncated):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        steps += 1
        assert np.isfinite(obs).all() and np.isfinite(reward) and "tip_distance" in info
    assert steps == 50 and truncated and not terminated


def test_fixed_target_and_random_target():
    fixed = gym.make(REACHER_FIXED_ID)
    targets = {tuple(fixed.reset(seed=s)[0][9:11]) for s in range(5)}
    assert targets == {(0.10, 0.20)}
    rand = gym.make(REACHER_ID)
    targets = [rand.reset(seed=s)[0][9:11] for s in range(20)]
    assert len({tuple(t) for t in targets}) == 20
    assert all(np.linalg.norm(t) <= 0.3 for t in targets)


def test_efforts_clipped_to_model_limits_and_non_finite_zeroed():
    sim = ArmSim(ArmModel.from_mjcf(), target_dims=2)
    applied = sim.set_effort(np.array([5.0, -5.0, np.nan]))
    assert np.allclose(applied, [0.3, -0.3, 0.0])


def test_control_period_is_whole_physics_steps():
    with pytest.raises(ValueError, match="whole multiple"):
        ArmSim(ArmModel.from_mjcf(), control_dt=0.0123, target_dims=2)
    sim = ArmSim(ArmModel.from_mjcf(), control_dt=0.02, target_dims=2)
    sim.reset(np.zeros(3), np.zeros(3), np.zeros(2))
    sim.step()
    assert sim.time == pytest.approx(0.02)
