"""Graph benchmark part ``curve``: evaluation return vs. episode, ROS graph vs. in-process.

Both run the same config and seed in lockstep, so the learning results do not depend on
either side's speed; the evaluation starts differ (the trainer seeds its eval env, the
bridge its own).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import re
import shlex
import time
from typing import Any

import numpy as np

from naf_ros.bench.graph.harness import (
    base_launch_args,
    graph_session,
    in_subprocess,
    probe_qos,
    set_text,
    shared_config,
)
from naf_ros.config import config_from_dict
from naf_ros.ros.names import metric_topic

EVAL_LINE = re.compile(r"eval after episode (\d+): return (-?[0-9.]+(?:e-?\d+)?)")


def _inprocess_curve(job: dict) -> dict:
    """Worker: one full in-process training run; returns its evaluation curve."""
    from naf_ros.core.trainer import Trainer

    cfg = config_from_dict(job["config"])
    t0 = time.perf_counter()
    summary = Trainer(cfg, run_dir=job["run_dir"], log=None).train()
    return {
        "episodes": summary["eval_curve"]["episode"],
        "eval_return": summary["eval_curve"]["return"],
        "eval_tip_distance": summary["eval_curve"]["tip_distance"],
        "wall_s": time.perf_counter() - t0,
    }


def _eval_episodes(episodes: int, every: int) -> list[int]:
    return [e for e in range(1, episodes + 1) if e % every == 0 or e == episodes]


def graph_curve(args: argparse.Namespace, seed: int, overrides: dict[str, Any]) -> dict:
    from std_msgs.msg import Float64

    cfg = shared_config(args, overrides)
    launch_args = base_launch_args(args) + ["--mode", "lockstep"]
    for key, value in overrides.items():
        launch_args += ["--set", set_text(key, value)]
    deep, _ = probe_qos()
    run_dir = args.out / "graph_runs" / f"curve-s{seed}-{time.strftime('%H%M%S')}"
    t0 = time.monotonic()
    with graph_session(args, run_dir, launch_args) as (run, probe):
        evals = probe.record(Float64, metric_topic("eval_return"), deep, lambda m: float(m.data))
        tips = probe.record(
            Float64, metric_topic("eval_tip_distance"), deep, lambda m: float(m.data)
        )
        time.sleep(0.5)
        run.start()
        code = run.wait(args.run_timeout)
        if code is None:
            raise RuntimeError(f"curve run did not finish within {args.run_timeout} s")
        time.sleep(0.5)
        command = shlex.join(run.cmd)
    wall = time.monotonic() - t0
    expected = _eval_episodes(cfg.train.episodes, cfg.train.eval_every)
    returns = list(evals.values)
    tip = list(tips.values)
    source = "topic"
    if len(returns) != len(expected):  # a lost metric: the policy's log has the episode numbers
        parsed: dict[int, float] = {}
        for log in sorted((run_dir / "logs").glob("*naf_policy.log")):
            for m in EVAL_LINE.finditer(log.read_text(errors="replace")):
                parsed[int(m.group(1))] = float(m.group(2))
        expected, returns, source = sorted(parsed), [parsed[e] for e in sorted(parsed)], "log"
        tip = []
    return {
        "episodes": expected[: len(returns)],
        "eval_return": returns,
        "eval_tip_distance": tip[: len(returns)],
        "wall_s": wall,
        "launcher_exit": code,
        "eval_source": source,
        "command": command,
        "run_dir": str(run_dir),
    }


def part_curve(args: argparse.Namespace, store: dict) -> dict:
    runs: dict[str, list[dict]] = {"ROS graph": [], "in-process": []}
    for seed in range(args.curve_seeds):
        overrides = {
            "agent.hidden": list(args.curve_hidden),
            "train.episodes": args.curve_episodes,
            "train.seed": seed,
        }
        cfg = shared_config(args, {**overrides, "train.progress": False})
        job = {
            "config": cfg.to_dict(),
            "run_dir": str(args.out / "graph_runs" / f"inproc-curve-s{seed}"),
        }
        if args.workers > 1:  # lockstep results do not depend on speed: overlap the two runs
            with mp.get_context("spawn").Pool(1) as pool:
                pending = pool.apply_async(_inprocess_curve, (job,))
                runs["ROS graph"].append(graph_curve(args, seed, overrides))
                runs["in-process"].append(pending.get(args.run_timeout))
        else:
            runs["in-process"].append(in_subprocess(_inprocess_curve, job, args.run_timeout))
            runs["ROS graph"].append(graph_curve(args, seed, overrides))
        for label in runs:
            r = runs[label][-1]
            final = r["eval_return"][-1] if r["eval_return"] else float("nan")
            print(
                f"  seed {seed} {label:10s}: final eval return {final:8.2f}, best "
                f"{max(r['eval_return'], default=float('nan')):8.2f}, {r['wall_s']:.0f} s",
                flush=True,
            )
    out: dict[str, Any] = {
        "episodes": args.curve_episodes,
        "hidden": list(args.curve_hidden),
        "seeds": list(range(args.curve_seeds)),
        "notes": "evaluation starts differ: trainer seeds its eval env, the bridge its own",
    }
    for label, rs in runs.items():
        n = min(len(r["eval_return"]) for r in rs)
        mean = np.mean([r["eval_return"][:n] for r in rs], axis=0) if n else np.zeros(0)
        out[label] = {
            "runs": rs,
            "episodes": rs[0]["episodes"][:n],
            "mean_eval_return": mean.tolist(),
            "final_eval_return": float(mean[-1]) if n else None,
            "best_eval_return": float(mean.max()) if n else None,
        }
    store["curve"] = {
        label: (out[label]["episodes"], out[label]["mean_eval_return"]) for label in runs
    }
    return out
