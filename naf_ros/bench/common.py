"""What the benchmark suites share: the machine record, training jobs in worker processes,
seed aggregation, the paper's threshold measure, tables and the JSON + PNG output.

Why one module: every suite reports the same way, so BENCHMARKS.md can quote them side by
side with the machine they came from.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import platform
import time
from pathlib import Path

import numpy as np

from naf_ros.config import config_from_dict
from naf_ros.core.metrics import plot_curves

REACHER_FIXED = "NafRos/Reacher3DOFFixed-v0"
TIP_TOLERANCE_M = 0.02  # "reached": the tip within 2 cm of the target


def machine() -> dict:
    """Python, CPU, core count and torch version of the machine a figure came from."""
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


def train_one(job: dict) -> dict:
    """Worker: one training run (own process, one torch thread)."""
    from naf_ros.core.trainer import Trainer

    cfg = config_from_dict(job["config"])
    trainer = Trainer(cfg, run_dir=job["run_dir"], log=None)
    summary = trainer.train()
    summary["label"] = job["label"]
    return summary


def run_jobs(jobs: list[dict], workers: int) -> list[dict]:
    """Training runs, ``workers`` at a time in spawned processes (no shared torch state)."""
    if workers <= 1:
        return [train_one(j) for j in jobs]
    with mp.get_context("spawn").Pool(workers) as pool:
        return pool.map(train_one, jobs, chunksize=1)


def aggregate(results: list[dict]) -> dict:
    """Per label: median episodes-to-5%, final return/tip distance, mean curve over seeds."""
    out: dict[str, dict] = {}
    for label in dict.fromkeys(r["label"] for r in results):
        runs = [r for r in results if r["label"] == label]
        curves = [np.asarray(r["eval_curve"]["return"]) for r in runs]
        n = min(len(c) for c in curves)
        mean_curve = np.mean([c[:n] for c in curves], axis=0)
        tips = [
            np.asarray(r["eval_curve"].get("tip_distance", [np.nan] * n), dtype=float)[:n]
            for r in runs
        ]
        mean_tip = np.mean(tips, axis=0)
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
            "final_tip_distance_per_seed_m": [float(r["final_eval_tip_distance"]) for r in runs],
            "mean_eval_tip_distance_m": mean_tip.tolist(),
            # the precision measure: first evaluation whose seed-mean tip distance is within
            # TIP_TOLERANCE_M (the 2 cm), and from which it stays there
            "episodes_to_tip_tolerance": _episodes_to_stay_below(
                episodes, mean_tip.tolist(), TIP_TOLERANCE_M
            ),
            "episodes_to_within_5pct_per_seed": [r["episodes_to_within_5pct"] for r in runs],
            "env_steps": int(np.mean([r["env_steps"] for r in runs])),
            "updates_per_s": float(np.median([r["updates_per_s"] for r in runs])),
            "wall_s": float(np.median([r["wall_s"] for r in runs])),
        }
    return out


def _episodes_to_stay_below(episodes: list, curve: list, bound: float) -> int | None:
    """The first evaluation from which ``curve`` stays <= ``bound`` to the end (None: never)."""
    first = None
    for ep, value in zip(episodes, curve):
        if value <= bound:
            first = int(ep) if first is None else first
        else:
            first = None
    return first


def _episodes_to_threshold(episodes: list, curve: list, threshold: float) -> int | None:
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


def finish(suite: str, out_dir: Path, payload: dict, title: str) -> dict:
    """Stamp machine and date, write ``<out>/<suite>.json`` and one learning-curve PNG per env."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payload["machine"] = machine()
    payload["date"] = time.strftime("%Y-%m-%d")
    (out_dir / f"{suite}.json").write_text(json.dumps(payload, indent=2))
    for env_id, variants in payload.get("envs", {}).items():
        curves = {label: (v["episodes"], v["mean_eval_return"]) for label, v in variants.items()}
        name = env_id.replace("/", "_")
        plot_curves(curves, out_dir / f"{suite}_{name}.png", f"{title}: {env_id}")
    return payload


def print_table(env_id: str, variants: dict) -> None:
    """One row per variant: the figures BENCHMARKS.md quotes."""
    print(f"\n{env_id}")
    print(
        f"{'variant':24s} {'final return':>12s} {'best mean':>9s} {'tip (m)':>8s} "
        f"{'ep to 5%':>9s} {'ep to 2cm':>9s} {'upd/s':>7s}"
    )
    for label, v in variants.items():
        ep5 = v.get("episodes_to_threshold", v["episodes_to_within_5pct_per_seed"])
        print(
            f"{label:24s} {v['final_eval_return']:12.2f} {v['best_mean_eval_return']:9.2f} "
            f"{v['final_tip_distance_m']:8.3f} {ep5!s:>9s} {v['episodes_to_tip_tolerance']!s:>9s} "
            f"{v['updates_per_s']:7.0f}"
        )
