"""``naf-ros bench``: learning-curve and throughput benchmarks (numbers, JSON and plots).

Benchmarks are not tests: they print figures and write ``<out>/<suite>.json`` plus PNG
learning curves; BENCHMARKS.md quotes them with the machine they came from.

Suites:
  naf          NAF on Gymnasium Reacher-v5 and the fixed-target 3-DOF reacher, 3 seeds each
  model-based  NAF vs. NAF + imagination rollouts (linear, -NN, true model) and iLQG mixing
  updates      learner updates/s for the paper's network sizes
  graph        ROS node graph: lockstep steps/s vs in-process, real-time latency, K arms
  model-error  imagined vs. real rollouts: tip and reward error of each dynamics model
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from naf_ros.config import config_from_dict
from naf_ros.core.metrics import plot_curves

REACHER_FIXED = "NafRos/Reacher3DOFFixed-v0"


def machine() -> dict:
    info = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    info["torch"] = torch.__version__
    return info


def _train_one(job: dict) -> dict:
    """Worker: one training run (own process, one torch thread)."""
    from naf_ros.core.trainer import Trainer

    cfg = config_from_dict(job["config"])
    trainer = Trainer(cfg, run_dir=job["run_dir"], log=None)
    summary = trainer.train()
    summary["label"] = job["label"]
    return summary


def _run_jobs(jobs: list[dict], workers: int) -> list[dict]:
    if workers <= 1:
        return [_train_one(j) for j in jobs]
    with mp.get_context("spawn").Pool(workers) as pool:
        return pool.map(_train_one, jobs, chunksize=1)


def _aggregate(results: list[dict]) -> dict:
    """Per label: median episodes-to-5%, final return/tip distance, mean curve over seeds."""
    out: dict[str, dict] = {}
    for label in dict.fromkeys(r["label"] for r in results):
        runs = [r for r in results if r["label"] == label]
        curves = [np.asarray(r["eval_curve"]["return"]) for r in runs]
        n = min(len(c) for c in curves)
        mean_curve = np.mean([c[:n] for c in curves], axis=0)
        episodes = runs[0]["eval_curve"]["episode"][:n]
        # Paper's measure on the seed-averaged curve, against the best of all variants later.
        out[label] = {
            "seeds": [r["seed"] for r in runs],
            "episodes": episodes,
            "mean_eval_return": mean_curve.tolist(),
            "final_eval_return": float(np.mean([r["final_eval_return"] for r in runs])),
            "best_eval_return": float(np.mean([r["best_eval_return"] for r in runs])),
            "best_mean_eval_return": float(mean_curve.max()),
            "final_tip_distance_m": float(np.mean([r["final_eval_tip_distance"] for r in runs])),
            "episodes_to_within_5pct_per_seed": [r["episodes_to_within_5pct"] for r in runs],
            "env_steps": int(np.mean([r["env_steps"] for r in runs])),
            "updates_per_s": float(np.median([r["updates_per_s"] for r in runs])),
            "wall_s": float(np.median([r["wall_s"] for r in runs])),
        }
    return out


def _episodes_to_threshold(episodes, curve, threshold) -> int | None:
    for ep, value in zip(episodes, curve):
        if value >= threshold:
            return int(ep)
    return None


def mark_threshold(variants: dict) -> None:
    """The paper's measure: the first evaluation at which each variant's seed-averaged curve
    is within 5% of the best seed-averaged return of any variant. (The best must come from
    the averaged curves too: the mean of per-seed bests is a level the averaged curve
    seldom reaches.)"""
    best = max(v["best_mean_eval_return"] for v in variants.values())
    threshold = best - 0.05 * abs(best)
    for v in variants.values():
        v["threshold"] = threshold
        v["episodes_to_threshold"] = _episodes_to_threshold(
            v["episodes"], v["mean_eval_return"], threshold
        )


def _finish(suite: str, out_dir: Path, payload: dict, title: str) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    payload["machine"] = machine()
    payload["date"] = time.strftime("%Y-%m-%d")
    (out_dir / f"{suite}.json").write_text(json.dumps(payload, indent=2))
    for env_id, variants in payload.get("envs", {}).items():
        curves = {label: (v["episodes"], v["mean_eval_return"]) for label, v in variants.items()}
        name = env_id.replace("/", "_")
        plot_curves(curves, out_dir / f"{suite}_{name}.png", f"{title}: {env_id}")
    return payload


def bench_naf(args) -> dict:
    envs = {
        "Reacher-v5": {
            "env": {"id": "Reacher-v5"},
            "train": {"episodes": args.reacher_v5_steps // 50, "eval_every": 20},
        },
        REACHER_FIXED: {
            "env": {"id": REACHER_FIXED},
            "train": {"episodes": args.episodes, "eval_every": 10},
        },
    }
    if args.envs:
        envs = {k: v for k, v in envs.items() if k in args.envs}
    payload: dict = {"suite": "naf", "envs": {}}
    for env_id, base in envs.items():
        jobs = []
        for seed in range(args.seeds):
            agent = {"hidden": args.hidden}
            if args.gamma is not None:
                agent["gamma"] = args.gamma
            if args.lr is not None:
                agent["lr"] = args.lr
            cfg = {
                "env": base["env"],
                "agent": agent,
                "exploration": {"kind": args.exploration, "scale": args.noise},
                "train": {**base["train"], "seed": seed, "eval_episodes": 5, "progress": False},
            }
            jobs.append(
                {
                    "config": cfg,
                    "label": "NAF",
                    "run_dir": str(args.out / "runs" / env_id.replace("/", "_") / f"s{seed}"),
                }
            )
        results = _run_jobs(jobs, args.workers)
        payload["envs"][env_id] = _aggregate(results)
        _print_table(env_id, payload["envs"][env_id])
    return _finish("naf", args.out, payload, "NAF")


MODEL_BASED_VARIANTS = {
    "NAF": {"enabled": False},
    "NAF+ImR (linear)": {"enabled": True, "model": "linear"},
    "NAF+ImR (-NN)": {"enabled": True, "model": "nn"},
    "NAF+ImR (true)": {"enabled": True, "model": "true"},
    "NAF+ImR+iLQG p=0.5": {"enabled": True, "model": "linear", "ilqg_probability": 0.5},
    "NAF+ImR+iLQG p=1": {"enabled": True, "model": "linear", "ilqg_probability": 1.0},
}


def bench_model_based(args) -> dict:
    jobs = []
    variants = args.variants or list(MODEL_BASED_VARIANTS)
    warmup = {} if args.warmup_steps is None else {"warmup_steps": args.warmup_steps}
    for label in variants:
        mb = dict(MODEL_BASED_VARIANTS[label])
        if mb.get("enabled"):
            # None = the paper's I·l updates from R_f per real step.
            mb["imagination_updates_per_step"] = args.imagination_updates
            mb["rollout_length"] = args.rollout_length
            mb["imagination_off_after"] = args.imagination_off_after
            if args.imagination_capacity is not None:
                mb["imagination_capacity"] = args.imagination_capacity
            if args.linear_state is not None:
                mb["linear_state"] = args.linear_state
        for seed in range(args.seeds):
            cfg = {
                "env": {"id": REACHER_FIXED},
                "agent": {"hidden": args.hidden, **warmup},
                "exploration": {"kind": args.exploration, "scale": args.noise},
                "model_based": mb,
                "train": {
                    "episodes": args.episodes,
                    "eval_every": 5,
                    "seed": seed,
                    "eval_episodes": 3,
                    "progress": False,
                },
            }
            safe = label.replace(" ", "_").replace("/", "").replace("=", "")
            jobs.append(
                {
                    "config": cfg,
                    "label": label,
                    "run_dir": str(args.out / "runs" / "model_based" / safe / f"s{seed}"),
                }
            )
    results = _run_jobs(jobs, args.workers)
    variants_out = _aggregate(results)
    mark_threshold(variants_out)
    payload = {
        "suite": "model_based",
        "envs": {REACHER_FIXED: variants_out},
        "threshold_rule": "within 5% of the best seed-averaged evaluation return",
    }
    _print_table(REACHER_FIXED, variants_out)
    return _finish("model_based", args.out, payload, "Model-based acceleration")


def bench_updates(args) -> dict:
    import torch

    from naf_ros.config import AgentConfig
    from naf_ros.core.naf import NAFAgent
    from naf_ros.core.replay import ReplayBuffer

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    rows = {}
    for hidden in ([200, 200], [64, 64]):
        for bn in (False, True):
            agent = NAFAgent(13, 3, AgentConfig(hidden=hidden, batch_norm=bn))
            buf = ReplayBuffer(13, 3, 10_000)
            buf.add_batch(
                rng.normal(size=(5000, 13)),
                rng.uniform(-1, 1, (5000, 3)),
                rng.normal(size=5000),
                rng.normal(size=(5000, 13)),
                np.zeros(5000),
            )
            times = []
            for _ in range(5):
                t0 = time.perf_counter()
                for _ in range(200):
                    agent.update(buf.sample(64, rng))
                times.append(200 / (time.perf_counter() - t0))
            key = f"hidden={hidden} batch_norm={bn}"
            rows[key] = {
                "updates_per_s_median": float(np.median(times)),
                "updates_per_s_runs": times,
            }
            print(f"{key:40s} {np.median(times):8.0f} updates/s (batch 64, 1 thread)")
    return _finish("updates", args.out, {"suite": "updates", "results": rows}, "updates")


def bench_report(args) -> dict:
    """Rebuild tables, JSON and plots from finished run folders (``<variant>/s<seed>/``).

    Lets suites that were split across processes (or stopped early) be reported together.
    """
    by_env: dict[str, list[dict]] = {}
    for root in args.runs:
        for path in sorted(Path(root).glob("*/s*/summary.json")):
            summary = json.loads(path.read_text())
            summary["label"] = path.parent.parent.name.replace("_", " ")
            by_env.setdefault(summary["env"], []).append(summary)
    payload: dict = {"suite": "report", "runs": [str(r) for r in args.runs], "envs": {}}
    for env_id, results in by_env.items():
        variants = _aggregate(results)
        mark_threshold(variants)
        payload["envs"][env_id] = variants
        _print_table(env_id, variants)
    return _finish(args.name, args.out, payload, args.name)


def _print_table(env_id: str, variants: dict) -> None:
    print(f"\n{env_id}")
    print(
        f"{'variant':24s} {'final return':>12s} {'best mean':>9s} {'tip (m)':>8s} "
        f"{'ep to 5%':>9s} {'upd/s':>7s}"
    )
    for label, v in variants.items():
        ep5 = v.get("episodes_to_threshold", v["episodes_to_within_5pct_per_seed"])
        print(
            f"{label:24s} {v['final_eval_return']:12.2f} {v['best_mean_eval_return']:9.2f} "
            f"{v['final_tip_distance_m']:8.3f} {ep5!s:>9s} {v['updates_per_s']:7.0f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="naf-ros bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "suite", choices=["naf", "model-based", "updates", "graph", "model-error", "report"]
    )
    parser.add_argument(
        "--runs",
        nargs="*",
        type=Path,
        default=[],
        help="report: folders holding <variant>/s<seed>/summary.json",
    )
    parser.add_argument("--name", default="report", help="report: output file stem")
    parser.add_argument("--out", type=Path, default=Path("bench_results"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--reacher-v5-steps", type=int, default=50_000)
    parser.add_argument(
        "--hidden", type=lambda s: [int(v) for v in s.split(",")], default=[200, 200]
    )
    parser.add_argument("--exploration", default="ou")
    parser.add_argument("--noise", type=float, default=0.3)
    parser.add_argument("--gamma", type=float, default=None, help="naf suite: discount")
    parser.add_argument("--lr", type=float, default=None, help="naf suite: Adam learning rate")
    parser.add_argument(
        "--imagination-updates",
        type=lambda v: None if v == "paper" else int(v),
        default=5,
        help="model-based: updates from R_f per real step ('paper' = I·l)",
    )
    parser.add_argument(
        "--imagination-off-after",
        type=int,
        default=None,
        help="model-based: switch imagination rollouts off after this many episodes",
    )
    parser.add_argument(
        "--imagination-capacity",
        type=int,
        default=None,
        help="model-based: size of R_f (small = only recent, local imagined data)",
    )
    parser.add_argument("--rollout-length", type=int, default=5)
    parser.add_argument(
        "--warmup-steps",
        type=int,
        default=None,
        help="model-based: real transitions in R before the first update (all variants)",
    )
    parser.add_argument(
        "--linear-state",
        choices=["joint", "observation"],
        default=None,
        help="model-based: what the linear model steps (default: the schema's, joint)",
    )
    parser.add_argument(
        "--envs",
        nargs="*",
        choices=["Reacher-v5", REACHER_FIXED],
        help="naf suite: which environments (default both)",
    )
    parser.add_argument("--variants", nargs="*", choices=list(MODEL_BASED_VARIANTS))
    parser.add_argument("--workers", type=int, default=2)
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["model-error"]:  # its own options (see --help there)
        from naf_ros.bench_model_error import main as model_error_main

        return model_error_main(argv[1:])
    if argv[:1] == ["graph"]:  # the graph suite has its own options (see --help there)
        from naf_ros.bench_graph import build_parser as graph_parser
        from naf_ros.bench_graph import main as graph_main

        return graph_main(graph_parser().parse_args(argv[1:]))
    args = parser.parse_args(argv)
    if args.suite == "naf":
        bench_naf(args)
    elif args.suite == "model-based":
        bench_model_based(args)
    elif args.suite == "updates":
        bench_updates(args)
    elif args.suite == "report":
        bench_report(args)
    else:
        from naf_ros.bench_graph import main as graph_main

        return graph_main(args)
    print(f"\nwrote {args.out}/")
    return 0
