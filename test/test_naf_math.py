"""NAF core against closed forms and the known bugs of public NAF code."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from naf_ros.config import AgentConfig
from naf_ros.core.naf import NAFAgent, td_target
from naf_ros.core.networks import NAFNetwork


@pytest.fixture(params=[False, True], ids=["separate", "shared"])
def net(request):
    torch.manual_seed(0)
    network = NAFNetwork(5, 3, [32, 32], shared_trunk=request.param)
    # Push the heads away from their near-zero initialisation so mu and L are non-trivial.
    with torch.no_grad():
        network.heads.weight.normal_(0, 0.3)
        network.heads.bias.normal_(0, 0.3)
    return network


def test_q_is_maximised_exactly_at_mu(net):
    obs = torch.randn(16, 5)
    value, mu, lower = net.value_mu_l(obs)
    q_at_mu = net(obs, mu)
    assert torch.allclose(q_at_mu, value, atol=1e-6)
    for _ in range(20):
        other = (mu + 0.3 * torch.randn_like(mu)).clamp(-1, 1)
        assert (net(obs, other) <= q_at_mu + 1e-6).all()


def test_advantage_matches_explicit_quadratic_form(net):
    obs, action = torch.randn(8, 5), torch.rand(8, 3) * 2 - 1
    value, mu, lower = net.value_mu_l(obs)
    p = NAFNetwork.precision(lower)
    d = action - mu
    explicit = value - 0.5 * torch.einsum("bi,bij,bj->b", d, p, d)
    assert torch.allclose(net(obs, action), explicit, atol=1e-5)


def test_p_is_symmetric_positive_definite_and_not_diagonal(net):
    _, _, lower = net.value_mu_l(torch.randn(32, 5))
    assert torch.equal(lower, torch.tril(lower)), "L must be lower-triangular"
    p = NAFNetwork.precision(lower)
    assert torch.allclose(p, p.transpose(-1, -2), atol=1e-6)
    assert (torch.linalg.eigvalsh(p) > 0).all()
    off_diag = p - torch.diag_embed(torch.diagonal(p, dim1=-2, dim2=-1))
    # An elementwise L*L^T (a known bug) would make P diagonal.
    assert off_diag.abs().max() > 1e-3


def test_l_depends_on_state_only():
    net = NAFNetwork(4, 2, [16, 16])
    # forward() takes the action, but L comes from value_mu_l(obs) alone: same obs, same L.
    obs = torch.randn(1, 4).repeat(5, 1)
    _, _, lower = net.value_mu_l(obs)
    assert torch.allclose(lower, lower[:1].expand_as(lower))
    assert set(net.value_mu_l.__code__.co_varnames[: net.value_mu_l.__code__.co_argcount]) == {
        "self",
        "obs",
    }


def test_log_diagonal_is_bounded_no_overflow():
    net = NAFNetwork(3, 2, [8], max_log_diag=4.0)
    with torch.no_grad():
        net.heads.bias.fill_(1e6)
    _, _, lower = net.value_mu_l(torch.zeros(2, 3))
    diag = torch.diagonal(lower, dim1=-2, dim2=-1)
    assert torch.isfinite(lower).all()
    assert (diag <= np.exp(4.0) * 1.0001).all()


def test_mu_within_action_bounds():
    net = NAFNetwork(3, 2, [8])
    with torch.no_grad():
        net.heads.weight.fill_(50.0)
    assert net.mu(torch.randn(64, 3) * 100).abs().max() <= 1.0


def test_target_uses_one_minus_terminal_times_gamma():
    r = torch.tensor([1.0, 1.0, 1.0])
    v = torch.tensor([10.0, 10.0, -4.0])
    terminal = torch.tensor([0.0, 1.0, 0.0])
    y = td_target(r, v, terminal, gamma=0.9)
    assert torch.allclose(y, torch.tensor([1.0 + 9.0, 1.0, 1.0 - 3.6]))


class _TerminatingEnv(gym.Env):
    """Terminates (a true terminal) at step 4; a TimeLimit below that truncates instead."""

    observation_space = gym.spaces.Box(-10, 10, (2,), np.float64)
    action_space = gym.spaces.Box(-1, 1, (1,), np.float64)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(2), {}

    def step(self, action):
        self.t += 1
        return np.full(2, float(self.t)), -1.0, self.t >= 4, False, {}


@pytest.mark.parametrize("limit,expected_last_terminal", [(10, 1.0), (3, 0.0)])
def test_trainer_stores_truncation_as_non_terminal(limit, expected_last_terminal, tmp_path):
    from naf_ros.config import config_from_dict
    from naf_ros.core.trainer import Trainer

    if "Test/Terminating-v0" not in gym.registry:
        gym.register("Test/Terminating-v0", entry_point=_TerminatingEnv)
    cfg = config_from_dict(
        {
            "env": {"id": "Test/Terminating-v0", "max_episode_steps": limit},
            "agent": {"hidden": [8], "warmup_steps": 1000},
            "train": {"episodes": 1, "progress": False},
        }
    )
    trainer = Trainer(cfg, run_dir=tmp_path, log=None)
    trainer.run_episode()
    n = len(trainer.replay)
    assert n == min(limit, 4)
    assert trainer.replay.terminal[: n - 1].sum() == 0
    assert trainer.replay.terminal[n - 1] == expected_last_terminal


def test_update_fits_the_bellman_target():
    """Repeated updates on one terminal transition drive Q(x,u) to r."""
    cfg = AgentConfig(hidden=[32, 32], lr=3e-3, tau=0.01)
    agent = NAFAgent(3, 2, cfg, seed=1)
    batch = {
        "obs": np.ones((8, 3), np.float32),
        "action": np.full((8, 2), 0.2, np.float32),
        "reward": np.full(8, -2.0, np.float32),
        "next_obs": np.ones((8, 3), np.float32),
        "terminal": np.ones(8, np.float32),
    }
    for _ in range(400):
        loss = agent.update(batch)
    with torch.no_grad():
        q = float(agent.net(torch.ones(1, 3), torch.full((1, 2), 0.2)))
    assert q == pytest.approx(-2.0, abs=0.05)
    assert loss < 1e-3


def test_soft_update_moves_target_by_tau():
    cfg = AgentConfig(hidden=[8], tau=0.1)
    agent = NAFAgent(2, 1, cfg)
    with torch.no_grad():
        for p in agent.net.parameters():
            p.add_(1.0)
    before = [p.clone() for p in agent.target.parameters()]
    agent.soft_update()
    for b, t, p in zip(before, agent.target.parameters(), agent.net.parameters()):
        assert torch.allclose(t, 0.9 * b + 0.1 * p, atol=1e-6)


def test_batch_norm_statistics_update_and_reach_the_target():
    cfg = AgentConfig(hidden=[16, 16], batch_norm=True, tau=0.5)
    agent = NAFAgent(3, 1, cfg)
    rng = np.random.default_rng(0)
    batch = {
        "obs": (rng.normal(size=(32, 3)) * 5 + 3).astype(np.float32),
        "action": rng.uniform(-1, 1, (32, 1)).astype(np.float32),
        "reward": rng.normal(size=32).astype(np.float32),
        "next_obs": rng.normal(size=(32, 3)).astype(np.float32),
        "terminal": np.zeros(32, np.float32),
    }
    bn = agent.net.trunk[1].bn
    target_bn = agent.target.trunk[1].bn
    mean0 = bn.running_mean.clone()
    target0 = target_bn.running_mean.clone()
    for _ in range(5):
        agent.update(batch)
    assert not torch.allclose(bn.running_mean, mean0), "online BN statistics never updated"
    assert not torch.allclose(target_bn.running_mean, target0), "target BN statistics frozen"
    # Acting uses eval mode: the same state gives the same action regardless of the batch.
    a1 = agent.act(batch["obs"][0])
    a2 = agent.act(batch["obs"][0])
    assert np.array_equal(a1, a2)


def test_non_finite_loss_skips_update_and_keeps_weights():
    agent = NAFAgent(2, 1, AgentConfig(hidden=[8]))
    before = {k: v.clone() for k, v in agent.net.state_dict().items()}
    batch = {
        "obs": np.zeros((4, 2), np.float32),
        "action": np.zeros((4, 1), np.float32),
        "reward": np.array([np.nan, 0, 0, 0], np.float32),
        "next_obs": np.zeros((4, 2), np.float32),
        "terminal": np.zeros(4, np.float32),
    }
    assert np.isnan(agent.update(batch))
    assert agent.skipped_updates == 1 and agent.updates == 0
    for k, v in agent.net.state_dict().items():
        assert torch.equal(v, before[k])


def test_weight_arrays_round_trip_and_reject_bad_shapes():
    a = NAFAgent(4, 2, AgentConfig(hidden=[8, 8]), seed=0)
    b = NAFAgent(4, 2, AgentConfig(hidden=[8, 8]), seed=1)
    obs = np.ones(4)
    assert not np.allclose(a.act(obs), b.act(obs))
    b.load_weight_arrays(a.weight_arrays())
    assert np.allclose(a.act(obs), b.act(obs))
    bad = a.weight_arrays()
    name = next(iter(bad))
    bad[name] = bad[name][..., :1]
    with pytest.raises(ValueError, match="shape"):
        b.load_weight_arrays(bad)
    nan = a.weight_arrays()
    nan[name] = nan[name] * np.nan
    with pytest.raises(ValueError, match="non-finite"):
        b.load_weight_arrays(nan)
