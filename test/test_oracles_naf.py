"""NAF update and exploration noise against independently computed references.

The only earlier ``update()`` test used terminal transitions, where V'(x') is multiplied by
zero, so bootstrapping from the online instead of the target network (or adding instead of
multiplying the mask) passed. Here the target and online networks differ, most transitions
are non-terminal, and the loss *and* the gradient the agent feeds to Adam are compared with
ones computed in the test from the paper's formulas:

    y = r + gamma (1 - terminal) V'(x')      (V' from the TARGET network, no gradient)
    Q(x, u) = V(x) - ½ (u - mu(x))ᵀ P(x) (u - mu(x)),   P = L Lᵀ (a matrix product)
    loss = mean (y - Q)²,   then theta' <- tau theta + (1 - tau) theta'

The networks' heads (V, mu, L from ``value_mu_l``) are trusted; the quadratic form, the target,
the loss, the gradient and the soft update are not. The exploration processes are checked
sample by sample against the recurrences n_{k+1} = (1 - theta) n_k + e_k with e_k from the
same random stream: scale z_k for OU, sqrt(c) L^-T z_k for precision noise (covariance
c P^-1, the adaptive c = scale² / running mean of tr(P^-1) / n).
"""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch

from naf_ros.config import AgentConfig
from naf_ros.core.naf import NAFAgent
from naf_ros.core.networks import NAFNetwork
from naf_ros.core.noise import ExplorationNoise, PrecisionNoise

OBS, ACT, GAMMA, TAU = 4, 3, 0.9, 0.3


def q_reference(net: NAFNetwork, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    value, mu, lower = net.value_mu_l(obs)
    P = lower @ lower.transpose(-1, -2)  # full P = L Lᵀ
    d = action - mu
    return value - 0.5 * torch.einsum("bi,bij,bj->b", d, P, d)


def make_agent(seed: int = 0) -> NAFAgent:
    agent = NAFAgent(OBS, ACT, AgentConfig(hidden=[16, 16], gamma=GAMMA, tau=TAU), seed=seed)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for net in (agent.net, agent.target):  # non-trivial mu and full (non-diagonal) L
            net.heads.weight.add_(0.3 * torch.randn(net.heads.weight.shape, generator=g))
            net.heads.bias.add_(0.3 * torch.randn(net.heads.bias.shape, generator=g))
        for p in agent.target.parameters():  # the target lags: it differs from the online net
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    return agent


def make_batch(n: int = 32, seed: int = 0, terminal_every: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    terminal = np.zeros(n, np.float32)
    terminal[::terminal_every] = 1.0  # mostly non-terminal, a few true terminals
    return {
        "obs": rng.standard_normal((n, OBS)).astype(np.float32),
        "action": rng.uniform(-1, 1, (n, ACT)).astype(np.float32),
        "reward": rng.standard_normal(n).astype(np.float32),
        "next_obs": rng.standard_normal((n, OBS)).astype(np.float32),
        "terminal": terminal,
    }


def reference_loss_and_grads(agent: NAFAgent, batch: dict, terminal: np.ndarray | None = None):
    """Loss and d loss / d theta from copies of the networks taken *before* the update."""
    net, target = copy.deepcopy(agent.net), copy.deepcopy(agent.target)
    t = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in batch.items()}
    done = t["terminal"] if terminal is None else torch.as_tensor(terminal, dtype=torch.float32)
    with torch.no_grad():
        v_next = target.value_mu_l(t["next_obs"])[0]
        y = t["reward"] + GAMMA * (1.0 - done) * v_next
    loss = ((y - q_reference(net, t["obs"], t["action"])) ** 2).mean()
    grads = torch.autograd.grad(loss, list(net.parameters()), allow_unused=True)
    return float(loss.detach()), grads, y


def run_update(agent: NAFAgent, batch: dict):
    """agent.update(batch), capturing the gradients Adam sees and the nets before/after."""
    seen: list[list[torch.Tensor | None]] = []

    def grab(opt, args, kwargs):
        seen.append([None if p.grad is None else p.grad.clone() for p in agent.net.parameters()])

    handle = agent.optimizer.register_step_pre_hook(grab)
    target_before = [p.detach().clone() for p in agent.target.parameters()]
    try:
        loss = agent.update(batch)
    finally:
        handle.remove()
    assert len(seen) == 1, "update() must take exactly one optimiser step"
    return loss, seen[0], target_before


def assert_grads_equal(got, want):
    for g, w in zip(got, want):
        w = torch.zeros(()) if w is None else w
        g = torch.zeros(()) if g is None else g
        assert torch.allclose(g, w, rtol=1e-4, atol=1e-6), (g, w)


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "autograd"])
def test_update_matches_reference_loss_and_gradient_on_non_terminal_data(fused):
    """Both update paths: the fused one (networks without batch norm) and autograd (the path
    batch-norm networks take), forced here on the same network."""
    agent = make_agent()
    agent.fused = fused
    batch = make_batch()
    want_loss, want_grads, y = reference_loss_and_grads(agent, batch)
    # guard: with the online net instead of the target, the target would be clearly different
    with torch.no_grad():
        v_online = agent.net.value_mu_l(torch.as_tensor(batch["next_obs"]))[0]
        v_target = agent.target.value_mu_l(torch.as_tensor(batch["next_obs"]))[0]
    assert (v_online - v_target).abs().max() > 0.1
    loss, grads, _ = run_update(agent, batch)
    assert loss == pytest.approx(want_loss, rel=1e-5)
    assert_grads_equal(grads, want_grads)


