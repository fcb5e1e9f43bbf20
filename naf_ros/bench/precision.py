"""``naf-ros bench precision``: how precisely NAF, DDPG and SVG(1)-ER policies hold the
fingertip still.

Why: the paper's qualitative finding (§6.1, Figure 1b) is that on the reacher DDPG's
deterministic policy keeps the tip fluctuating around the target while NAF's slows down and
settles on it (SVG(1)-ER, a stochastic policy evaluated at its mean, is the third point of
comparison). This suite measures that: every method trains on the fixed-target 3-DOF
reacher with the same step budget, seeds and hyperparameters; the trainer's evaluation
records the tip distance and tip speed (successive fingertip positions from the task's
forward kinematics) over the last 10 steps of each evaluation episode. Reported per method:
their mean and spread (within a run, pooled over evaluation episodes, and across seeds), the
final return, and a trace of one final deterministic episode per seed.

Output: ``<out>/precision.json``, ``<out>/precision.png`` (tip distance and speed per method,
seeds as dots; the tip-distance traces) and the learning curves ``precision_<env>.png``.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp

import numpy as np

from naf_ros.bench.common import REACHER_FIXED, aggregate, finish, mark_threshold
from naf_ros.bench.table1 import METHODS, add_method_args, run_config
from naf_ros.config import config_from_dict

TRACE_SEED_OFFSET = 20_000  # the traced episode's start is not one of the evaluation starts


def trace_episode(agent, cfg) -> dict:
    """One deterministic episode of the trained policy: tip distance and speed per step."""
    from naf_ros.core.envs import ActionScaler, make_env, tip_distance
    from naf_ros.core.trainer import control_period, fingertip_position

    env = make_env(cfg.env, cfg.arm)
    scaler = ActionScaler(env.action_space)
    dt = control_period(env)
    obs, _ = env.reset(seed=cfg.train.seed + TRACE_SEED_OFFSET)
    prev = fingertip_position(env, obs)
    dist, speed = [], []
    while True:
        obs, _, terminated, truncated, info = env.step(scaler.to_env(agent.act(obs)))
        tip = fingertip_position(env, obs)
        dist.append(tip_distance(info, obs))
        speed.append(float(np.linalg.norm(tip - prev) / dt))
        prev = tip
        if terminated or truncated:
            break
    env.close()
    return {"tip_distance": dist, "tip_speed": speed, "dt": dt}


def train_and_trace(job: dict) -> dict:
    """Worker: one training run, then one traced episode of its final policy."""
    from naf_ros.core.trainer import Trainer

    cfg = config_from_dict(job["config"])
    trainer = Trainer(cfg, run_dir=job["run_dir"], log=None)
    summary = trainer.train()
    summary["label"] = job["label"]
    summary["trace"] = trace_episode(trainer.agent, cfg)
    return summary


def run_traced(jobs: list[dict], workers: int) -> list[dict]:
    if workers <= 1:
        return [train_and_trace(j) for j in jobs]
    with mp.get_context("spawn").Pool(workers) as pool:
        return pool.map(train_and_trace, jobs, chunksize=1)


def precision_stats(runs: list[dict]) -> dict:
    """Mean and spread of the last-10-step tip distance and speed over a method's seeds."""
    out: dict = {}
    for name in ("tip_distance", "tip_speed"):
        means = [r["final_eval_precision"][f"{name}_mean"] for r in runs]
        stds = [r["final_eval_precision"][f"{name}_std"] for r in runs]
        means = np.asarray([np.nan if m is None else m for m in means], float)
        stds = np.asarray([np.nan if s is None else s for s in stds], float)
        out[name] = {
            "mean": float(np.nanmean(means)) if np.isfinite(means).any() else None,
            "std_within_run": float(np.nanmean(stds)) if np.isfinite(stds).any() else None,
            "std_across_seeds": float(np.nanstd(means)) if np.isfinite(means).any() else None,
            "per_seed": means.tolist(),
        }
    out["steps"] = runs[0]["final_eval_precision"]["steps"]
    out["unit"] = {"tip_distance": "m", "tip_speed": "m/s"}
    return out


