"""Interrupting training changes nothing: resume and offline training equal the straight run.

A checkpoint that misses one piece of state (an RNG, the noise process, the environment's
seeding, the model side of Algorithm 2, the episode index) still "resumes" - counts go up and
the loss falls - yet the run drifts from the one that was never stopped. Comparing the learned
numbers row for row is what catches it.
"""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from naf_ros.config import config_from_dict
from naf_ros.core.trainer import Trainer

# metrics.csv columns that depend on what was learned (not on the wall clock)
LEARNING_COLUMNS = (
    "episode",
    "env_steps",
    "return",
    "tip_distance",
    "eval_return",
    "eval_tip_distance",
    "loss",
    "updates",
    "skipped_updates",
    "controller",
)


def _config(episodes: int, env: str, mb: dict | None = None, exploration: str = "ou"):
    return config_from_dict(
        {
            "env": {"id": env},
            "agent": {"hidden": [16, 16], "warmup_steps": 60, "updates_per_step": 2},
            "exploration": {"kind": exploration, "scale": 0.3},
            "model_based": mb or {"enabled": False},
            "train": {
                "episodes": episodes,
                "eval_every": 2,
                "eval_episodes": 1,
                "seed": 3,
                "progress": False,
            },
        }
    )


def _learning_rows(run_dir) -> list[list[str]]:
    with (run_dir / "metrics.csv").open() as fh:
        return [[row[c] for c in LEARNING_COLUMNS] for row in csv.DictReader(fh)]


def _weights(trainer: Trainer) -> dict[str, np.ndarray]:
    return trainer.agent.weight_arrays()


MODEL_BASED = {
    # Fits after episodes 2, 4, 6; imagination from the first model on, iLQG episodes mixed
    # in (they draw from the shared RNG) and switched off after episode 5.
    "enabled": True,
    "episodes_per_fit": 2,
    "rollout_length": 3,
    "rollout_every": 5,
    "rollout_batch": 4,
    "imagination_updates_per_step": 2,
    "imagination_off_after": 5,
    "ilqg_probability": 0.5,
}


@pytest.mark.parametrize(
    "env, mb, exploration",
    [
        # random targets (the env's own generator) and precision noise (its adaptive scale)
        ("NafRos/Reacher3DOF-v0", None, "precision"),
        # Algorithm 2: fitted models, imagination, iLQG episodes, the switch-off
        ("NafRos/Reacher3DOFFixed-v0", MODEL_BASED, "ou"),
        # the -NN model is the fitter's state, not the learner's (the true model goes the
        # same way through ModelBased.restore_model, and is stateless)
        ("NafRos/Reacher3DOFFixed-v0", {**MODEL_BASED, "model": "nn"}, "ou"),
    ],
    ids=["naf", "model-based", "nn"],
)
def test_resumed_run_equals_the_uninterrupted_run(tmp_path, env, mb, exploration):
    n = 8
    straight = Trainer(_config(n, env, mb, exploration), run_dir=tmp_path / "straight", log=None)
    straight.train()

    first = Trainer(_config(n // 2, env, mb, exploration), run_dir=tmp_path / "split", log=None)
    first.train()
    torch.manual_seed(12345)  # whatever ran in between must not matter
    np.random.seed(12345)
    second = Trainer(_config(n, env, mb, exploration), run_dir=tmp_path / "split", log=None)
    summary = second.train(resume=True)

    expected = _learning_rows(tmp_path / "straight")
    assert len(expected) == n
    assert _learning_rows(tmp_path / "split") == expected
    assert summary["episodes"] == n and summary["eval_curve"]["episode"] == list(range(2, n + 1, 2))
    a, b = _weights(straight), _weights(second)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    if mb is not None:
        assert second.model_based.fits == straight.model_based.fits == n // 2
        assert second.learner.counters.imagined == straight.learner.counters.imagined > 0
        assert summary["model_based"]["ilqg_episodes"] == straight.model_based.ilqg_episodes > 0


def test_offline_training_from_a_recorded_bag_equals_the_same_updates_in_memory(tmp_path):
    """``naf-ros train`` records a bag; ``naf-ros train-offline`` on it must do exactly what
    ``updates`` minibatch steps on the trainer's own replay buffer do with the same seed: the
    bag carries every transition bit for bit (as float32 in R) and the offline loop adds
    nothing of its own (no extra draws from the generator, no other initialisation)."""
    from naf_ros.cli import main as cli
    from naf_ros.core.checkpoint import load_checkpoint
    from naf_ros.core.naf import NAFAgent
    from naf_ros.core.replay import ReplayBuffer

    sets = {
        "env.id": "NafRos/Reacher3DOF-v0",
        "agent.hidden": "[16,16]",
        "agent.batch_size": "32",
        "agent.warmup_steps": "100",
        "agent.updates_per_step": "1",
        "train.episodes": "4",
        "train.eval_every": "4",
        "train.eval_episodes": "1",
        "train.progress": "false",
        "train.seed": "5",
    }
    args = [a for k, v in sets.items() for a in ("-s", f"{k}={v}")]
    online = tmp_path / "online"
    assert cli(["train", "--run-dir", str(online), *args, "-s", "bag.record=rec"]) == 0
    updates = 300
    offline = tmp_path / "offline"
    assert cli(["train-offline", str(online / "rec"), "--updates", str(updates),
                "--run-dir", str(offline), *args]) == 0  # fmt: skip

    # The reference: the trainer's replay buffer, the agent and generator seeded alike.
    cfg = config_from_dict({"agent": {"hidden": [16, 16], "batch_size": 32}, "train": {"seed": 5}})
    trained = load_checkpoint(online / "checkpoint.pt")["learner"]["replay"]
    replay = ReplayBuffer(13, 3, cfg.agent.replay_capacity)
    for i in range(len(trained["reward"])):
        replay.add(*(trained[k][i] for k in ("obs", "action", "reward", "next_obs", "terminal")))
    assert len(replay) == 200
    agent = NAFAgent(13, 3, cfg.agent, seed=cfg.train.seed)
    rng = np.random.default_rng(cfg.train.seed)
    for _ in range(updates):
        agent.update(replay.sample(cfg.agent.batch_size, rng))

    got = load_checkpoint(offline / "checkpoint.pt")["learner"]
    assert got["agent"]["updates"] == updates == agent.updates
    for part in ("net", "target"):
        mine = getattr(agent, part).state_dict()
        theirs = got["agent"][part]
        assert set(mine) == set(theirs)
        for name, value in mine.items():
            assert torch.equal(value, theirs[name]), (part, name)
    # and the offline buffer is the trainer's, row for row
    for key in ("obs", "action", "reward", "next_obs", "terminal"):
        assert np.array_equal(got["replay"][key], trained[key]), key