def test_terminal_transitions_do_not_bootstrap():
    """All terminal: y = r exactly, whatever V'(x') is."""
    agent = make_agent(seed=1)
    batch = make_batch(seed=1, terminal_every=1)
    want_loss, want_grads, y = reference_loss_and_grads(agent, batch)
    assert torch.allclose(y, torch.as_tensor(batch["reward"]))
    loss, grads, _ = run_update(agent, batch)
    assert loss == pytest.approx(want_loss, rel=1e-5)
    assert_grads_equal(grads, want_grads)


def test_advantage_uses_full_precision_matrix():
    agent = make_agent(seed=2)
    obs = torch.randn(64, OBS)
    action = torch.rand(64, ACT) * 2 - 1
    _, _, lower = agent.net.value_mu_l(obs)
    P = NAFNetwork.precision(lower)
    np.testing.assert_allclose(
        P.detach().numpy(), (lower @ lower.transpose(-1, -2)).detach().numpy(), rtol=1e-6
    )
    off = P - torch.diag_embed(torch.diagonal(P, dim1=-2, dim2=-1))
    assert off.abs().max() > 0.05, "test data needs a non-diagonal P"
    got = agent.net(obs, action)
    want = q_reference(agent.net, obs, action)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6)


def test_soft_update_after_the_step_follows_the_formula():
    agent = make_agent(seed=3)
    _, _, target_before = run_update(agent, make_batch(seed=3))
    for old, new, online in zip(target_before, agent.target.parameters(), agent.net.parameters()):
        assert torch.allclose(new, (1 - TAU) * old + TAU * online, rtol=1e-5, atol=1e-6)
    # and a direct call on diverged nets
    with torch.no_grad():
        for p in agent.net.parameters():
            p.mul_(-2.0).add_(0.5)
    before = [p.detach().clone() for p in agent.target.parameters()]
    agent.soft_update()
    for old, new, online in zip(before, agent.target.parameters(), agent.net.parameters()):
        assert torch.allclose(new, (1 - TAU) * old + TAU * online, rtol=1e-5, atol=1e-6)


