"""The joint-space linear model: recovery of a known system, angle branches, consistency."""

import numpy as np
import pytest

from naf_ros.core.dynamics import DynamicsFitError, DynamicsPrior, LinearGaussianDynamics
from naf_ros.core.joint_dynamics import (
    JointSpaceDynamics,
    fit_joint_space,
    joint_trajectories,
    wrap_angle,
)
from naf_ros.envs.task import ReacherTask

TASK = ReacherTask()
N_JOINTS = TASK.n_joints
TARGET = np.array([0.1, -0.12])


def known_joint_system(seed=0, T=20):
    """z' = A_t z + B u + c_t in (q, qd), with joint 3 driven through +-pi (atan2's seam)."""
    rng = np.random.default_rng(seed)
    n, dt = N_JOINTS, 0.02
    A = np.eye(2 * n)
    A[:n, n:] = dt * np.eye(n)
    A[n:, n:] = 0.95 * np.eye(n) + 0.01 * rng.standard_normal((n, n))
    A = np.stack([A + 0.002 * t * np.eye(2 * n) for t in range(T)])
    B = np.zeros((2 * n, n))
    B[n:] = 0.5 * np.eye(n) + 0.05 * rng.standard_normal((n, n))
    c = 0.01 * rng.standard_normal((T, 2 * n))
    return A, B, c


def rollout(A, B, c, episodes, seed=1, start=(0.3, -0.4, 3.0)):
    rng = np.random.default_rng(seed)
    T, nz = A.shape[0], A.shape[1]
    Z = np.zeros((episodes, T + 1, nz))
    U = rng.uniform(-1, 1, (episodes, T, N_JOINTS))
    Z[:, 0, :N_JOINTS] = np.array(start) + 0.3 * rng.standard_normal((episodes, N_JOINTS))
    Z[:, 0, N_JOINTS:] = np.array([0.0, 0.0, 2.0]) + 0.5 * rng.standard_normal((episodes, 3))
    for t in range(T):
        noise = 1e-4 * rng.standard_normal((episodes, nz))
        Z[:, t + 1] = Z[:, t] @ A[t].T + U[:, t] @ B.T + c[t] + noise
    X = TASK.observation(Z[..., :N_JOINTS], Z[..., N_JOINTS:], TARGET)
    return Z, X, U


def test_observation_round_trip_is_batched():
    q = np.array([[0.1, 3.1, -3.1], [2.0, -1.0, 0.5]])
    qd = np.array([[1.0, 2.0, 3.0], [-1.0, 0.0, 1.0]])
    obs = TASK.observation(q, qd, TARGET)
    assert obs.shape == (2, TASK.obs_dim)
    assert np.allclose(obs[1], TASK.observation(q[1], qd[1], TARGET))
    q_back, qd_back, target = TASK.joint_state_from_observation(obs)
    assert np.allclose(wrap_angle(q_back - q), 0.0) and np.allclose(qd_back, qd)
    assert np.allclose(target, TARGET)


def test_trajectories_are_continuous_across_the_atan2_seam():
    A, B, c = known_joint_system()
    Z, X, _ = rollout(A, B, c, episodes=6)
    assert (np.abs(Z[:, :, 2]) > np.pi).any(), "the test system must cross +-pi"
    recovered, ref = joint_trajectories(TASK, X)
    # Same angles up to one whole turn for all episodes (the start branch is the mean's).
    shift = recovered[..., :N_JOINTS] - Z[..., :N_JOINTS]
    assert np.allclose(shift, shift[:1, :1], atol=1e-9)
    assert np.allclose(np.round(shift / (2 * np.pi)), shift / (2 * np.pi), atol=1e-9)
    assert np.allclose(ref, recovered[..., :N_JOINTS].mean(axis=0))
    assert np.abs(np.diff(recovered[..., :N_JOINTS], axis=1)).max() < 1.0


def test_fit_recovers_a_known_joint_space_system_from_observations():
    """Five episodes of a 6-dim state + 3 inputs, with a prior pooled from 20 more."""
    A, B, c = known_joint_system()
    prior = DynamicsPrior(max_episodes=20)
    _, X_hist, U_hist = rollout(A, B, c, episodes=20, seed=2)
    fit_joint_space(TASK, X_hist, U_hist, prior)
    Z, X, U = rollout(A, B, c, episodes=5, seed=3)
    model = fit_joint_space(TASK, X, U, prior)
    true_F = np.concatenate([A, np.broadcast_to(B, (A.shape[0],) + B.shape)], axis=2)
    rel = np.linalg.norm(model.model.F - true_F, axis=(1, 2)) / np.linalg.norm(true_F, axis=(1, 2))
    assert rel.max() < 0.05, rel
    # Observation in, observation out: exactly the fitted joint model seen through the task.
    _, X_new, U_new = rollout(A, B, c, episodes=3, seed=4)
    t = np.arange(A.shape[0])
    z_next = model.model.predict(t, model.joint_state(t, X_new[:, :-1]), U_new)
    expected = TASK.observation(z_next[..., :N_JOINTS], z_next[..., N_JOINTS:], TARGET)
    assert np.allclose(model.predict(t, X_new[:, :-1], U_new), expected)


