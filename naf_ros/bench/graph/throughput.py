"""Graph benchmark parts ``throughput`` and ``arms``: lockstep env steps/s of the node graph.

``throughput`` times the whole graph against the in-process trainer with the same config
over a fixed number of steps after the replay warm-up (start-up excluded), interleaved so
machine drift cancels; ``arms`` sums the collection rate over K namespaced arms.
"""

from __future__ import annotations

import argparse
import math
import shlex
import time
from typing import Any

import numpy as np

from naf_ros.bench.graph.harness import (
    Series,
    base_launch_args,
    diag_value,
    episode_length,
    graph_session,
    in_subprocess,
    probe_qos,
    progress_value,
    set_text,
    shared_config,
)
from naf_ros.config import config_from_dict
from naf_ros.ros.names import DIAGNOSTICS_TOPIC, PROGRESS_TOPIC


def _inprocess_throughput(job: dict) -> dict:
    """Worker: warm-up episodes untimed, then time ``timed`` episodes of the trainer loop."""
    from naf_ros.core.trainer import Trainer

    cfg = config_from_dict(job["config"])
    trainer = Trainer(cfg, run_dir=job["run_dir"], log=None)
    for _ in range(job["warm_episodes"]):
        trainer.run_episode()
    steps0, updates0 = trainer.counters.env_steps, trainer.agent.updates
    t0 = time.perf_counter()
    for _ in range(job["timed_episodes"]):
        trainer.run_episode()
    dt = time.perf_counter() - t0
    steps = trainer.counters.env_steps - steps0
    return {
        "steps": steps,
        "seconds": dt,
        "steps_per_s": steps / dt,
        "updates_per_s": (trainer.agent.updates - updates0) / dt,
    }


def _rate_between(series: Series, start: float, end: float) -> dict | None:
    """Transitions and updates per second between the progress reports crossing start/end."""
    with series.lock:
        values = list(series.values)
        stamps = list(series.source_ns)
    n = np.array([v[0] for v in values])
    upd = np.array([v[1] for v in values])
    ia = np.nonzero(n >= start)[0]
    ib = np.nonzero(n >= end)[0]
    if not len(ia) or not len(ib) or ib[0] <= ia[0]:
        return None
    a, b = ia[0], ib[0]
    dt = (stamps[b] - stamps[a]) / 1e9
    return {
        "transitions": float(n[b] - n[a]),
        "seconds": dt,
        "steps_per_s": float(n[b] - n[a]) / dt,
        "updates_per_s": float(upd[b] - upd[a]) / dt,
    }


def _policy_waits(diag: Series, t_a: int, t_b: int) -> dict[str, float]:
    """Per policy: seconds spent waiting for the learner between two probe times."""
    with diag.lock:
        items = list(zip(diag.cb_ns, diag.values))
    out: dict[str, float] = {}
    for name in {n for _, v in items for n in v if n.endswith("naf_policy")}:
        series = [
            (t, float(v[name]["learner_wait_s"]))
            for t, v in items
            if "learner_wait_s" in v.get(name, {})
        ]
        before = [w for t, w in series if t <= t_a]
        after = [w for t, w in series if t <= t_b]
        if before and after:
            out[name.removeprefix("naf_ros: ")] = round(after[-1] - before[-1], 3)
    return out


def lockstep_rate(args: argparse.Namespace, arms: int, tag: str) -> dict:
    """Run the lockstep graph with ``arms`` arms; rate over the timed transitions window."""
    probe_cfg = shared_config(args, {})
    T = episode_length(probe_cfg)
    warm = probe_cfg.agent.warmup_steps
    timed = args.timed_episodes * T
    per_arm = math.ceil((warm + timed) / (arms * T)) + 1  # +1: no ragged ending in the window
    launch_args = base_launch_args(args) + [
        "--mode",
        "lockstep",
        "--arms",
        str(arms),
        "--episodes",
        str(per_arm),
        "--set",
        set_text("train.eval_every", 100_000),
        "--set",
        set_text("train.eval_episodes", 1),
        "--set",
        set_text("learner.checkpoint_every_s", 0.0),
    ]
    from diagnostic_msgs.msg import DiagnosticArray
    from std_msgs.msg import Float64MultiArray

    deep, _ = probe_qos()
    run_dir = args.out / "graph_runs" / f"{tag}-{time.strftime('%H%M%S')}"
    with graph_session(args, run_dir, launch_args) as (run, probe):
        progress = probe.record(Float64MultiArray, PROGRESS_TOPIC, deep, progress_value)
        diag = probe.record(DiagnosticArray, DIAGNOSTICS_TOPIC, deep, diag_value)
        time.sleep(0.5)
        run.start()
        cpu_a = cpu_b = None
        t_a = t_b = 0
        first_progress = None
        deadline = time.monotonic() + args.run_timeout
        while time.monotonic() < deadline:
            last = progress.last()
            n = last[0] if last else -1
            if last and first_progress is None:
                first_progress = time.monotonic() - run.started
            if cpu_a is None and n >= warm:
                cpu_a, t_a = run.cpu_seconds(), time.time_ns()
            if cpu_b is None and n >= warm + timed:
                cpu_b, t_b = run.cpu_seconds(), time.time_ns()
                break
            if not run.alive():
                break
            time.sleep(0.02)
        rate = _rate_between(progress, warm, warm + timed)
        if rate is None:
            raise RuntimeError(
                f"lockstep run ({arms} arm(s)) did not reach {warm + timed} transitions; "
                f"last progress {progress.last()}\n{run.tail()}"
            )
        window = rate["seconds"]
        cpu = {}
        if cpu_a and cpu_b:
            cpu = {k: round((cpu_b[k] - cpu_a[k]) / window, 3) for k in cpu_b if k in cpu_a}
        rate.update(
            arms=arms,
            episodes_per_arm=per_arm,
            first_transition_after_s=None if first_progress is None else round(first_progress, 2),
            cpu_cores_per_node=cpu,
            policy_learner_wait_fraction={
                k: round(v / window, 3) for k, v in _policy_waits(diag, t_a, t_b).items()
            },
            command=shlex.join(run.cmd),
            run_dir=str(run_dir),
        )
        run.wait(120)
    return rate


