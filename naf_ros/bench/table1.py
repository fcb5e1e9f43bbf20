"""``naf-ros bench table1``: the paper's Table 1 comparison, NAF against DDPG and SVG(1)-ER,
N seeds each.

Why: the paper's headline claim is that NAF reaches a good policy in fewer episodes than
DDPG with like-for-like networks (two hidden layers per output, I = 5 updates of every
network per real step, Adam, soft targets). All run here on the same trainer, learner,
replay and exploration code (``agent.algorithm``), so any difference is the algorithm's.
SVG(1)-ER explores with its own Gaussian policy (``exploration.kind: policy``, whose density
its importance weights need) where the others take ``--exploration``.

Reported per task: the paper's measure (the first evaluation at which a method's
seed-averaged curve is within 5% of the best seed-averaged return of *any* method), final
and best evaluation returns, and one PNG of learning curves per task with every method's
seed mean and a min-max band over seeds, by episode and by real step (``*_steps.png``,
:func:`step_curves`, with the same 5% measure in steps). Each task has a step budget flag;
an episode-based run stops at the budget (``train.max_steps``), which also bounds tasks
whose episodes end early (InvertedDoublePendulum).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from naf_ros.bench.common import aggregate, finish, mark_threshold, run_jobs

# name -> (Gymnasium id, default step budget, default evaluation period in episodes)
TASKS: dict[str, tuple[str, int, int]] = {
    "reacher3-fixed": ("NafRos/Reacher3DOFFixed-v0", 10_000, 10),
    "reacher3-random": ("NafRos/Reacher3DOF-v0", 50_000, 20),
    "reacher-v5": ("Reacher-v5", 50_000, 20),
    "idp-v5": ("InvertedDoublePendulum-v5", 100_000, 20),  # ends early when it falls
    "halfcheetah-v5": ("HalfCheetah-v5", 300_000, 5),
    "swimmer-v5": ("Swimmer-v5", 300_000, 5),
}
ENDS_EARLY = {"InvertedDoublePendulum-v5"}  # terminal states: episodes shorter than the limit
DEFAULT_TASKS = ["reacher3-fixed", "reacher3-random", "reacher-v5"]
METHODS = {"naf": "NAF", "ddpg": "DDPG", "svg1er": "SVG(1)-ER"}


def budget_episodes(env_id: str, steps: int) -> int:
    """Episodes a step budget buys when episodes run to the time limit: the final episode is
    then the last one and gets its evaluation. Tasks that end early (a pendulum falling) are
    stopped by ``train.max_steps`` instead, after the last periodic evaluation."""
    import gymnasium as gym

    import naf_ros.envs  # noqa: F401  (registers the 3-DOF reachers)

    spec = gym.spec(env_id)
    limit = spec.max_episode_steps
    if not limit or env_id in ENDS_EARLY:
        return steps
    return max(1, -(-steps // limit))


def hidden_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",")]


def add_method_args(parser: argparse.ArgumentParser, seeds: bool = True) -> None:
    """Options every comparison suite shares: what runs, how many seeds (``seeds=False``: the
    suite names its seeds itself), the hyperparameters every method gets alike."""
    parser.add_argument("--out", type=Path, default=Path("bench_results"))
    if seeds:
        parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--methods", nargs="+", choices=list(METHODS), default=list(METHODS),
        help="algorithms to compare",
    )  # fmt: skip
    parser.add_argument("--hidden", type=hidden_list, default=[200, 200])
    parser.add_argument(
        "--lr", type=float, default=None, help="Adam lr (DDPG: the critic's; SVG: V and models)"
    )
    parser.add_argument("--actor-lr", type=float, default=None, help="DDPG/SVG actor lr (None: lr)")
    parser.add_argument(
        "--exploration", choices=["ou", "gaussian"], default="ou",
        help="NAF's and DDPG's exploration (SVG(1)-ER samples its own policy)",
    )  # fmt: skip
    parser.add_argument("--noise", type=float, default=0.3, help="exploration scale")
    parser.add_argument("--updates-per-step", type=int, default=None, help="I (default 5)")
    parser.add_argument("--warmup-steps", type=int, default=None)
    parser.add_argument("--eval-episodes", type=int, default=5)


def run_config(args: argparse.Namespace, method: str, env_id: str, seed: int, train: dict) -> dict:
    """One run's config: the same everything for every method but ``agent.algorithm`` (and
    SVG(1)-ER's exploration, its own policy)."""
    agent: dict = {"algorithm": method, "hidden": list(args.hidden)}
    for key, value in (
        ("lr", args.lr),
        ("actor_lr", args.actor_lr),
        ("updates_per_step", args.updates_per_step),
        ("warmup_steps", args.warmup_steps),
    ):
        if value is not None:
            agent[key] = value
    return {
        "env": {"id": env_id},
        "agent": agent,
        "exploration": {
            "kind": "policy" if method == "svg1er" else args.exploration,
            "scale": args.noise,
        },
        "train": {
            **train,
            "seed": seed,
            "eval_episodes": args.eval_episodes,
            "progress": False,
        },
    }


