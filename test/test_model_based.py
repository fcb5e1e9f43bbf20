"""Algorithm 2 in the trainer: imagination rollouts, buffers, variants and the speed-up."""

import numpy as np
import pytest

import naf_ros.envs  # noqa: F401
from naf_ros.config import ConfigError, config_from_dict
from naf_ros.core.dynamics import LinearGaussianDynamics
from naf_ros.core.imagination import imagine
from naf_ros.core.trainer import Trainer
from naf_ros.core.true_model import TrueSimModel

FIXED = "NafRos/Reacher3DOFFixed-v0"


def _config(episodes, seed=0, mb=None, **sections):
    base = {
        "env": {"id": FIXED},
        "agent": {"hidden": [64, 64], "warmup_steps": 500},
        "exploration": {"kind": "ou", "scale": 0.3},
        "model_based": mb or {"enabled": False},
        "train": {
            "episodes": episodes,
            "eval_every": 5,
            "eval_episodes": 3,
            "seed": seed,
            "progress": False,
        },
    }
    for key, values in sections.items():
        base.setdefault(key, {}).update(values)
    return config_from_dict(base)


def test_imagination_reproduces_a_known_models_trajectories():
    rng = np.random.default_rng(0)
    T, nx, nu = 12, 4, 2
    F = rng.normal(scale=0.3, size=(T, nx, nx + nu))
    f = rng.normal(scale=0.1, size=(T, nx))
    model = LinearGaussianDynamics(
        F=F,
        f=f,
        N=np.broadcast_to(1e-9 * np.eye(nx), (T, nx, nx)),
        x0_mean=np.zeros(nx),
        x0_cov=1e-9 * np.eye(nx),
    )
    gain = rng.normal(scale=0.2, size=(nu, nx))

    def policy(x):
        return np.tanh(x @ gain.T)

    def reward(x, u):
        return -(x**2).sum(-1)

    starts = rng.normal(size=(5, nx))
    t0 = np.array([0, 3, 7, 9, 11])
    out = imagine(model, policy, reward, starts, t0, length=4, horizon=T, noise=0.0, rng=rng)
    expected = []
    for x, t in zip(starts, t0):
        for k in range(4):
            if t + k >= T:
                break
            u = policy(x[None])[0]
            x_next = F[t + k] @ np.concatenate([x, u]) + f[t + k]
            expected.append((x, u, x_next, t + k))
            x = x_next
    assert len(out["obs"]) == len(expected) == 4 + 4 + 4 + 3 + 1  # stops at the horizon
    got = sorted(zip(out["step"], out["obs"][:, 0]), key=lambda p: (p[0], p[1]))
    exp = sorted(((t, x[0]) for x, _, _, t in expected), key=lambda p: (p[0], p[1]))
    assert np.allclose(np.array(got), np.array(exp))
    for x, u, x_next, _t in expected:
        i = int(np.flatnonzero(np.all(np.isclose(out["obs"], x), axis=1))[0])
        assert np.allclose(out["action"][i], u) and np.allclose(out["next_obs"][i], x_next)
        assert out["reward"][i] == pytest.approx(reward(x[None], u[None])[0])


def test_true_model_matches_the_environment():
    import gymnasium as gym

    env = gym.make(FIXED)
    model = TrueSimModel(FIXED, {})
    obs, _ = env.reset(seed=1)
    rng = np.random.default_rng(1)
    for t in range(10):
        action = rng.uniform(-1, 1, 3)
        predicted = model.predict(t, obs, action)[0]
        obs, *_ = env.step(action)
        assert np.allclose(predicted, obs, atol=1e-9)


def test_algorithm_2_buffers_and_schedule(tmp_path):
    mb = {
        "enabled": True,
        "episodes_per_fit": 2,
        "rollout_every": 10,
        "rollout_batch": 4,
        "rollout_length": 3,
        "imagination_off_after": 5,
        "imagination_updates_per_step": 2,
    }
    cfg = _config(6, mb=mb, agent={"warmup_steps": 50, "updates_per_step": 1, "batch_size": 8})
    trainer = Trainer(cfg, run_dir=tmp_path, log=None)
    learner, mbased = trainer.learner, trainer.model_based
    for _ in range(2):
        trainer.run_episode()
    assert mbased.fits == 1 and len(learner.B_old) == 2 and len(learner.B_f) == 0
    assert learner.model is not None and len(learner.fictional) == 0
    trainer.run_episode()  # 50 steps -> 5 rollout rounds of 4 starts x 3 steps (horizon cuts)
    assert 0 < len(learner.fictional) <= 5 * 4 * 3
    imagined_before_off = learner.counters.imagined
    updates_before = trainer.agent.updates
    trainer.run_episode()  # episode index 3 -> still on
    assert trainer.agent.updates - updates_before == 50 * (1 + 2)
    trainer.run_episode()  # episode 4 -> still on (off after 5 completed)
    trainer.run_episode()  # episodes >= 5: off
    assert mbased.fits == 3
    on_after = learner.counters.imagined
    assert on_after > imagined_before_off
    updates_before = trainer.agent.updates
    trainer.run_episode()
    assert learner.counters.imagined == on_after, "imagination must stay off"
    assert trainer.agent.updates - updates_before == 50


