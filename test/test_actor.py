"""The numpy actor the policy node acts with must be the torch network, to float precision."""

import numpy as np
import pytest
import torch

from naf_ros.config import AgentConfig
from naf_ros.core.actor import NumpyActor
from naf_ros.core.naf import NAFAgent
from naf_ros.core.noise import make_noise


def _trained_agent(shared: bool, batch_norm: bool) -> NAFAgent:
    """An agent whose heads and batch-norm statistics are far from their initial values."""
    torch.manual_seed(0)
    cfg = AgentConfig(hidden=[32, 24], shared_trunk=shared, batch_norm=batch_norm)
    agent = NAFAgent(7, 3, cfg, seed=0)
    with torch.no_grad():
        agent.net.heads.weight.normal_(0, 0.3)
        agent.net.heads.bias.normal_(0, 0.3)
    rng = np.random.default_rng(0)
    for _ in range(5):  # moves the running statistics (and all weights) off their defaults
        agent.update(
            {
                "obs": (rng.normal(size=(32, 7)) * 3 + 1).astype(np.float32),
                "action": rng.uniform(-1, 1, (32, 3)).astype(np.float32),
                "reward": rng.normal(size=32).astype(np.float32),
                "next_obs": rng.normal(size=(32, 7)).astype(np.float32),
                "terminal": np.zeros(32, np.float32),
            }
        )
    return agent


@pytest.mark.parametrize("shared", [False, True], ids=["separate", "shared"])
@pytest.mark.parametrize("batch_norm", [False, True], ids=["plain", "bn"])
def test_numpy_actor_matches_torch_mu_and_lower(shared, batch_norm):
    agent = _trained_agent(shared, batch_norm)
    actor = NumpyActor(agent.net)
    rng = np.random.default_rng(1)
    for obs in rng.normal(size=(20, 7)) * 2:
        mu, lower = agent.mu_and_lower(obs)
        np.testing.assert_allclose(actor.mu(obs), mu, atol=2e-6)
        np.testing.assert_allclose(actor.lower(obs), lower, rtol=2e-5, atol=2e-6)
        assert np.abs(mu).max() > 1e-2  # the comparison is not between two near-zero vectors


@pytest.mark.parametrize("kind", ["ou", "precision", "gaussian"])
def test_numpy_actor_acts_like_the_agent_with_the_same_noise(kind):
    agent = _trained_agent(shared=False, batch_norm=True)
    actor = NumpyActor(agent.net)
    noise_a = make_noise(kind, 3, 0.3, 0.15, np.random.default_rng(5))
    noise_b = make_noise(kind, 3, 0.3, 0.15, np.random.default_rng(5))
    for obs in np.random.default_rng(2).normal(size=(30, 7)):
        np.testing.assert_allclose(actor.act(obs, noise_a), agent.act(obs, noise_b), atol=2e-5)
    assert noise_a.uses_lower == (kind == "precision")


def test_numpy_actor_is_a_snapshot_until_rebuilt():
    agent = _trained_agent(shared=False, batch_norm=False)
    actor = NumpyActor(agent.net)
    obs = np.ones(7)
    before = actor.mu(obs).copy()
    with torch.no_grad():
        agent.net.heads.bias.add_(1.0)
    np.testing.assert_array_equal(actor.mu(obs), before)
    np.testing.assert_allclose(NumpyActor(agent.net).mu(obs), agent.mu_and_lower(obs)[0], atol=2e-6)
