"""Learning with fixed seeds: determinism, learning that a target-blind policy cannot fake,
and imagination rollouts against plain NAF given the same updates per real step.

The comparisons run the benchmarks' own configs (``naf-ros bench model-based``) at CI scale;
the full-length figures are in BENCHMARKS.md.
"""

import csv
import json
from pathlib import Path

import numpy as np

from naf_ros.bench.learning import (
    EQUAL_UPDATES,
    EqualUpdatesTrainer,
    build_parser,
    equal_updates_schedule,
    model_based_jobs,
    train_job,
)
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


def _eval_returns(run_dir) -> dict[int, float]:
    with open(run_dir / "metrics.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["eval_return"] != "nan"]
    return {int(r["episode"]): float(r["eval_return"]) for r in rows}


def test_imagination_beats_naf_given_the_same_updates_per_real_step(tmp_path):
    """ImR against the fair control: plain NAF doing ImR's I + I_f updates per real step from
    R (same schedule, same seeds), so a lead can only come from the model's imagined data.

    The benchmark's command at half length, seeds 0 and 1 (80 episodes, 3 seeds, are in
    BENCHMARKS.md: ImR within 5 % of the best at episode 30, the control not within 80).
    Measured per seed on this command, mean evaluation return over episodes 20-40: ImR
    -2.66 / -2.59 against -3.23 / -3.22 (seed 2, not run here: -2.78 vs -3.66). Asserted: a
    lead of at least 0.3 on each seed, and ImR near the task's plateau (about -2.5; a random
    policy scores about -13.5), with the two runs' update counts equal to within ImR's
    documented start-up lead.
    """
    args = build_parser("test").parse_args(
        ["model-based", "--variants", "NAF+ImR (linear)", EQUAL_UPDATES, "--seeds", "2",
         "--episodes", "40", "--hidden", "64,64", "--warmup-steps", "100",
         "--rollout-length", "10", "--imagination-updates", "10",
         "--imagination-off-after", "40", "--out", str(tmp_path)]
    )  # fmt: skip
    results = {}
    for job in model_based_jobs(args):
        summary = train_job(job)
        seed = job["config"]["train"]["seed"]
        results[(job["label"], seed)] = (summary, _eval_returns(Path(job["run_dir"])))
    for seed in (0, 1):
        (imr, imr_curve), (naf, naf_curve) = (
            results[("NAF+ImR (linear)", seed)],
            results[(EQUAL_UPDATES, seed)],
        )
        window = [e for e in imr_curve if 20 <= e <= 40]
        assert window == [20, 25, 30, 35, 40], imr_curve
        imr_mean = float(np.mean([imr_curve[e] for e in window]))
        naf_mean = float(np.mean([naf_curve[e] for e in window]))
        print(f"seed {seed}: episodes 20-40 ImR {imr_mean:.2f}, NAF (equal updates) "
              f"{naf_mean:.2f}; updates {imr['updates']} vs {naf['updates']}")  # fmt: skip
        assert imr_mean > naf_mean + 0.3, (seed, imr_curve, naf_curve)
        assert imr_mean > -2.9, (seed, imr_curve)
        assert 0 <= naf["updates"] - imr["updates"] <= 9 * 5 * 10, (naf["updates"], imr["updates"])


def _best_fixed_point_distance(targets: np.ndarray, half_width: float = 0.3) -> float:
    """min over points p of the mean |p - t_i|: what a tip that ends at one point whatever the
    target (a constant or open-loop policy, or any policy blind to the target from one start)
    achieves at best. Brute force on a 2 mm grid, minus the grid's worst-case error, so it is a
    lower bound."""
    step = 0.002
    axis = np.arange(-half_width, half_width + step / 2, step)
    px, py = np.meshgrid(axis, axis, indexing="ij")
    points = np.stack([px.ravel(), py.ravel()], axis=1)
    mean = np.linalg.norm(points[:, None, :] - targets[None, :, :], axis=-1).mean(axis=1)
    return float(mean.min()) - step / np.sqrt(2)


def test_naf_learns_random_targets_beyond_any_target_blind_policy(tmp_path):
    """Gymnasium Reacher-v5: a new random target every episode, so reaching it needs the
    target from the observation. 8,000 steps (160 episodes, 2x64, I = 5, the settings of
    config/train_reacher_v5.yaml otherwise), seeds 0 and 1, evaluated on 10 targets.

    Two oracles the learned policy must beat on the same 10 evaluation episodes:
    - the best of 25 constant actions (each joint in {-1, -0.5, 0, 0.5, 1}), scored by the
      same evaluation code (here the zero action: return -11.3 / -9.7, tip 23 / 19 cm);
    - the best single end point for the tip (the targets' geometric median, computed from the
      targets themselves): no policy that ends at one place whatever the target can do better.
    Measured on this command: return -6.37 / -6.19, final tip 6.5 / 7.8 cm.
    """
    import gymnasium as gym

    from naf_ros.bench.learning import target_blind_baselines

    for seed in (0, 1):
        data = {
            "env": {"id": "Reacher-v5"},
            "agent": {"hidden": [64, 64], "lr": 5e-4, "gamma": 0.99},
            "exploration": {"kind": "gaussian", "scale": 0.1},
            "train": {"episodes": 160, "eval_every": 20, "eval_episodes": 10, "seed": seed,
                      "progress": False},
        }  # fmt: skip
        summary = Trainer(config_from_dict(data), run_dir=tmp_path / f"s{seed}", log=None).train()
        blind = target_blind_baselines(data)["best_constant"]
        env = gym.make("Reacher-v5")
        targets = []
        for i in range(10):  # the evaluation episodes' seeds (Trainer.evaluate)
            env.reset(seed=seed + 10_000 + i)
            targets.append(env.unwrapped.get_body_com("target")[:2].copy())
        env.close()
        bound = _best_fixed_point_distance(np.asarray(targets))
        ret, tip = summary["final_eval_return"], summary["final_eval_tip_distance"]
        print(f"seed {seed}: return {ret:.2f} (best constant {blind['return']:.2f}), tip "
              f"{100 * tip:.1f} cm (best constant {100 * blind['tip_distance']:.1f}, best fixed "
              f"end point {100 * bound:.1f})")  # fmt: skip
        assert ret > blind["return"] + 2.5, (ret, blind)
        assert tip < 0.5 * blind["tip_distance"], (tip, blind)
        assert tip < bound, (tip, bound)