def reacher_episodes(n, seed):
    """Real MuJoCo episodes around one open-loop reach (as an early NAF policy explores)."""
    import gymnasium as gym

    import naf_ros.envs  # noqa: F401

    env = gym.make("NafRos/Reacher3DOFFixed-v0")
    rng = np.random.default_rng(seed)
    nominal = 0.6 * np.sin(0.15 * np.arange(50)[:, None] + np.arange(3))
    X, U = [], []
    for i in range(n):
        obs, _ = env.reset(seed=seed * 100 + i)
        xs, us = [obs], []
        for t in range(50):
            u = np.clip(nominal[t] + 0.3 * rng.standard_normal(3), -1, 1)
            obs, *_ = env.step(u)
            xs.append(obs)
            us.append(u)
        X.append(xs)
        U.append(us)
    return np.array(X), np.array(U)


def test_on_the_reacher_the_joint_model_predicts_the_tip_better_than_an_observation_model():
    """The reason the joint-space model exists (measured ~10x on NAF's own data)."""
    from naf_ros.core.dynamics import fit_linear_gaussian

    history, recent, held_out = (reacher_episodes(n, seed) for n, seed in ((15, 1), (5, 2), (5, 3)))
    joint_prior, obs_prior = DynamicsPrior(max_episodes=20), DynamicsPrior(max_episodes=20)
    fit_joint_space(TASK, *history, joint_prior)
    obs_prior.update(*history)
    joint = fit_joint_space(TASK, *recent, joint_prior)
    obs_prior.update(*recent)
    observed = fit_linear_gaussian(*recent, obs_prior)
    X, U = held_out
    t = np.arange(U.shape[1])
    errors = {}
    for name, model in (("joint", joint), ("observation", observed)):
        pred = model.predict(t, X[:, :-1], U)[..., TASK.delta_slice]
        errors[name] = np.linalg.norm(pred - X[:, 1:, TASK.delta_slice], axis=-1).mean()
    assert errors["joint"] < errors["observation"] / 3, errors


def test_predictions_are_observations_of_a_joint_state():
    A, B, c = known_joint_system()
    _, X, U = rollout(A, B, c, episodes=8)
    model = fit_joint_space(TASK, X, U, DynamicsPrior())
    rng = np.random.default_rng(0)
    pred = model.predict(
        rng.integers(0, 20, 50), X[0, rng.integers(0, 20, 50)], rng.uniform(-1, 1, (50, 3))
    )
    cos, sin = pred[:, :N_JOINTS], pred[:, N_JOINTS : 2 * N_JOINTS]
    assert np.allclose(cos**2 + sin**2, 1.0)
    q, qd, target = TASK.joint_state_from_observation(pred)
    assert np.allclose(pred, TASK.observation(q, qd, target))
    assert np.allclose(target, TARGET)


def test_arrays_round_trip_and_shape_check():
    A, B, c = known_joint_system()
    _, X, U = rollout(A, B, c, episodes=8)
    model = fit_joint_space(TASK, X, U, DynamicsPrior())
    again = JointSpaceDynamics.from_arrays(model.to_arrays(), TASK)
    x, u = X[1, :-1], U[1]
    t = np.arange(20)
    assert np.array_equal(again.predict(t, x, u), model.predict(t, x, u))
    obs_space = LinearGaussianDynamics.from_arrays(
        {k: v for k, v in model.to_arrays().items() if k != "angle_ref"}
    )
    with pytest.raises(DynamicsFitError, match="angle reference"):
        JointSpaceDynamics(obs_space, np.zeros((5, N_JOINTS)), TASK)


def test_trainer_imagines_through_the_joint_model_and_checkpoints_it(tmp_path):
    from naf_ros.config import ConfigError, config_from_dict
    from naf_ros.core.trainer import Trainer

    def trainer(state, run):
        cfg = config_from_dict(
            {
                "agent": {"hidden": [16, 16], "warmup_steps": 50, "batch_size": 8},
                "model_based": {
                    "enabled": True,
                    "episodes_per_fit": 2,
                    "rollout_length": 3,
                    "imagination_updates_per_step": 1,
                    "linear_state": state,
                },
                "train": {"episodes": 3, "progress": False},
            }
        )
        return Trainer(cfg, run_dir=tmp_path / run, log=None)

    joint, observed = trainer("joint", "j"), trainer("observation", "o")
    for t in (joint, observed):
        for _ in range(3):
            t.run_episode()
        assert t.learner.counters.imagined > 0
    assert isinstance(joint.learner.model, JointSpaceDynamics)
    imagined_count = joint.learner.counters.imagined
    assert joint._imagination_note() == f" | models 1 | imagined {imagined_count} (on)"
    assert isinstance(observed.learner.model, LinearGaussianDynamics)
    # iLQG plans on the observation-space fit either way; the joint model is for imagination.
    imagined = joint.learner.fictional.state_dict()
    n = len(joint.learner.fictional)
    next_obs = imagined["next_obs"][:n]
    cos, sin = next_obs[:, :N_JOINTS], next_obs[:, N_JOINTS : 2 * N_JOINTS]
    assert np.allclose(cos**2 + sin**2, 1.0)  # imagined states are states of the arm
    joint.save()
    again = trainer("joint", "j")
    again.load(tmp_path / "j" / "checkpoint.pt")
    for name in ("prior", "joint_prior"):  # the pooled history survives a resume
        fitters = joint.model_based.fit_step.fitter, again.model_based.fit_step.fitter
        before, after = (getattr(f, name) for f in fitters)
        assert after.n_episodes == before.n_episodes == 2
        assert np.array_equal(after.means, before.means)
    x = np.tile(next_obs[:1], (4, 1))
    u = np.zeros((4, N_JOINTS))
    assert np.array_equal(
        again.learner.model.predict(3, x, u), joint.learner.model.predict(3, x, u)
    )
    with pytest.raises(ConfigError, match="linear_state"):
        config_from_dict({"model_based": {"linear_state": "cartesian"}})