# --- time-limit truncation bootstraps ----------------------------------------------------------
class _NeverTerminates(gym.Env):
    """A drifting state that never terminates: only the TimeLimit ends an episode."""

    observation_space = gym.spaces.Box(-10, 10, (OBS,), np.float64)
    action_space = gym.spaces.Box(-1, 1, (ACT,), np.float64)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = np.linspace(-0.5, 0.5, OBS)
        return self.x.copy(), {}

    def step(self, action):
        self.x = np.clip(0.9 * self.x + 0.1 * np.resize(action, OBS) + 0.05, -10, 10)
        return self.x.copy(), float(-np.sum(self.x**2)), False, False, {}


def test_time_limit_truncation_bootstraps_through_the_trainer(tmp_path):
    from naf_ros.config import config_from_dict
    from naf_ros.core.trainer import Trainer

    if "Test/NeverTerminates-v0" not in gym.registry:
        gym.register("Test/NeverTerminates-v0", entry_point=_NeverTerminates)
    cfg = config_from_dict(
        {
            "env": {"id": "Test/NeverTerminates-v0", "max_episode_steps": 5},
            "agent": {"hidden": [16, 16], "warmup_steps": 10_000, "gamma": GAMMA, "tau": TAU},
            "train": {"episodes": 1, "progress": False},
        }
    )
    trainer = Trainer(cfg, run_dir=tmp_path, log=None)
    stats = trainer.run_episode()
    assert stats["length"] == 5  # ended by the time limit
    n = len(trainer.replay)
    batch = {
        k: getattr(trainer.replay, k)[:n].copy()
        for k in ("obs", "action", "reward", "next_obs", "terminal")
    }
    # The env never terminates, so every target bootstraps, the truncated last one included.
    want_loss, want_grads, _ = reference_loss_and_grads(trainer.agent, batch, np.zeros(n))
    loss, grads, _ = run_update(trainer.agent, batch)
    assert loss == pytest.approx(want_loss, rel=1e-5)
    assert_grads_equal(grads, want_grads)


# --- exploration noise ------------------------------------------------------------------------
def test_ou_noise_follows_its_recurrence_exactly():
    theta, scale = 0.15, 0.3
    noise = ExplorationNoise(ACT, scale, theta, np.random.default_rng(5))
    ref_rng, state = np.random.default_rng(5), np.zeros(ACT)
    for _ in range(50):
        state = (1.0 - theta) * state + scale * ref_rng.standard_normal(ACT)
        np.testing.assert_allclose(noise.sample(), state, rtol=1e-12, atol=1e-15)
    # mean reversion: from a displaced state and no innovation the process decays towards 0
    noise.state = np.ones(ACT)
    noise.scale = 0.0
    assert np.all(noise.sample() == pytest.approx(1.0 - theta))


def _lower(rng: np.random.Generator) -> np.ndarray:
    lower = np.tril(rng.standard_normal((ACT, ACT)))
    lower[np.diag_indices(ACT)] = np.exp(rng.uniform(-1.0, 1.5, ACT))
    return lower


def test_precision_noise_has_covariance_c_p_inverse_sample_by_sample():
    theta, scale, ema = 0.15, 0.2, 0.3
    noise = PrecisionNoise(ACT, scale, theta, np.random.default_rng(8), ema=ema)
    ref_rng, lrng = np.random.default_rng(8), np.random.default_rng(9)
    state, mean_trace = np.zeros(ACT), None
    for _ in range(20):
        lower = _lower(lrng)
        P = lower @ lower.T
        tr = float(np.trace(np.linalg.inv(P))) / ACT  # inverse only here, as the reference
        mean_trace = tr if mean_trace is None else mean_trace + ema * (tr - mean_trace)
        c = scale**2 / mean_trace
        z = ref_rng.standard_normal(ACT)
        e = np.sqrt(c) * np.linalg.solve(lower.T, z)  # Cov = c L^-T L^-1 = c P^-1
        # the defining property, independent of the square root used: eᵀ P e = c zᵀ z
        assert e @ P @ e == pytest.approx(c * z @ z, rel=1e-9)
        state = (1.0 - theta) * state + e
        np.testing.assert_allclose(noise.sample(lower), state, rtol=1e-9, atol=1e-12)
    assert noise.c == pytest.approx(c, rel=1e-12)
