"""Offline NAF training: updates from a filled replay buffer only, no environment.

Why a separate loop: recorded experience (rosbag2 bags, :mod:`naf_ros.bag`) can pre-train a
policy before any time on the arm. This module takes the buffer already filled, so the core
needs to know nothing of where the transitions came from. The checkpoint has
:class:`~naf_ros.core.trainer.Trainer`'s layout, so ``naf-ros train --resume`` (or a policy
node) continues online from the offline result.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from naf_ros.config import Config
from naf_ros.core.checkpoint import save_checkpoint
from naf_ros.core.learner import Learner
from naf_ros.core.noise import make_noise
from naf_ros.core.replay import ReplayBuffer
from naf_ros.core.trainer import Counters, checkpoint_payload

__all__ = ["train_offline"]


def train_offline(
    cfg: Config,
    replay: ReplayBuffer,
    updates: int,
    run_dir: str | Path,
    log: Callable[[str], None] | None = None,
    provenance: Mapping[str, Any] | None = None,
) -> dict:
    """``updates`` NAF updates on minibatches from ``replay``; checkpoint and summary to
    ``run_dir``. ``provenance`` (e.g. the bags read) heads the summary. ValueError when
    ``updates`` is not a positive integer or the buffer holds less than one minibatch.
    """
    if isinstance(updates, bool) or not isinstance(updates, int) or updates <= 0:
        raise ValueError(f"updates: {updates!r} must be an integer > 0")
    n = len(replay)
    if n < cfg.agent.batch_size:
        raise ValueError(f"{n} transitions in the replay buffer; need at least agent.batch_size")
    obs_dim, act_dim = replay.obs_dim, replay.act_dim
    torch.set_num_threads(cfg.train.torch_threads)
    rng = np.random.default_rng(cfg.train.seed)
    learner = Learner(cfg, obs_dim, act_dim, horizon=None, rng=rng)
    learner.replay = replay
    agent = learner.agent
    losses = []
    t0 = time.perf_counter()
    for i in range(updates):
        losses.append(agent.update(replay.sample(cfg.agent.batch_size, rng)))
        if log and (i + 1) % max(1, updates // 10) == 0:
            recent = [v for v in losses[-max(1, updates // 10) :] if np.isfinite(v)]
            log(f"offline update {i + 1}/{updates} | loss {np.mean(recent) if recent else 'nan'}")
    wall = time.perf_counter() - t0
    ex = cfg.exploration
    noise = make_noise(ex.kind, act_dim, ex.scale, ex.ou_theta, rng, ex.precision_ema)
    counters = Counters(update_seconds=wall, extra={"offline_updates": updates})
    run_dir = Path(run_dir)
    ckpt = run_dir / "checkpoint.pt"
    save_checkpoint(ckpt, checkpoint_payload(cfg, learner, counters, noise))
    k = max(1, updates // 10)
    arr = np.asarray(losses, dtype=float)
    summary = {
        **(provenance or {}),
        "transitions": n,
        "updates": agent.updates,
        "skipped_updates": agent.skipped_updates,
        "loss_first": float(np.nanmean(arr[:k])) if np.isfinite(arr[:k]).any() else None,
        "loss_last": float(np.nanmean(arr[-k:])) if np.isfinite(arr[-k:]).any() else None,
        "updates_per_s": updates / max(wall, 1e-9),
        "checkpoint": str(ckpt),
    }
    (run_dir / "offline_summary.json").write_text(json.dumps(summary, indent=2))
    return summary
