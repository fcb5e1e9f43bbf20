"""Learning with fixed seeds: determinism, a learning smoke test, and the update accounting
that makes the imagination benchmark's baseline fair.

What CI cannot afford, measured (2x64 networks, seeds 0-2), and so left to benchmarks:
- NAF on the *random-target* reacher against target-blind policies on the same 10
  evaluation episodes: after 80 episodes (~17.5k updates, about a minute of CPU per seed) it
  scores -8.0 / -9.1 / -9.9 against the best constant action's -10.0 / -10.9 / -11.4, but
  its final tip distance (8 / 11 / 16 cm) is not clearly below the constant's (14 / 14 /
  15 cm) on every seed, and at 120 episodes seed 1 is still only 0.5 ahead (-10.4 vs
  -10.9). The claim is ``naf-ros bench naf --envs NafRos/Reacher3DOF-v0``,
  which reports the zero and best-constant baselines next to the learned policy.
- Imagination rollouts against plain NAF with the *same updates per real step* and the same
  switch-off (``naf-ros bench model-based --variants "NAF+ImR (linear)" naf_equal_updates``):
  with config/train_reacher_imr.yaml's settings over 20 episodes ImR leads on seed 0 (eval
  -3.11 vs -5.29 at episode 15) and trails on seed 1 (-5.65 vs -5.12), so at CI scale there
  is no robust speed-up to assert. Here we check that the baseline's budget equals ImR's.
"""

import json

import numpy as np

from naf_ros.bench.learning import EqualUpdatesTrainer, equal_updates_schedule
from naf_ros.config import config_from_dict
from naf_ros.core.trainer import Trainer


def _config(episodes, seed=0, **sections):
    base = {
        "env": {"id": "NafRos/Reacher3DOFFixed-v0"},
        "agent": {"hidden": [64, 64], "warmup_steps": 500},
        "exploration": {"kind": "ou", "scale": 0.3},
        "train": {
            "episodes": episodes,
            "eval_every": 10,
            "eval_episodes": 3,
            "seed": seed,
            "progress": False,
        },
    }
    for key, values in sections.items():
        base.setdefault(key, {}).update(values)
    return config_from_dict(base)


def test_same_seed_gives_the_same_run(tmp_path):
    runs = []
    for i in range(2):
        cfg = _config(
            4, seed=7, agent={"warmup_steps": 60, "updates_per_step": 2}, train={"eval_every": 2}
        )
        summary = Trainer(cfg, run_dir=tmp_path / f"r{i}", log=None).train()
        runs.append(((tmp_path / f"r{i}" / "metrics.csv").read_text(), summary))
    strip = [r[0].splitlines() for r in runs]
    # wall-clock columns differ; everything learned must not.
    cols = strip[0][0].split(",")
    keep = [i for i, c in enumerate(cols) if c not in ("updates_per_s", "wall_s")]
    rows = [[[line.split(",")[i] for i in keep] for line in lines] for lines in strip]
    assert rows[0] == rows[1]
    assert runs[0][1]["eval_curve"] == runs[1][1]["eval_curve"]


def test_naf_learns_the_fixed_target_reacher(tmp_path):
    """A smoke test of the whole learning loop, not proof of learning from observations:
    one open-loop action sequence reaches the single target, so a policy that ignored its
    input could pass. Budget: 40 episodes (2,000 steps, 5 updates/step); a random policy
    scores about -13.5."""
    cfg = _config(40)
    summary = Trainer(cfg, run_dir=tmp_path, log=None).train()
    curve = summary["eval_curve"]
    print("eval returns", curve["return"], "tip", curve["tip_distance"])
    assert curve["return"][0] < -9.0  # it starts out bad ...
    assert summary["final_eval_return"] >= -5.0  # ... and learns to reach
    # The tip: at most half the untrained policy's distance. (An absolute 8 cm bound was tuned
    # to one trajectory; the fused update's float rounding moved the last evaluation from
    # 6.9 cm at episode 30 to 10 cm at 40 with the return unchanged, -4.1 vs -4.3.)
    assert summary["final_eval_tip_distance"] < 0.5 * curve["tip_distance"][0]
    for name in (
        "config.yaml",
        "metrics.csv",
        "learning_curve.png",
        "checkpoint.pt",
        "summary.json",
    ):
        assert (tmp_path / name).is_file(), name
    assert json.loads((tmp_path / "summary.json").read_text())["episodes"] == 40
    assert summary["skipped_updates"] == 0
    assert np.isfinite(summary["updates_per_s"])


def test_equal_updates_baseline_does_what_imagination_does_per_real_step(tmp_path):
    """``naf_equal_updates`` (the fair baseline for imagination rollouts) must update as often
    per real step as ImR: I + I·l from the first model until the switch-off, I otherwise. It
    may lead by the few steps between ImR's first model and its first rollout, never lag."""
    I, length, every = 2, 3, 5  # noqa: E741  (the paper's name)
    data = {
        "agent": {"hidden": [16, 16], "warmup_steps": 60, "updates_per_step": I, "batch_size": 16},
        "model_based": {
            "enabled": True,
            "episodes_per_fit": 2,
            "rollout_length": length,
            "rollout_every": every,
            "rollout_batch": 6,  # one rollout fills a minibatch of R_f
            "imagination_off_after": 5,
        },
    }
    cfg = _config(7, **data)
    imr = Trainer(cfg, run_dir=tmp_path / "imr", log=None)
    imr.train()
    schedule = equal_updates_schedule(cfg.to_dict())
    assert schedule == {"extra": I * length, "start": 2, "stop": 5}
    plain = cfg.to_dict()
    plain["model_based"]["enabled"] = False
    naf = EqualUpdatesTrainer(
        config_from_dict(plain), **schedule, run_dir=tmp_path / "naf", log=None
    )
    naf.train()
    assert naf.model_based is None and imr.learner.counters.imagined > 0
    assert naf.counters.env_steps == imr.counters.env_steps == 350
    lead = naf.agent.updates - imr.agent.updates
    assert 0 <= lead <= (every - 1) * I * length, lead
    per_episode = [
        np.diff([0] + [row["updates"] for row in t.metrics.rows]).tolist() for t in (imr, naf)
    ]
    full = 50 * I * (1 + length)
    assert per_episode[1] == [0, 41 * I, full, full, full, 50 * I, 50 * I]  # warm at step 60
    assert per_episode[0][3:] == per_episode[1][3:]  # the same once ImR imagines every step
    assert cfg.agent.updates_per_step == I  # the schedule worked on its own copy
