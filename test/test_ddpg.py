"""DDPG (the paper's Table 1 baseline) against independent oracles, and on the same pipeline.

- the critic target y = r + gamma (1 - terminal) Q'(x', mu'(x')) and the critic gradient,
  against a float64 reference written from the networks' weights;
- the actor gradient equals -mean dQ/da . dmu/dtheta, both factors by finite differences;
- the soft update theta' <- tau theta + (1 - tau) theta' for actor and critic;
- a non-finite loss skips the update and keeps the last good weights;
- the numpy actor the policy node acts with is the torch actor; published weights round-trip;
- config: ``agent.algorithm`` is validated, precision exploration with DDPG is an error;
- imagination rollouts run DDPG's mu; learner checkpoints round-trip;
- DDPG learns the fixed-target reacher past what any constant action reaches.
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch

from naf_ros.config import AgentConfig, ConfigError, config_from_dict
from naf_ros.core.actor import NumpyActor
from naf_ros.core.agents import make_agent
from naf_ros.core.ddpg import DDPGAgent, critic_target
from naf_ros.core.naf import NAFAgent
from naf_ros.core.noise import make_noise

OBS, ACT, GAMMA, TAU = 4, 2, 0.9, 0.1


def make(seed: int = 0, **cfg) -> DDPGAgent:
    base = {"hidden": [16, 12], "gamma": GAMMA, "tau": TAU, "algorithm": "ddpg"}
    agent = make_agent(AgentConfig(**{**base, **cfg}), OBS, ACT, seed=seed)
    assert isinstance(agent, DDPGAgent)
    with torch.no_grad():  # non-trivial mu and Q; the target lags the online networks
        for p in agent.net.parameters():
            p.add_(0.3 * torch.randn_like(p))
        for p in agent.target.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return agent


def batch(n: int = 16, seed: int = 0, terminal=None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "obs": rng.normal(size=(n, OBS)).astype(np.float32),
        "action": rng.uniform(-1, 1, (n, ACT)).astype(np.float32),
        "reward": rng.normal(size=n).astype(np.float32),
        "next_obs": rng.normal(size=(n, OBS)).astype(np.float32),
        "terminal": (np.zeros(n) if terminal is None else np.asarray(terminal)).astype(np.float32),
    }


# --- float64 references written from the weights (no module code) ---------------------------
def ref_mu(sd: dict, x: torch.Tensor) -> torch.Tensor:
    h = torch.relu(x @ sd["actor.body.0.weight"].T + sd["actor.body.0.bias"])
    h = torch.relu(h @ sd["actor.body.2.weight"].T + sd["actor.body.2.bias"])
    return torch.tanh(h @ sd["actor.out.weight"].T + sd["actor.out.bias"])


def ref_q(sd: dict, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    h = torch.relu(x @ sd["critic.state_layers.0.weight"].T + sd["critic.state_layers.0.bias"])
    h = torch.cat([h, a], dim=-1)  # the action joins at the second hidden layer
    h = torch.relu(h @ sd["critic.joint_layers.0.weight"].T + sd["critic.joint_layers.0.bias"])
    return (h @ sd["critic.out.weight"].T + sd["critic.out.bias"])[:, 0]


def f64(module: torch.nn.Module) -> dict:
    return {k: v.detach().double().clone() for k, v in module.state_dict().items()}


def t64(a: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, np.float64))


def run_update(agent: DDPGAgent, b: dict) -> tuple[float, list, list]:
    """One update; returns the loss and the gradients the optimisers stepped with."""
    seen = {}

    def grab(name):
        def hook(opt, *_):
            params = [p for g in opt.param_groups for p in g["params"]]
            seen[name] = [p.grad.detach().double().clone() for p in params]

        return hook

    h1 = agent.critic_optimizer.register_step_pre_hook(grab("critic"))
    h2 = agent.actor_optimizer.register_step_pre_hook(grab("actor"))
    try:
        loss = agent.update(b)
    finally:
        h1.remove()
        h2.remove()
    return loss, seen["critic"], seen["actor"]


# --- the critic --------------------------------------------------------------------------------
@pytest.mark.parametrize("with_terminal", [False, True], ids=["non_terminal", "one_terminal"])
def test_critic_target_and_gradient_match_a_hand_computation(with_terminal):
    agent = make()
    terminal = np.zeros(16)
    if with_terminal:
        terminal[[3, 9]] = 1.0
    b = batch(terminal=terminal)
    online, target = f64(agent.net), f64(agent.target)
    x, a, r, x2 = (t64(b[k]) for k in ("obs", "action", "reward", "next_obs"))
    next_q = ref_q(target, x2, ref_mu(target, x2))
    y = r + GAMMA * (1.0 - t64(terminal)) * next_q  # by hand
    np.testing.assert_allclose(
        critic_target(r, next_q, t64(terminal), GAMMA).numpy(), y.numpy(), rtol=1e-12
    )
    # The target really comes from the target networks: the online ones give another value.
    assert not torch.allclose(next_q, ref_q(online, x2, ref_mu(online, x2)), atol=1e-3)
    names = [f"critic.{k}" for k, _ in agent.net.critic.named_parameters()]
    leaves = {k: online[k].clone().requires_grad_(True) for k in names}
    loss_ref = torch.mean((y - ref_q({**online, **leaves}, x, a)) ** 2)
    grads_ref = torch.autograd.grad(loss_ref, [leaves[k] for k in names])
    loss, critic_grads, _ = run_update(agent, b)
    assert loss == pytest.approx(float(loss_ref.detach()), rel=1e-5)
    for name, got, want in zip(names, critic_grads, grads_ref):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=2e-4, atol=1e-6, err_msg=name)


def test_terminal_rows_do_not_bootstrap():
    r, q = torch.tensor([1.0, 1.0]), torch.tensor([5.0, 5.0])
    y = critic_target(r, q, torch.tensor([0.0, 1.0]), 0.5)
    assert y.tolist() == [3.5, 1.0]  # a product with (1 - terminal), never a sum


# --- the actor ---------------------------------------------------------------------------------
def test_actor_gradient_is_dq_da_times_dmu_dtheta_by_finite_differences():
    agent = make(seed=3)
    b = batch(n=8, seed=4)
    critic = copy.deepcopy(agent.net.critic).double().eval()
    actor = copy.deepcopy(agent.net.actor).double().eval()
    x = t64(b["obs"])
    eps = 1e-6
    with torch.no_grad():
        mu = actor(x)
        # dQ/da at a = mu(x), per sample, by central differences on the critic.
        dq_da = torch.zeros_like(mu)
        for j in range(ACT):
            step = torch.zeros(ACT, dtype=torch.float64)
            step[j] = eps
            dq_da[:, j] = (critic(x, mu + step) - critic(x, mu - step)) / (2 * eps)
        # dmu/dtheta by central differences on every actor parameter.
        expected = []
        for p in actor.parameters():
            g = torch.zeros_like(p)
            flat = p.view(-1)
            for i in range(flat.numel()):
                old = float(flat[i])
                flat[i] = old + eps
                up = actor(x)
                flat[i] = old - eps
                down = actor(x)
                flat[i] = old
                dmu = (up - down) / (2 * eps)  # (B, act)
                g.view(-1)[i] = -(dq_da * dmu).sum(-1).mean()  # actor loss = -mean Q(x, mu)
            expected.append(g)
    _, _, actor_grads = run_update(agent, b)
    for got, want in zip(actor_grads, expected):
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=2e-3, atol=2e-6)
    assert max(float(g.abs().max()) for g in expected) > 1e-3  # not a comparison of zeros


# --- soft update ---------------------------------------------------------------------------------
def test_soft_update_formula_for_actor_and_critic():
    agent = make(seed=7)
    before = [p.detach().clone() for p in agent.target.parameters()]
    agent.soft_update()
    for old, new, online in zip(before, agent.target.parameters(), agent.net.parameters()):
        torch.testing.assert_close(new, TAU * online + (1 - TAU) * old)
    # After an update the targets follow the *new* online weights by tau.
    before = [p.detach().clone() for p in agent.target.parameters()]
    agent.update(batch(seed=8))
    for old, new, online in zip(before, agent.target.parameters(), agent.net.parameters()):
        torch.testing.assert_close(new, TAU * online + (1 - TAU) * old)
    n_target = sum(1 for _ in agent.target.parameters())
    assert n_target == len(list(agent.net.actor.parameters())) + len(
        list(agent.net.critic.parameters())
    )


# --- NaN safety ----------------------------------------------------------------------------------
@pytest.mark.parametrize("poison", ["nan_reward", "overflow_reward", "nan_obs"])
def test_non_finite_update_is_skipped_and_keeps_the_last_good_weights(poison):
    agent = make(seed=9)
    agent.update(batch(seed=10))  # an optimiser state worth keeping
    net = copy.deepcopy(agent.net.state_dict())
    target = copy.deepcopy(agent.target.state_dict())
    b = batch(seed=11)
    if poison == "nan_reward":
        b["reward"][2] = np.nan
    elif poison == "overflow_reward":
        b["reward"][:] = 3e38  # (y - q)^2 overflows float32
    else:
        b["obs"][0, 1] = np.nan
    assert np.isnan(agent.update(b))
    assert agent.skipped_updates == 1 and agent.updates == 1
    for k, v in agent.net.state_dict().items():
        torch.testing.assert_close(v, net[k])
    for k, v in agent.target.state_dict().items():
        torch.testing.assert_close(v, target[k])
    assert np.isfinite(agent.update(batch(seed=12)))  # and it keeps learning afterwards
    assert agent.updates == 2


# --- acting, transport, persistence --------------------------------------------------------------
@pytest.mark.parametrize("batch_norm", [False, True], ids=["plain", "bn"])
def test_numpy_actor_is_the_torch_actor_and_published_weights_round_trip(batch_norm):
    from naf_ros.ros.codec import pack_arrays, unpack_arrays

    agent = make(seed=13, batch_norm=batch_norm)
    for s in range(4):  # moves batch-norm statistics off their defaults
        b = batch(seed=20 + s)
        b["obs"] = b["obs"] * 3 + 1
        agent.update(b)
    # The policy node's path: publish (float32 message), load into its own agent, act.
    arrays = unpack_arrays(pack_arrays({**agent.weight_arrays(), "version": 1.0}, np.float32))
    arrays.pop("version")
    assert all(k.startswith("actor.") for k in arrays)  # the critic stays with the learner
    node_agent = make_agent(agent.cfg, OBS, ACT, seed=99)
    node_agent.load_weight_arrays(arrays)
    actor = NumpyActor(node_agent.net)
    obs_all = np.random.default_rng(1).normal(size=(20, OBS)) * 2
    mu = agent.mu_batch(obs_all)
    assert np.abs(mu).max() > 1e-2
    for obs, want in zip(obs_all, mu):
        np.testing.assert_allclose(actor.mu(obs), want, atol=2e-6)
    noise_a = make_noise("ou", ACT, 0.3, 0.15, np.random.default_rng(5))
    noise_b = make_noise("ou", ACT, 0.3, 0.15, np.random.default_rng(5))
    for obs in obs_all:
        np.testing.assert_allclose(actor.act(obs, noise_a), agent.act(obs, noise_b), atol=2e-5)
    with pytest.raises(ValueError, match="L\\(x\\)"):
        actor.lower(obs_all[0])
    bad = dict(arrays)
    bad["actor.out.bias"] = np.full(ACT, np.nan)
    with pytest.raises(ValueError, match="non-finite"):
        node_agent.load_weight_arrays(bad)
    with pytest.raises(ValueError, match="missing"):
        node_agent.load_weight_arrays(
            NAFAgent(OBS, ACT, AgentConfig(hidden=[16, 12])).weight_arrays()
        )


def test_state_dict_round_trip_and_a_naf_state_does_not_load():
    agent = make(seed=14)
    agent.update(batch(seed=15))
    other = make(seed=16)
    other.load_state_dict(copy.deepcopy(agent.state_dict()))  # as if through a file
    b = batch(seed=17)
    assert agent.update(b) == pytest.approx(other.update(b), rel=1e-6)
    np.testing.assert_allclose(agent.mu_batch(b["obs"]), other.mu_batch(b["obs"]), atol=1e-6)
    with pytest.raises(ValueError, match="DDPG"):
        other.load_state_dict(NAFAgent(OBS, ACT, AgentConfig(hidden=[16, 12])).state_dict())


def test_config_validates_the_algorithm():
    assert config_from_dict({}).agent.algorithm == "naf"
    assert config_from_dict({"agent": {"algorithm": "ddpg"}}).agent.actor_lr is None
    with pytest.raises(ConfigError, match="agent.algorithm") as err:
        config_from_dict({"agent": {"algorithm": "svg"}})
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="precision") as err:
        config_from_dict({"agent": {"algorithm": "ddpg"}, "exploration": {"kind": "precision"}})
    assert "\n" not in str(err.value)
    agent = make_agent(AgentConfig(algorithm="ddpg", hidden=[8], lr=1e-3, actor_lr=1e-4), 3, 1)
    assert agent.actor_optimizer.param_groups[0]["lr"] == 1e-4
    assert agent.critic_optimizer.param_groups[0]["lr"] == 1e-3
    assert isinstance(make_agent(AgentConfig(), 3, 1), NAFAgent)


def test_imagination_rollouts_run_ddpgs_mu_and_learn_from_them():
    from naf_ros.core.dynamics import LinearGaussianDynamics
    from naf_ros.core.learner import Learner

    T = 5
    cfg = config_from_dict(
        {
            "agent": {"algorithm": "ddpg", "hidden": [8, 8], "batch_size": 8, "warmup_steps": 0},
            "exploration": {"kind": "none"},
            "model_based": {
                "enabled": True,
                "imagination_noise": "exploration",
                "rollout_every": 1,
                "rollout_length": 3,
                "rollout_batch": 6,
            },
        }
    )
    learner = Learner(cfg, 2, 1, T, reward=lambda x, u: -np.sum(x * x, -1))
    learner.set_model(
        LinearGaussianDynamics(
            F=np.tile(np.array([[1.0, 0.0, 0.1], [0.0, 1.0, 0.2]]), (T, 1, 1)),
            f=np.zeros((T, 2)),
            N=np.tile(1e-9 * np.eye(2), (T, 1, 1)),
            x0_mean=np.zeros(2),
            x0_cov=1e-6 * np.eye(2),
        ),
        1,
    )
    rng = np.random.default_rng(0)
    for _episode in range(2):
        for t in range(T):
            learner.add(
                {
                    "obs": rng.normal(size=2),
                    "action": rng.uniform(-1, 1, 1),
                    "reward": 0.0,
                    "next_obs": rng.normal(size=2),
                    "terminal": False,
                    "truncated": t == T - 1,
                    "t": t,
                }
            )
    assert learner.counters.imagined > 0
    n = len(learner.fictional)
    f = learner.fictional
    # Noise "none": every imagined action is exactly the DDPG actor's mu at that state.
    np.testing.assert_allclose(f.action[:n], learner.agent.mu_batch(f.obs[:n]), atol=1e-6)
    losses = learner.learn()
    assert len(losses) == learner.imagination_updates + cfg.agent.updates_per_step
    assert all(np.isfinite(losses))
    again = Learner(cfg, 2, 1, T, reward=lambda x, u: -np.sum(x * x, -1))
    again.load_state_dict(learner.state_dict())
    assert again.agent.updates == learner.agent.updates


# --- learning ------------------------------------------------------------------------------------
def test_ddpg_learns_the_fixed_target_reacher(tmp_path):
    """Budget: 40 episodes (2,000 steps, 5 updates/step of both networks), about 35 s CPU.

    A constant action cannot reach the threshold: the best of a 3^3 grid is checked here, and
    a local search over constant actions found about -6.4 at best.
    """
    from naf_ros.config import EnvConfig
    from naf_ros.core.envs import make_env
    from naf_ros.core.trainer import Trainer

    threshold = -5.0
    env = make_env(EnvConfig(id="NafRos/Reacher3DOFFixed-v0"))
    for action in itertools.product([-0.5, 0.0, 0.5], repeat=3):
        env.reset(seed=10_000)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(np.asarray(action))
            total, done = total + reward, terminated or truncated
        assert total < threshold, action
    cfg = config_from_dict(
        {
            "env": {"id": "NafRos/Reacher3DOFFixed-v0"},
            "agent": {"algorithm": "ddpg", "hidden": [64, 64], "warmup_steps": 500},
            "exploration": {"kind": "ou", "scale": 0.3},
            "train": {
                "episodes": 40,
                "eval_every": 10,
                "eval_episodes": 3,
                "seed": 0,
                "progress": False,
            },
        }
    )
    summary = Trainer(cfg, run_dir=tmp_path, log=None).train()
    curve = summary["eval_curve"]
    print("eval returns", curve["return"], "precision", summary["final_eval_precision"])
    assert curve["return"][0] < -9.0
    assert summary["final_eval_return"] >= threshold
    assert summary["algorithm"] == "ddpg"
    assert summary["skipped_updates"] == 0
    precision = summary["final_eval_precision"]
    assert precision["steps"] == 10 and precision["episodes"] == 3
    assert 0.0 <= precision["tip_distance_mean"] < 0.15
    assert np.isfinite(precision["tip_speed_mean"]) and precision["tip_speed_std"] >= 0.0


# --- precision measured in the trainer's evaluation ----------------------------------------------
def test_evaluation_precision_is_tip_distance_and_speed_from_forward_kinematics(tmp_path):
    """The last-10-step statistics against the arm's own forward kinematics of the joints."""
    from naf_ros.core.trainer import Trainer

    cfg = config_from_dict(
        {
            "env": {"id": "NafRos/Reacher3DOFFixed-v0"},
            "agent": {"algorithm": "ddpg", "hidden": [8, 8]},
            "train": {"seed": 3, "progress": False},
        }
    )
    trainer = Trainer(cfg, run_dir=tmp_path, log=None)
    with torch.no_grad():  # a policy that moves the arm, so speeds are not all zero
        trainer.agent.net.actor.out.bias.copy_(torch.tensor([0.8, -0.6, 0.4]))
    trainer.evaluate(2)
    got = trainer.last_eval_precision
    env = trainer.eval_env.unwrapped
    dists, speeds = [], []
    for i in range(2):
        obs, _ = trainer.eval_env.reset(seed=3 + 10_000 + i)
        tips = [env.task.fingertip(env.sim.joint_positions())]
        episode = []
        done = False
        while not done:
            action = trainer.scaler.to_env(trainer.agent.act(obs))
            obs, _, terminated, truncated, _ = trainer.eval_env.step(action)
            tips.append(env.task.fingertip(env.sim.joint_positions()))
            episode.append(np.linalg.norm(tips[-1] - env.sim.target))
            done = terminated or truncated
        dists += episode[-10:]
        speeds += list(np.linalg.norm(np.diff(tips[-11:], axis=0), axis=1) / env.sim.control_dt)
    assert got["steps"] == 10 and got["episodes"] == 2
    assert got["tip_distance_mean"] == pytest.approx(np.mean(dists), rel=1e-9)
    assert got["tip_distance_std"] == pytest.approx(np.std(dists), rel=1e-9)
    assert got["tip_speed_mean"] == pytest.approx(np.mean(speeds), rel=1e-9)
    assert got["tip_speed_std"] == pytest.approx(np.std(speeds), rel=1e-9)
    assert got["tip_speed_mean"] > 1e-3


def test_gymnasium_reacher_fingertip_is_a_fresh_copy_each_step():
    import gymnasium as gym

    from naf_ros.core.trainer import fingertip_position

    env = gym.make("Reacher-v5")
    obs, _ = env.reset(seed=0)
    first = fingertip_position(env, obs)
    obs, *_ = env.step(np.ones(2))
    second = fingertip_position(env, obs)
    np.testing.assert_allclose(second, obs[4:6] + obs[8:10], atol=1e-9)  # target + (tip - target)
    assert np.linalg.norm(second - first) > 1e-4
    env.close()
