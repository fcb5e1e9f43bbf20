"""The 3D reaching environments: the shipped 7-DOF arm and any URDF arm through the same path;
gravity compensation (command side for effort, the driver's for velocity/position); NAF's
trainer (and Algorithm 2) running a few episodes on the 7-DOF arm."""

import gymnasium as gym
import mujoco
import numpy as np
import pytest
from support.robots import robots_dir

from naf_ros.config import config_from_dict
from naf_ros.envs import (
    ARM7_FIXED_ID,
    ARM7_FIXED_TARGET,
    ARM7_ID,
    ARM7_TARGET_BOX,
    ARM7_VELOCITY,
    EPISODE_STEPS,
)
from naf_ros.envs.arm import ArmModel, asset_path
from naf_ros.envs.configured import reacher_task
from naf_ros.envs.reacher_env import ArmReachEnv
from naf_ros.envs.sim import ArmSim
from naf_ros.envs.task import ReachTask


def ur5_urdf() -> str:
    return (robots_dir() / "ur_description/urdf/ur5_robot.urdf").read_text()


@pytest.mark.parametrize("env_id", [ARM7_ID, ARM7_FIXED_ID])
def test_arm7_envs_step_with_time_limit(env_id):
    env = gym.make(env_id)
    obs, info = env.reset(seed=0)
    task = env.unwrapped.task
    assert obs.shape == (27,) and task.dims == 3 and "tip_distance" in info
    assert np.allclose(task.arm.velocity_limits, ARM7_VELOCITY)
    assert task.arm.notes == (  # what did not come from the MJCF is reported
        "velocity limits not in the description, given: joint1=2.175, joint2=2.175, "
        "joint3=2.175, joint4=2.175, joint5=2.61, joint6=2.61, joint7=2.61",
    )
    env.action_space.seed(0)
    steps, truncated = 0, False
    while not truncated:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        steps += 1
        assert not terminated and np.isfinite(obs).all() and np.isfinite(reward)
        q = env.unwrapped.sim.joint_positions()
        assert np.all(q >= task.arm.joint_lower - 0.05) and np.all(q <= task.arm.joint_upper + 0.05)
    assert steps == EPISODE_STEPS


def test_arm7_fixed_and_random_targets():
    fixed = gym.make(ARM7_FIXED_ID)
    targets = {tuple(fixed.reset(seed=s)[0][21:24]) for s in range(3)}
    assert targets == {ARM7_FIXED_TARGET}
    rand = gym.make(ARM7_ID)
    targets = np.array([rand.reset(seed=s)[0][21:24] for s in range(10)])
    lo, hi = np.array(ARM7_TARGET_BOX)
    assert np.all((targets >= lo) & (targets <= hi)) and len(np.unique(targets, axis=0)) == 10
    # Starts at the MJCF's home keyframe (the Panda's ready pose) plus noise.
    home = np.array([0, -np.pi / 4, 0, -3 * np.pi / 4, 0, np.pi / 2, np.pi / 4])
    assert np.allclose(fixed.unwrapped.home, home)
    assert np.abs(fixed.unwrapped.sim.joint_positions() - home).max() <= 0.02 + 1e-9


def test_configured_task_matches_the_env():
    cfg = config_from_dict({"env": {"id": ARM7_FIXED_ID, "kwargs": {"ctrl_cost_weight": 0.05}}})
    task = reacher_task(cfg)
    env = gym.make(ARM7_FIXED_ID, ctrl_cost_weight=0.05).unwrapped
    assert isinstance(task, ReachTask) and task.obs_dim == env.task.obs_dim
    assert task.ctrl_cost_weight == 0.05 and task.arm.joint_names == env.task.arm.joint_names
    obs, _ = env.reset(seed=1)
    q, qd, target = task.joint_state_from_observation(obs)
    assert np.allclose(task.observation(q, qd, target), obs)


