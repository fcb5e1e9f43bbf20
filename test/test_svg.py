"""SVG(1)-ER (Heess et al. 2015) against independent oracles, and on the shared pipeline.

- the SVG(1) value gradient through a hand-set linear model and a known V and reward equals
  finite differences of the same objective written in closed form (noise held fixed);
- the noise inference of model and policy reproduces a real transition exactly; the model's
  per-dimension noise is recovered by its maximum-likelihood fit;
- V's TD target, and V learnt on a tiny chain whose values are known in closed form;
- importance weights pi/mu: the ratio, its truncation, w = 1 where mu is unknown;
- the agent learns a 1-D linear-quadratic problem well past the zero policy;
- config errors are one line; checkpoints, published weights and the numpy actor round-trip.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from naf_ros.config import AgentConfig, ConfigError, config_from_dict
from naf_ros.core.actor import NumpyActor
from naf_ros.core.agents import make_agent
from naf_ros.core.naf import NAFAgent
from naf_ros.core.noise import make_noise
from naf_ros.core.replay import ReplayBuffer
from naf_ros.core.svg import (
    IMPORTANCE_CAP,
    DynamicsNetwork,
    GaussianPolicy,
    SVGAgent,
    importance_weights,
    svg1_value,
    value_target,
)

OBS, ACT = 3, 2


def make(seed: int = 0, **cfg) -> SVGAgent:
    base = {"hidden": [16, 12], "gamma": 0.9, "tau": 0.1, "algorithm": "svg1er"}
    agent = make_agent(AgentConfig(**{**base, **cfg}), OBS, ACT, seed=seed)
    assert isinstance(agent, SVGAgent)
    return agent


def batch(n: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "obs": rng.normal(size=(n, OBS)).astype(np.float32),
        "action": rng.uniform(-0.9, 0.9, (n, ACT)).astype(np.float32),
        "reward": rng.normal(size=n).astype(np.float32),
        "next_obs": rng.normal(size=(n, OBS)).astype(np.float32),
        "terminal": np.zeros(n, np.float32),
    }


# --- the value gradient ----------------------------------------------------------------------
class LinearModel:
    """x' = A x + B u + diag(s) eta: a fixed, hand-set model with additive noise."""

    def __init__(self, A: np.ndarray, B: np.ndarray, s: np.ndarray) -> None:
        self.A, self.B, self.s = (torch.as_tensor(v, dtype=torch.float64) for v in (A, B, s))

    def step(self, x, u, eta):
        return x @ self.A.T + u @ self.B.T + self.s * eta

    def infer_noise(self, x, u, x1):
        return (x1 - x @ self.A.T - u @ self.B.T) / self.s