def part_throughput(args: argparse.Namespace, store: dict) -> dict:
    """In-process trainer vs. lockstep graph, interleaved (ABBA) so machine drift cancels."""
    cfg = shared_config(args, {"train.progress": False})
    T = episode_length(cfg)
    warm_eps = math.ceil(cfg.agent.warmup_steps / T)
    inproc, graph = [], []
    for r in range(args.repeats):
        order = ("inproc", "graph") if r % 2 == 0 else ("graph", "inproc")
        for what in order:
            if what == "inproc":
                job = {
                    "config": cfg.to_dict(),
                    "run_dir": str(args.out / "graph_runs" / f"inproc-throughput-{r}"),
                    "warm_episodes": warm_eps,
                    "timed_episodes": args.timed_episodes,
                }
                res = in_subprocess(_inprocess_throughput, job, args.run_timeout)
                inproc.append(res)
                print(
                    f"  in-process   run {r}: {res['steps_per_s']:7.1f} steps/s "
                    f"({res['updates_per_s']:.0f} upd/s)",
                    flush=True,
                )
            else:
                res = lockstep_rate(args, 1, f"throughput-{r}")
                graph.append(res)
                print(
                    f"  graph (K=1)  run {r}: {res['steps_per_s']:7.1f} steps/s "
                    f"({res['updates_per_s']:.0f} upd/s; cores {res['cpu_cores_per_node']}; "
                    f"policy waits {res['policy_learner_wait_fraction']})",
                    flush=True,
                )
    store["k1"] = graph
    ip = float(np.median([x["steps_per_s"] for x in inproc]))
    gr = float(np.median([x["steps_per_s"] for x in graph]))
    out = {
        "config": {
            "hidden": cfg.agent.hidden,
            "updates_per_step": cfg.agent.updates_per_step,
            "batch_size": cfg.agent.batch_size,
            "warmup_steps": cfg.agent.warmup_steps,
            "episode_steps": T,
            "timed_steps": args.timed_episodes * T,
            "graph_nodes_skipped": args.graph_skip,
            "notes": "graph: periodic learner checkpoints off, no evaluation in the window",
        },
        "inprocess_runs": inproc,
        "graph_runs": graph,
        "inprocess_steps_per_s_median": ip,
        "graph_steps_per_s_median": gr,
        "ratio_graph_over_inprocess": gr / ip,
        "ratio_per_repeat_median": float(
            np.median([g["steps_per_s"] / i["steps_per_s"] for g, i in zip(graph, inproc)])
        ),
        "ratio_target": 0.8,
    }
    print(
        f"  => graph {gr:.1f} / in-process {ip:.1f} steps/s = {gr / ip:.2f}x (target >= 0.8); "
        f"median of per-repeat ratios {out['ratio_per_repeat_median']:.2f}x",
        flush=True,
    )
    return out


def part_arms(args: argparse.Namespace, store: dict) -> dict:
    out: dict[str, Any] = {}
    for k in args.arms_list:
        runs = list(store.get("k1", [])) if k == 1 else []
        reused = len(runs)
        for r in range(max(0, args.repeats - len(runs))):
            res = lockstep_rate(args, k, f"arms{k}-{r}")
            runs.append(res)
            print(
                f"  K={k} run {r}: {res['steps_per_s']:7.1f} steps/s summed "
                f"({res['updates_per_s']:.0f} upd/s; cores {res['cpu_cores_per_node']}; "
                f"policy waits {res['policy_learner_wait_fraction']})",
                flush=True,
            )
        med = float(np.median([x["steps_per_s"] for x in runs]))
        out[f"K={k}"] = {
            "arms": k,
            "runs": runs,
            "reused_from_throughput": reused,
            "steps_per_s_median": med,
            "learner_updates_per_s_median": float(np.median([x["updates_per_s"] for x in runs])),
        }
        print(f"  => K={k}: {med:.1f} env steps/s summed over arms (median of {len(runs)})")
    return out