def test_a_urdf_arm_loads_through_the_same_path():
    """UR5 from its robot_description string: motors added (ctrlrange = the URDF's effort
    limits), a target added, gravity compensated by default (the effort command carries the
    gravity torque, as on a plain effort interface); the arm then rests."""
    env = ArmReachEnv(model=ur5_urdf(), tip="tool0", fixed_target=(0.4, 0.2, 0.3))
    m = env.sim.model
    assert m.nu == 6 and np.allclose(np.abs(m.actuator_ctrlrange).max(1), [150] * 3 + [28] * 3)
    assert env.command.gravity_compensation and env.task.obs_dim == 12 + 6 + 6
    assert not env.sim.driver_gravity_compensation
    obs, _ = env.reset(seed=0)
    for _ in range(25):
        obs, reward, *_ = env.step(np.zeros(6))
    assert np.abs(env.sim.joint_velocities()).max() < 0.05
    # Without compensation the same arm falls.
    falling = ArmReachEnv(model=ur5_urdf(), tip="tool0", gravity_compensation=False)
    falling.reset(seed=0)
    for _ in range(25):
        falling.step(np.zeros(6))
    assert np.abs(falling.sim.joint_velocities()).max() > 0.5


def test_a_servo_interface_holds_the_arm_up_with_the_bias_force_at_rest():
    """Velocity/position: the driver's controller holds the arm (MuJoCo's gravity
    compensation applies exactly the model's gravity torque); effort: the sim does not."""
    arm = ArmModel.from_file(asset_path("arm7dof.xml"))
    q = arm.sample_joint_positions(np.random.default_rng(0))
    for interface, compensated in (("velocity", True), ("position", True), ("effort", False)):
        sim = ArmSim(arm, command_interface=interface)
        sim.reset(q, np.zeros(7), np.zeros(3))
        dofs = [sim.model.joint(n).dofadr[0] for n in arm.joint_names]
        assert np.allclose(sim.data.qfrc_gravcomp[dofs], arm.gravity_effort(q) * compensated)
        assert np.allclose(sim.data.qfrc_bias[dofs], arm.gravity_effort(q))
    assert np.abs(arm.gravity_effort(q)).max() > 1.0


def test_target_in_a_base_frame_other_than_the_world():
    arm = ArmModel.from_file(asset_path("arm7dof.xml"), base="link0")
    sim = ArmSim(arm)
    sim.reset(np.zeros(7), np.zeros(7), np.array([0.4, 0.1, 0.3]))
    assert np.allclose(sim.target, [0.4, 0.1, 0.3])
    mocap = sim.data.mocap_pos[sim.model.body("target").mocapid[0]]
    assert np.allclose(mocap, [0.4, 0.1, 0.3])  # link0 sits at the world origin
    assert mujoco.mj_name2id(sim.model, mujoco.mjtObj.mjOBJ_BODY, "target") >= 0


def _config(episodes, mb=None):
    return config_from_dict(
        {
            "env": {"id": ARM7_FIXED_ID},
            "agent": {"hidden": [32, 32], "warmup_steps": 50, "batch_size": 32},
            "exploration": {"kind": "ou", "scale": 0.3},
            "model_based": mb or {"enabled": False},
            "train": {
                "episodes": episodes,
                "eval_every": 2,
                "eval_episodes": 1,
                "seed": 0,
                "progress": False,
            },
        }
    )


def test_naf_trains_a_few_episodes_on_the_7dof_arm(tmp_path):
    from naf_ros.core.trainer import Trainer

    summary = Trainer(_config(2), run_dir=tmp_path, log=None).train()
    assert summary["episodes"] == 2
    assert (tmp_path / "metrics.csv").is_file()


def test_algorithm_2_runs_on_the_7dof_arm(tmp_path):
    from naf_ros.core.trainer import Trainer

    mb = {
        "enabled": True,
        "model": "linear",
        "linear_state": "joint",
        "episodes_per_fit": 2,
        "rollout_length": 5,
        "rollout_batch": 4,
    }
    summary = Trainer(_config(3, mb), run_dir=tmp_path, log=None).train()
    assert summary["episodes"] == 3