def test_svg1_value_gradient_matches_finite_differences_through_a_known_model():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n, gamma = 5, 0.9
    A = np.eye(OBS) + 0.1 * rng.normal(size=(OBS, OBS))
    B = rng.normal(size=(OBS, ACT))
    s = np.array([0.1, 0.3, 0.2])
    P = np.diag([1.0, 2.0, 0.5])  # V(x) = -x' P x + c . x
    c = np.array([0.3, -0.2, 0.1])
    R = 0.1

    def v_np(x):
        return -np.einsum("ni,ij,nj->n", x, P, x) + x @ c

    def r_np(x, u, x1):
        return -R * (u * u).sum(-1) - (x1[:, 0] - 0.5 * x[:, 1]) ** 2

    P_t, c_t = torch.as_tensor(P), torch.as_tensor(c)
    policy = GaussianPolicy(OBS, ACT, [8]).double()
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.3 * torch.randn_like(p))
    x = rng.normal(size=(n, OBS))
    u = rng.uniform(-0.8, 0.8, (n, ACT))
    x1 = rng.normal(size=(n, OBS))
    terminal = np.array([0, 0, 1, 0, 0], float)

    def objective(_x, _u, _x1):
        return r_np(_x, _u, _x1) + gamma * (1 - terminal) * v_np(_x1)

    # The oracle: the objective in closed form with xi, eta inferred at theta_0 and held fixed.
    with torch.no_grad():
        m0, ls0 = (t.numpy() for t in policy(torch.as_tensor(x)))
    xi0 = (np.arctanh(u) - m0) / np.exp(ls0)
    eta0 = (x1 - x @ A.T - u @ B.T) / s

    def oracle() -> float:
        with torch.no_grad():
            m, ls = (t.numpy() for t in policy(torch.as_tensor(x)))
        ut = np.tanh(m + np.exp(ls) * xi0)
        return float(objective(x, ut, x @ A.T + ut @ B.T + s * eta0).sum())

    model = LinearModel(A, B, s)
    out = svg1_value(
        policy, model,
        lambda a, b, c_: -R * (b * b).sum(-1) - (c_[:, 0] - 0.5 * a[:, 1]) ** 2,
        lambda z: -torch.einsum("ni,ij,nj->n", z, P_t, z) + z @ c_t,
        torch.as_tensor(x), torch.as_tensor(u), torch.as_tensor(x1), torch.as_tensor(terminal),
        gamma,
    )  # fmt: skip
    # Along the real transition: at theta_0 the objective is that of the observed (x, u, x').
    np.testing.assert_allclose(out.detach().numpy(), objective(x, u, x1), rtol=1e-9, atol=1e-9)
    params = list(policy.parameters())
    grads = torch.autograd.grad(out.sum(), params)
    assert max(float(g.abs().max()) for g in grads) > 1e-2
    h = 1e-6
    for k in range(4):  # directional derivatives along random directions
        dirs = [torch.randn_like(p) for p in params]
        with torch.no_grad():
            for p, d in zip(params, dirs):
                p.add_(h * d)
            up = oracle()
            for p, d in zip(params, dirs):
                p.sub_(2 * h * d)
            down = oracle()
            for p, d in zip(params, dirs):
                p.add_(h * d)
        fd = (up - down) / (2 * h)
        analytic = sum(float((g * d).sum()) for g, d in zip(grads, dirs))
        assert analytic == pytest.approx(fd, rel=1e-6, abs=1e-8), k


def test_each_network_steps_with_its_own_losss_gradient():
    """The update's gradients, caught before each optimiser steps, against the three losses
    rebuilt here: pi from -mean(w * svg1_value), V from the weighted TD loss (target net),
    model and reward model from NLL + squared error. pi's loss must not reach V or the models."""
    from naf_ros.core.svg import gaussian_log_prob, pre_squash

    agent = make(seed=21)
    for s in range(3):
        agent.update(batch(seed=30 + s))  # move every network (and the target) off its init
    b = batch(seed=40)
    b["terminal"][3] = 1.0
    b["behaviour_logp"] = np.random.default_rng(4).normal(-2.0, 1.0, len(b["reward"]))
    b["behaviour_logp"][0] = np.nan
    b["behaviour_logp"] = b["behaviour_logp"].astype(np.float32)
    ref = copy.deepcopy(agent)
    seen = {}

    def grab(name):
        def hook(opt, *_):
            seen[name] = [p.grad.detach().clone() for g in opt.param_groups for p in g["params"]]

        return hook

    hooks = [
        agent.actor_optimizer.register_step_pre_hook(grab("actor")),
        agent.value_optimizer.register_step_pre_hook(grab("value")),
        agent.model_optimizer.register_step_pre_hook(grab("model")),
    ]
    agent.update(b)
    for h in hooks:
        h.remove()
    t = {k: torch.as_tensor(v) for k, v in b.items()}
    net = ref.net
    with torch.no_grad():
        mean, log_std = net.actor(t["obs"])
        logp = gaussian_log_prob(pre_squash(t["action"]), mean, log_std)
        w = importance_weights(logp, t["behaviour_logp"])
        y = t["reward"] + 0.9 * (1 - t["terminal"]) * ref.target(t["next_obs"])
    assert w[0] == 1.0 and w.max() <= IMPORTANCE_CAP
    obj = svg1_value(
        net.actor, net.model, net.reward, net.value, t["obs"], t["action"], t["next_obs"],
        t["terminal"], 0.9,
    )  # fmt: skip
    want = {
        "actor": torch.autograd.grad(-(w * obj).mean(), list(net.actor.parameters())),
        "value": torch.autograd.grad(
            (w * (y - net.value(t["obs"])) ** 2).mean(), list(net.value.parameters())
        ),
        "model": torch.autograd.grad(
            net.model.nll(t["obs"], t["action"], t["next_obs"])
            + ((net.reward(t["obs"], t["action"], t["next_obs"]) - t["reward"]) ** 2).mean(),
            list(net.model.parameters()) + list(net.reward.parameters()),
        ),
    }
    for name, grads in want.items():
        assert len(seen[name]) == len(grads)
        for got, g in zip(seen[name], grads):
            torch.testing.assert_close(got, g, rtol=1e-5, atol=1e-7)