def seed_bands(results: list[dict]) -> dict[str, dict]:
    """Per label: the episodes and min/max of the seeds' evaluation curves (the band)."""
    out = {}
    for label in dict.fromkeys(r["label"] for r in results):
        runs = [r for r in results if r["label"] == label]
        curves = [np.asarray(r["eval_curve"]["return"], float) for r in runs]
        n = min(len(c) for c in curves)
        if n == 0:
            out[label] = {"episodes": [], "min": [], "max": []}
            continue
        stack = np.stack([c[:n] for c in curves])
        out[label] = {
            "episodes": runs[0]["eval_curve"]["episode"][:n],
            "min": stack.min(0).tolist(),
            "max": stack.max(0).tolist(),
        }
    return out


def step_curves(results: list[dict], budget: int, points: int = 50) -> dict:
    """Evaluation returns against *real steps*, per method, and the paper's 5% measure on them.

    Why: episodes are the paper's axis, but where episodes end early (a balancing task) a
    method that balances longer spends its steps in fewer episodes, so per-episode curves
    compare unequal amounts of experience. Each seed's curve is held from one evaluation to
    the next on a common grid of real steps (its last measured policy until the next
    measurement); the seed mean exists where every seed has been evaluated once.
    """
    grid = np.linspace(budget / points, budget, points).round().astype(int)
    out: dict = {"steps": grid.tolist(), "methods": {}}
    for label in dict.fromkeys(r["label"] for r in results):
        held = []
        for r in (r for r in results if r["label"] == label):
            at = np.asarray(r["eval_curve"].get("env_steps", []), dtype=float)
            ret = np.asarray(r["eval_curve"]["return"], dtype=float)
            idx = np.searchsorted(at, grid, side="right") - 1  # last evaluation at or before
            row = np.full(grid.shape, np.nan)
            if ret.size:
                row = np.where(idx >= 0, ret[np.maximum(idx, 0)], np.nan)
            held.append(row)
        stack = np.stack(held)
        out["methods"][label] = {
            "mean": stack.mean(0).tolist(),  # NaN until every seed has an evaluation
            "min": stack.min(0).tolist(),
            "max": stack.max(0).tolist(),
        }
    means = [np.asarray(m["mean"]) for m in out["methods"].values()]
    best = max((float(np.nanmax(m)) for m in means if np.isfinite(m).any()), default=np.nan)
    threshold = best - 0.05 * abs(best)
    out["threshold"] = threshold
    for m in out["methods"].values():
        hits = [int(s) for s, v in zip(grid, m["mean"]) if np.isfinite(v) and v >= threshold]
        m["steps_to_threshold"] = hits[0] if hits else None
    return out