def plot_precision(methods: dict, results: list[dict], path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    labels = list(methods)
    for ax, name, unit in (
        (axes[0], "tip_distance", "m"),
        (axes[1], "tip_speed", "m/s"),
    ):
        for i, label in enumerate(labels):
            s = methods[label]["precision"][name]
            if s["mean"] is None:
                continue
            ax.bar(i, s["mean"], yerr=s["std_within_run"], capsize=4, alpha=0.6)
            ax.scatter(np.full(len(s["per_seed"]), i), s["per_seed"], color="k", s=12, zorder=3)
        ax.set_xticks(range(len(labels)), labels)
        steps = next(iter(methods.values()))["precision"]["steps"]
        ax.set_title(f"{name.replace('_', ' ')}, last {steps} steps ({unit})")
        ax.grid(alpha=0.3, axis="y")
    ax = axes[2]
    colors = {label: f"C{i}" for i, label in enumerate(labels)}
    for r in results:
        d = r["trace"]["tip_distance"]
        ax.plot(np.arange(1, len(d) + 1), d, color=colors[r["label"]], lw=1, alpha=0.8)
    for label in labels:
        ax.plot([], [], color=colors[label], label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("tip distance (m)")
    ax.set_title("final policy, one episode per seed")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def bench_precision(args: argparse.Namespace) -> dict:
    train = {
        "episodes": args.episodes,
        "eval_every": args.eval_every,
        **({"max_steps": args.steps} if args.steps else {}),
    }
    jobs = []
    for method in args.methods:
        for seed in range(args.seeds):
            jobs.append(
                {
                    "config": run_config(args, method, REACHER_FIXED, seed, train),
                    "label": METHODS[method],
                    "run_dir": str(args.out / "runs" / "precision" / method / f"s{seed}"),
                }
            )
    results = run_traced(jobs, args.workers)
    variants = aggregate(results)
    mark_threshold(variants)
    for label, v in variants.items():
        runs = [r for r in results if r["label"] == label]
        v["precision"] = precision_stats(runs)
        v["traces"] = {str(r["seed"]): r["trace"] for r in runs}
    payload = {
        "suite": "precision",
        "budget": {"episodes": args.episodes, "max_steps": args.steps, "seeds": args.seeds},
        "envs": {REACHER_FIXED: variants},
    }
    print(f"\n{REACHER_FIXED}: last {variants[next(iter(variants))]['precision']['steps']} steps")
    print(f"{'method':9s} {'final return':>12s} {'tip (m)':>17s} {'tip speed (m/s)':>17s}")
    for label, v in variants.items():
        d, s = v["precision"]["tip_distance"], v["precision"]["tip_speed"]
        print(
            f"{label:9s} {v['final_eval_return']:12.3f} "
            f"{_pm(d['mean'], d['std_within_run']):>17s} {_pm(s['mean'], s['std_within_run']):>17s}"
        )
    title = " vs ".join(METHODS[m] for m in args.methods)
    out = finish("precision", args.out, payload, f"Precision: {title}")
    plot_precision(variants, results, args.out / "precision.png")
    return out


def _pm(mean, std) -> str:
    if mean is None:
        return "n/a"
    return f"{mean:.4f} ± {std:.4f}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="naf-ros bench precision",
        description="NAF vs DDPG vs SVG(1)-ER on the fixed-target 3-DOF reacher: tip distance "
        "and tip speed over the last 10 steps of the evaluation episodes (same budget and "
        "seeds).",
    )
    add_method_args(parser)
    parser.add_argument("--episodes", type=int, default=200, help="training episodes per run")
    parser.add_argument("--steps", type=int, default=None, help="step budget (caps episodes)")
    parser.add_argument("--eval-every", type=int, default=10, help="episodes between evaluations")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    bench_precision(args)
    print(f"\nwrote {args.out}/")
    return 0