# --- noise inference and the model's fit -------------------------------------------------------
def test_noise_inference_reproduces_the_observed_transition_exactly():
    torch.manual_seed(1)
    model = DynamicsNetwork(OBS, ACT, [12, 12]).double()
    policy = GaussianPolicy(OBS, ACT, [12]).double()
    with torch.no_grad():
        for p in list(model.parameters()) + list(policy.parameters()):
            p.add_(0.4 * torch.randn_like(p))
    rng = np.random.default_rng(2)
    x = torch.as_tensor(rng.normal(size=(10, OBS)))
    u = torch.as_tensor(rng.uniform(-0.95, 0.95, (10, ACT)))
    x1 = torch.as_tensor(rng.normal(size=(10, OBS)) * 3)
    eta = model.infer_noise(x, u, x1)
    torch.testing.assert_close(model.step(x, u, eta), x1, rtol=0, atol=1e-12)
    # eta is the standardised residual: exactly N(0, I)'s argument in the model's likelihood
    sigma = torch.exp(model.noise_log_std())
    torch.testing.assert_close(eta * sigma, x1 - model.mean(x, u), rtol=0, atol=1e-12)
    mean, log_std = policy(x)
    xi = (torch.atanh(u) - mean) / torch.exp(log_std)
    torch.testing.assert_close(torch.tanh(mean + torch.exp(log_std) * xi), u, rtol=0, atol=1e-12)