def _band_figure(series: list[tuple], threshold: float | None, xlabel: str, path: Path,
                 title: str) -> None:  # fmt: skip
    """One figure: per method (label, x, mean, band-or-None), the 5% line, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, x, mean, band in series:
        (line,) = ax.plot(x, mean, label=label, lw=1.6)
        if band is not None:
            bx, lo, hi = band
            ax.fill_between(bx, lo, hi, alpha=0.2, color=line.get_color(), lw=0)
    if threshold is not None and np.isfinite(threshold):
        ax.axhline(threshold, color="grey", ls="--", lw=1, label="within 5% of best")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("evaluation return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_step_bands(curves: dict, path: Path, title: str) -> None:
    """The step-axis twin of :func:`plot_bands`."""
    x = curves["steps"]
    series = [(lab, x, m["mean"], (x, m["min"], m["max"])) for lab, m in curves["methods"].items()]
    xlabel = "real steps (each seed's last evaluation held to the next)"
    _band_figure(series, curves["threshold"], xlabel, path, title)


def plot_bands(variants: dict, bands: dict, path: Path, title: str) -> None:
    """Seed-mean curve per method with a min-max band over seeds and the 5% threshold."""
    series = []
    for label, v in variants.items():
        if not v["episodes"]:
            continue
        band = bands.get(label)
        spread = (band["episodes"], band["min"], band["max"]) if band else None
        multi = len(v["seeds"]) > 1
        series.append((label, v["episodes"], v["mean_eval_return"], spread if multi else None))
    threshold = next(iter(variants.values()), {}).get("threshold")
    _band_figure(series, threshold, "episode", path, title)


def no_none(results: list[dict]) -> list[dict]:
    """Tasks without a fingertip have no tip distance: NaN, so seed means stay numeric."""
    for r in results:
        if r.get("final_eval_tip_distance") is None:
            r["final_eval_tip_distance"] = float("nan")
        if r.get("final_eval_return") is None:
            r["final_eval_return"] = float("nan")
        if r.get("best_eval_return") is None:
            r["best_eval_return"] = float("nan")
    return results


def print_rows(task: str, env_id: str, variants: dict) -> None:
    print(f"\n{task} ({env_id})")
    print(
        f"{'method':9s} {'final':>9s} {'best':>9s} {'best mean':>9s} {'ep to 5%':>8s} {'seeds':>5s}"
    )
    for label, v in variants.items():
        print(
            f"{label:9s} {v['final_eval_return']:9.3f} {v['best_eval_return']:9.3f} "
            f"{v['best_mean_eval_return']:9.3f} {v['episodes_to_threshold']!s:>8s} "
            f"{len(v['seeds']):5d}"
        )


def bench_table1(args: argparse.Namespace) -> dict:
    payload: dict = {
        "suite": "table1",
        "threshold_rule": "first evaluation within 5% of the best seed-averaged return of any "
        "method (paper Table 1)",
        "methods": [METHODS[m] for m in args.methods],
        "seeds": args.seeds,
        "tasks": {},
        "envs": {},
    }
    all_bands = {}
    for task in args.tasks:
        env_id, default_steps, default_every = TASKS[task]
        steps = getattr(args, f"{task.replace('-', '_')}_steps") or default_steps
        every = args.eval_every or default_every
        train = {
            "episodes": budget_episodes(env_id, steps),
            "max_steps": steps,
            "eval_every": every,
        }
        if args.episodes is not None:
            train["episodes"] = args.episodes
        jobs = []
        for method in args.methods:
            for seed in range(args.seeds):
                jobs.append(
                    {
                        "config": run_config(args, method, env_id, seed, train),
                        "label": METHODS[method],
                        "run_dir": str(args.out / "runs" / "table1" / task / method / f"s{seed}"),
                    }
                )
        results = no_none(run_jobs(jobs, args.workers))
        variants = aggregate(results)
        mark_threshold(variants)
        payload["envs"][env_id] = variants
        payload["tasks"][task] = {"env": env_id, "step_budget": steps, "eval_every": every}
        all_bands[env_id] = seed_bands(results)
        payload["tasks"][task]["bands"] = all_bands[env_id]
        by_steps = payload["tasks"][task]["by_steps"] = step_curves(results, steps)
        print_rows(task, env_id, variants)
        print("real steps to within 5% of the best (step axis): " + ", ".join(
            f"{label} {m['steps_to_threshold']}" for label, m in by_steps["methods"].items()
        ))  # fmt: skip
    title = " vs ".join(METHODS[m] for m in args.methods)
    out = finish("table1", args.out, payload, f"Table 1: {title}")
    for env_id, variants in payload["envs"].items():  # replace the plain curves with banded ones
        path = args.out / f"table1_{env_id.replace('/', '_')}.png"
        plot_bands(variants, all_bands[env_id], path, f"{title}: {env_id}")
    for info in payload["tasks"].values():
        path = args.out / f"table1_{info['env'].replace('/', '_')}_steps.png"
        plot_step_bands(info["by_steps"], path, f"{title}: {info['env']}")
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="naf-ros bench table1",
        description="The paper's Table 1: NAF vs DDPG vs SVG(1)-ER, episodes to within 5% of "
        "the best, final and best returns, learning curves with seed bands.",
    )
    add_method_args(parser)
    parser.add_argument(
        "--tasks", nargs="+", choices=list(TASKS), default=DEFAULT_TASKS,
        help="tasks (default: the three reachers)",
    )  # fmt: skip
    for task, (env_id, steps, _every) in TASKS.items():
        parser.add_argument(
            f"--{task}-steps", type=int, default=None,
            help=f"step budget on {env_id} (default {steps:,})",
        )  # fmt: skip
    parser.add_argument(
        "--eval-every", type=int, default=None, help="evaluation period in episodes (all tasks)"
    )
    parser.add_argument(
        "--episodes", type=int, default=None, help="episode cap per run (smoke runs)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    bench_table1(args)
    print(f"\nwrote {args.out}/")
    return 0