def test_ilqg_episodes_mix_with_probability_p(tmp_path):
    mb = {"enabled": True, "episodes_per_fit": 2, "ilqg_probability": 1.0}
    cfg = _config(6, mb=mb, agent={"warmup_steps": 50, "updates_per_step": 1})
    trainer = Trainer(cfg, run_dir=tmp_path, log=None)
    kinds = [trainer.run_episode()["controller"] for _ in range(6)]
    assert kinds[:2] == ["policy", "policy"]  # no controller before the first fit
    assert kinds[2:] == ["ilqg"] * 4
    assert trainer.model_based.explorer.steps >= 2
    assert all(np.abs(trainer.replay.action[: len(trainer.replay)]).max(axis=0) <= 1.0)


@pytest.mark.parametrize(
    "env,mb,fragment",
    [
        (
            {"id": FIXED, "kwargs": {"max_episode_steps": None}},
            {"model": "linear"},
            "fixed episode length",
        ),
        ({"id": "Pendulum-v1"}, {"model": "linear"}, "no task reward"),
    ],
)
def test_variant_that_cannot_apply_is_a_one_line_error(env, mb, fragment, tmp_path):
    import gymnasium as gym

    if env["id"] == FIXED:
        # A reacher without a time limit: register a variant once.
        if "Test/ReacherNoLimit-v0" not in gym.registry:
            gym.register(
                "Test/ReacherNoLimit-v0",
                entry_point="naf_ros.envs.reacher_env:Reacher3DOFEnv",
                kwargs={"fixed_target": (0.1, 0.2)},
            )
        env = {"id": "Test/ReacherNoLimit-v0"}
    cfg = _config(1, env=env, mb={"enabled": True, **mb})
    with pytest.raises(ConfigError) as exc:
        Trainer(cfg, run_dir=tmp_path, log=None)
    assert fragment in str(exc.value) and "\n" not in str(exc.value)


def test_mpc_on_the_true_model_reaches_the_target():
    import gymnasium as gym

    from naf_ros.core.mpc import MPCController

    env = gym.make(FIXED)
    model = TrueSimModel(FIXED, {})
    mpc = MPCController(model, model.task, 3, plan_horizon=10)
    obs, _ = env.reset(seed=0)
    total = 0.0
    for t in range(50):
        action = mpc.act(t, obs)
        assert np.all(np.abs(action) <= 1.0)
        obs, reward, _, _, info = env.step(action)
        total += reward
    assert info["tip_distance"] < 0.005  # half a centimetre
    assert total > -3.0  # random policy: about -13.5


def test_mpc_mode_needs_the_true_model(tmp_path):
    cfg = _config(1, mb={"enabled": True, "model": "linear", "ilqg_mode": "mpc"})
    with pytest.raises(ConfigError, match="true"):
        Trainer(cfg, run_dir=tmp_path, log=None)
    cfg = _config(
        1, mb={"enabled": True, "model": "true", "ilqg_mode": "mpc", "ilqg_probability": 1.0}
    )
    trainer = Trainer(cfg, run_dir=tmp_path, log=None)
    assert trainer.run_episode()["controller"] == "ilqg"


def test_kl_step_adapts_only_on_the_ilqg_controllers_own_episodes(tmp_path):
    """The trainer's iLQG step size learns from iLQG's own returns, and not at all without.

    With ilqg_probability ~ 0 every fitted episode is NAF's; their returns say nothing about
    the controller's last step, so kl_step must stay where it was configured. (The trainer
    once adapted it from all episodes' returns: the ROS explorer never did.)
    """
    mb = {"enabled": True, "episodes_per_fit": 2, "ilqg_probability": 1e-9, "kl_step": 0.5}
    agent = {"hidden": [16, 16], "warmup_steps": 50, "updates_per_step": 1}
    trainer = Trainer(_config(6, mb=mb, agent=agent), run_dir=tmp_path, log=None)
    for _ in range(6):
        trainer.run_episode()
    explorer = trainer.model_based.explorer
    assert explorer.steps == 3 and trainer.model_based.ilqg_episodes == 0
    assert explorer.optimizer.kl_step == 0.5  # three steps, no adaptation

    # Its own episodes do move it: the same fits with every episode run by iLQG.
    mb_own = {**mb, "ilqg_probability": 1.0}
    own = Trainer(_config(6, mb=mb_own, agent=agent), run_dir=tmp_path / "o", log=None)
    for _ in range(6):
        own.run_episode()
    assert own.model_based.ilqg_episodes == 4
    assert own.model_based.explorer.optimizer.kl_step != 0.5