def test_model_maximum_likelihood_recovers_per_dimension_noise():
    torch.manual_seed(3)
    rng = np.random.default_rng(3)
    n = 2000
    x = rng.uniform(-1, 1, (n, 2))
    u = rng.uniform(-1, 1, (n, 1))
    true_std = np.array([0.02, 0.2])
    x1 = x + 0.1 * np.c_[x[:, 1], u[:, 0]] + true_std * rng.normal(size=(n, 2))
    model = DynamicsNetwork(2, 1, [32])
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, ut, x1t = (torch.as_tensor(v, dtype=torch.float32) for v in (x, u, x1))
    for _ in range(600):
        idx = torch.as_tensor(rng.integers(0, n, 256))
        loss = model.nll(xt[idx], ut[idx], x1t[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    learned = torch.exp(model.noise_log_std()).detach().numpy()
    np.testing.assert_allclose(learned, true_std, rtol=0.25)


# --- the value function ------------------------------------------------------------------------
def test_value_target_is_r_plus_discounted_next_value_except_at_terminals():
    r = torch.tensor([1.0, -2.0, 0.5])
    v1 = torch.tensor([10.0, 3.0, -4.0])
    term = torch.tensor([0.0, 1.0, 0.0])
    torch.testing.assert_close(value_target(r, v1, term, 0.9), torch.tensor([10.0, -2.0, -3.1]))


def test_value_learns_a_closed_form_chain():
    """s0 -> s1 (r 0), s1 -> s1 (r 1), s2 terminal (r 3): with gamma = 0.5,
    V(s1) = 1 / (1 - gamma) = 2, V(s0) = gamma V(s1) = 1, V(s2) = 3."""
    gamma = 0.5
    agent = make_agent(
        AgentConfig(algorithm="svg1er", hidden=[16], gamma=gamma, tau=0.5, lr=1e-2), 1, 1, seed=4
    )
    s = np.array([[0.0], [1.0], [2.0]], np.float32)
    b = {
        "obs": s,
        "action": np.zeros((3, 1), np.float32),
        "reward": np.array([0.0, 1.0, 3.0], np.float32),
        "next_obs": np.array([[1.0], [1.0], [0.0]], np.float32),
        "terminal": np.array([0.0, 0.0, 1.0], np.float32),
    }
    for _ in range(400):
        assert np.isfinite(agent.update(b))
    with torch.no_grad():
        v = agent.net.value(torch.as_tensor(s)).numpy()
    np.testing.assert_allclose(v, [1.0, 2.0, 3.0], atol=0.05)


def test_importance_weights_are_the_truncated_density_ratio():
    logp_pi = torch.tensor([-1.0, 0.0, 3.0, -2.0])
    logp_mu = torch.tensor([-1.5, 0.0, -1.0, float("nan")])
    w = importance_weights(logp_pi, logp_mu)
    torch.testing.assert_close(w, torch.tensor([math.exp(0.5), 1.0, IMPORTANCE_CAP, 1.0]))
    torch.testing.assert_close(importance_weights(logp_pi, None), torch.ones(4))


def test_the_learner_stores_the_acting_policys_density_so_fresh_rows_weigh_one():
    from naf_ros.core.learner import Learner
    from naf_ros.core.svg import gaussian_log_prob, pre_squash

    cfg = config_from_dict(
        {
            "agent": {
                "algorithm": "svg1er",
                "hidden": [8],
                "batch_size": 4,
                "warmup_steps": 0,
                "updates_per_step": 1,
            },
            "exploration": {"kind": "policy"},
        }
    )
    learner = Learner(cfg, OBS, ACT, 5)
    noise = make_noise("policy", ACT, 0.3, 0.15, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    for t in range(5):
        obs = rng.normal(size=OBS)
        learner.add(
            {
                "obs": obs, "action": learner.agent.act(obs, noise), "reward": 0.0,
                "next_obs": rng.normal(size=OBS), "terminal": False, "truncated": t == 4, "t": t,
            }
        )  # fmt: skip
    r = learner.replay
    with torch.no_grad():  # independent of the agent's helper: density of the stored rows
        mean, log_std = learner.agent.net.actor(torch.as_tensor(r.obs[:5]))
        logp = gaussian_log_prob(pre_squash(torch.as_tensor(r.action[:5])), mean, log_std)
    np.testing.assert_allclose(r.behaviour_logp[:5], logp.numpy(), rtol=1e-5)
    learner.learn()  # rows the current policy acted: pi / mu = 1
    assert learner.agent.last_mean_weight == pytest.approx(1.0, abs=1e-4)
    # A row with its producer's density keeps it; R round-trips the column.
    learner.add(
        {
            "obs": np.zeros(OBS), "action": np.zeros(ACT), "reward": 0.0,
            "next_obs": np.zeros(OBS), "terminal": True, "truncated": False, "t": 0,
            "behaviour_logp": -7.5,
        }
    )  # fmt: skip
    assert r.behaviour_logp[5] == -7.5
    again = ReplayBuffer(OBS, ACT, 10, behaviour_logp=True)
    again.load_state_dict(r.state_dict())
    np.testing.assert_array_equal(again.behaviour_logp[:6], r.behaviour_logp[:6])
    plain = ReplayBuffer(OBS, ACT, 10)
    plain.add_batch(r.obs[:6], r.action[:6], r.reward[:6], r.next_obs[:6], r.terminal[:6])
    again.load_state_dict(plain.state_dict())  # an old checkpoint: densities unknown (NaN)
    assert np.isnan(again.behaviour_logp[:6]).all()


# --- learning ------------------------------------------------------------------------------------
def test_svg_learns_a_1d_linear_quadratic_problem():
    """x' = x + 0.2 u, r = -x'^2 - 0.05 u^2, x0 ~ U(-1, 1), 20 steps, 15 training episodes.
    The zero policy's mean return over the evaluation starts is -8.3; driving x to 0 at full
    speed about -0.6."""
    from naf_ros.core.learner import Learner

    T = 20
    cfg = config_from_dict(
        {
            "agent": {
                "algorithm": "svg1er", "hidden": [32, 32], "batch_size": 32,
                "warmup_steps": 64, "gamma": 0.9, "lr": 3e-3, "updates_per_step": 2,
            },
            "exploration": {"kind": "policy"},
            "train": {"seed": 0},
        }
    )  # fmt: skip
    torch.set_num_threads(1)
    learner = Learner(cfg, 1, 1, T)
    agent = learner.agent
    rng = np.random.default_rng(0)
    noise = make_noise("policy", 1, 0.3, 0.15, rng)

    def step(x, u):
        x1 = x + 0.2 * u
        return x1, float(-(x1 @ x1) - 0.05 * (u @ u))

    def evaluate(policy) -> float:
        total = 0.0
        for x0 in np.linspace(-1, 1, 9):
            x = np.array([x0])
            for _ in range(T):
                x, r = step(x, policy(x))
                total += r
        return total / 9

    zero = evaluate(lambda x: np.zeros(1))
    for _episode in range(15):
        x = rng.uniform(-1, 1, 1)
        for t in range(T):
            u = agent.act(x, noise)
            x1, r = step(x, u)
            learner.add(
                {"obs": x, "action": u, "reward": r, "next_obs": x1, "terminal": False,
                 "truncated": t == T - 1, "t": t}
            )  # fmt: skip
            learner.learn()
            x = x1
    learned = evaluate(agent.act)
    print("zero", zero, "learned", learned, "skipped", agent.skipped_updates)
    assert zero < -6.0
    assert learned > 0.25 * zero  # three quarters of the zero policy's cost removed
    assert agent.skipped_updates == 0


def test_trainer_runs_svg_on_the_reacher_and_resumes(tmp_path):
    from naf_ros.core.trainer import Trainer

    cfg = config_from_dict(
        {
            "env": {"id": "NafRos/Reacher3DOFFixed-v0"},
            "agent": {"algorithm": "svg1er", "hidden": [16], "warmup_steps": 32,
                      "updates_per_step": 1},
            "exploration": {"kind": "policy"},
            "train": {"episodes": 2, "eval_every": 1, "eval_episodes": 1, "progress": False},
        }
    )  # fmt: skip
    summary = Trainer(cfg, run_dir=tmp_path, log=None).train()
    assert summary["algorithm"] == "svg1er" and summary["updates"] > 0
    assert summary["skipped_updates"] == 0
    assert all(np.isfinite(summary["eval_curve"]["return"]))
    cfg.train.episodes = 3
    again = Trainer(cfg, run_dir=tmp_path, log=None)
    resumed = again.train(resume=True)
    assert resumed["episodes"] == 3 and resumed["updates"] > summary["updates"]
    assert np.isfinite(again.replay.behaviour_logp[: len(again.replay)]).all()


# --- config ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "data, match",
    [
        ({"agent": {"algorithm": "svg1er"}}, "exploration.kind: 'ou'"),
        ({"agent": {"algorithm": "svg1er"}, "exploration": {"kind": "precision"}}, "P\\(x\\)"),
        ({"agent": {"algorithm": "svg1er"}, "exploration": {"kind": "none"}}, "use policy"),
        ({"exploration": {"kind": "policy"}}, "'naf'"),
        ({"agent": {"algorithm": "ddpg"}, "exploration": {"kind": "policy"}}, "'ddpg'"),
        (
            {
                "agent": {"algorithm": "svg1er"},
                "exploration": {"kind": "policy"},
                "model_based": {"enabled": True},
            },
            "model_based.enabled",
        ),
        (
            {
                "agent": {"algorithm": "svg1er", "batch_norm": True},
                "exploration": {"kind": "policy"},
            },
            "agent.batch_norm",
        ),
        ({"agent": {"algorithm": "svg2"}}, "agent.algorithm"),
        ({"agent": {"algorithm": "svg1er", "policy_std_min": 0}}, "agent.policy_std_min"),
        ({"agent": {"algorithm": "svg1er", "policy_std_min": 2.0}}, "agent.policy_std_min"),
        ({"agent": {"algorithm": "svg1er", "policy_std_min": "x"}}, "agent.policy_std_min"),
        ({"agent": {"algorithm": "svg1er", "importance_cap": 0.5}}, "agent.importance_cap"),
        ({"agent": {"algorithm": "svg1er", "importance_cap": None}}, "agent.importance_cap"),
    ],
)
def test_config_errors_are_one_line(data, match):
    with pytest.raises(ConfigError, match=match) as err:
        config_from_dict(data)
    assert "\n" not in str(err.value)


def test_config_accepts_svg_with_policy_exploration_and_refuses_a_gpu():
    cfg = config_from_dict({"agent": {"algorithm": "svg1er"}, "exploration": {"kind": "policy"}})
    assert isinstance(make_agent(cfg.agent, 3, 1), SVGAgent)
    with pytest.raises(ConfigError, match="agent.device"):
        make_agent(cfg.agent, 3, 1, device="cuda")


def test_floor_and_cap_keys_default_to_the_former_constants():
    from naf_ros.config import POLICY_STD_CEILING
    from naf_ros.core.svg import LOG_STD_MAX, LOG_STD_MIN

    cfg = AgentConfig()
    assert cfg.policy_std_min == 0.1 and cfg.importance_cap == 5.0
    assert LOG_STD_MIN == math.log(0.1) and IMPORTANCE_CAP == 5.0
    assert make().net.actor.log_std_min == LOG_STD_MIN
    assert POLICY_STD_CEILING < math.exp(LOG_STD_MAX)  # the validated floor stays below sigma's
    # sigma starts at 0.5 under any floor below it, mid-range (log) above it
    obs = torch.zeros(1, OBS)
    for floor, start in ((0.1, 0.5), (0.3, 0.5), (1.0, math.exp(0.5 * (math.log(1.0) + 0.5)))):
        log_std = make(policy_std_min=floor).net.actor(obs)[1]
        # (the head's small initial weights move it a little off its bias)
        torch.testing.assert_close(
            torch.exp(log_std), torch.full((1, ACT), start), rtol=0.01, atol=0
        )


def test_a_custom_sigma_floor_bounds_acting_sampling_and_learning():
    floor = 0.4
    agent = make(seed=3, policy_std_min=floor)
    obs = torch.as_tensor(np.random.default_rng(0).normal(size=(50, OBS)) * 3, dtype=torch.float32)
    for s in range(20):
        agent.update(batch(seed=s))
        assert torch.exp(agent.net.actor(obs)[1]).min() >= floor * (1 - 1e-6)
    with torch.no_grad():  # push sigma onto its floor: then it is the floor exactly
        agent.net.actor.log_std.weight.zero_()
        agent.net.actor.log_std.bias.fill_(-60.0)
    torch.testing.assert_close(agent.net.actor(obs)[1], torch.full((50, ACT), math.log(floor)))
    # acting (agent and the node's numpy actor) samples tanh(m + floor xi)
    x = obs[0].numpy().astype(np.float64)
    mean = agent.net.actor(obs[:1])[0][0].detach().numpy().astype(np.float64)
    xi = np.random.default_rng(5).standard_normal(ACT)
    want = np.tanh(mean + floor * xi)
    for act in (agent.act, NumpyActor(agent.net).act):
        got = act(x, make_noise("policy", ACT, 0.3, 0.15, np.random.default_rng(5)))
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_a_custom_importance_cap_truncates_the_weights_in_the_update():
    b = batch(seed=4)
    b["behaviour_logp"] = np.full(len(b["reward"]), -80.0, np.float32)  # pi/mu enormous
    for cap in (1.5, IMPORTANCE_CAP):
        agent = make(seed=1, **({} if cap == IMPORTANCE_CAP else {"importance_cap": cap}))
        agent.update(b)
        assert agent.last_mean_weight == pytest.approx(cap, rel=1e-6)
    b["behaviour_logp"] = np.full(len(b["reward"]), 80.0, np.float32)  # pi/mu tiny: no cap
    agent = make(seed=1, importance_cap=1.5)
    agent.update(b)
    assert agent.last_mean_weight < 1e-6


def test_acting_refuses_noise_that_is_not_the_policys():
    agent = make()
    obs = np.zeros(OBS)
    with pytest.raises(ValueError, match="exploration.kind policy"):
        agent.act(obs, make_noise("ou", ACT, 0.3, 0.15, np.random.default_rng(0)))
    with pytest.raises(ValueError, match="P\\(x\\)"):
        agent.act(obs, make_noise("precision", ACT, 0.3, 0.15, np.random.default_rng(0)))


# --- persistence and transport -------------------------------------------------------------------
def test_state_dict_round_trip_and_a_naf_state_does_not_load():
    agent = make(seed=5)
    agent.update(batch(seed=6))
    other = make(seed=7)
    other.load_state_dict(copy.deepcopy(agent.state_dict()))  # as if through a file
    b = batch(seed=8)
    assert agent.update(b) == pytest.approx(other.update(b), rel=1e-6)
    assert agent.last_actor_loss == pytest.approx(other.last_actor_loss, rel=1e-6)
    np.testing.assert_allclose(agent.mu_batch(b["obs"]), other.mu_batch(b["obs"]), atol=1e-6)
    for k, v in agent.net.state_dict().items():
        torch.testing.assert_close(v, other.net.state_dict()[k])
    with pytest.raises(ValueError, match="SVG"):
        other.load_state_dict(NAFAgent(OBS, ACT, AgentConfig(hidden=[16, 12])).state_dict())


def test_numpy_actor_samples_like_the_agent_and_published_weights_round_trip():
    from naf_ros.ros.codec import pack_arrays, unpack_arrays

    agent = make(seed=9)
    for s in range(5):
        agent.update(batch(seed=10 + s))
    arrays = unpack_arrays(pack_arrays({**agent.weight_arrays(), "version": 1.0}, np.float32))
    arrays.pop("version")
    assert all(k.startswith("actor.") for k in arrays)  # V and the models stay with the learner
    node_agent = make_agent(agent.cfg, OBS, ACT, seed=99)
    node_agent.load_weight_arrays(arrays)
    actor = NumpyActor(node_agent.net)
    obs_all = np.random.default_rng(1).normal(size=(20, OBS)) * 2
    mu = agent.mu_batch(obs_all)
    noise_a = make_noise("policy", ACT, 0.3, 0.15, np.random.default_rng(5))
    noise_b = make_noise("policy", ACT, 0.3, 0.15, np.random.default_rng(5))
    spread = []
    for obs, want in zip(obs_all, mu):
        np.testing.assert_allclose(actor.act(obs), want, atol=2e-6)
        sample = actor.act(obs, noise_a)
        np.testing.assert_allclose(sample, agent.act(obs, noise_b), atol=2e-5)
        spread.append(np.abs(sample - want).max())
    assert max(spread) > 0.05  # the sample is not the mean
    bad = dict(arrays)
    bad["actor.log_std.bias"] = np.full(ACT, np.nan)
    with pytest.raises(ValueError, match="non-finite"):
        node_agent.load_weight_arrays(bad)
    with pytest.raises(ValueError, match="missing"):
        node_agent.load_weight_arrays(make_agent(AgentConfig(algorithm="ddpg", hidden=[16, 12]),
                                                 OBS, ACT).weight_arrays())  # fmt: skip
