"""The agent factory: ``agent.algorithm`` picks NAF, DDPG or SVG(1)-ER behind one interface.

Why a factory: the learner, the trainer and the policy node only use what both agents share
(``update``, ``act``, ``mu_batch``, ``state_dict``, ``weight_arrays`` ...), so the one place
that knows which class to build is here, and the comparison runs on identical plumbing.
"""

from __future__ import annotations

from naf_ros.config import AgentConfig, ConfigError
from naf_ros.core.ddpg import DDPGAgent
from naf_ros.core.naf import NAFAgent
from naf_ros.core.svg import SVGAgent

ALGORITHMS = ("naf", "ddpg", "svg1er")


def make_agent(
    cfg: AgentConfig, obs_dim: int, act_dim: int, seed: int = 0, device: str = "cpu"
) -> NAFAgent | DDPGAgent | SVGAgent:
    """A fresh agent of ``cfg.algorithm`` (the config schema has validated the name) that
    trains on ``device`` (the learner passes ``agent.device``; acting copies stay on CPU)."""
    if cfg.algorithm == "naf":
        return NAFAgent(obs_dim, act_dim, cfg, seed=seed, device=device)
    if cfg.algorithm == "ddpg":
        if str(device) != "cpu":
            raise ConfigError(f"agent.device: {device!r}; DDPG trains on the CPU only (so far)")
        return DDPGAgent(obs_dim, act_dim, cfg, seed=seed)
    if cfg.algorithm == "svg1er":
        if str(device) != "cpu":
            raise ConfigError(f"agent.device: {device!r}; SVG(1)-ER trains on the CPU only")
        return SVGAgent(obs_dim, act_dim, cfg, seed=seed)
    raise ValueError(
        f"agent.algorithm: unknown {cfg.algorithm!r}; allowed: {', '.join(ALGORITHMS)}"
    )
