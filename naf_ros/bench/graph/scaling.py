"""Graph benchmark part ``scaling``: K simulated arms in realtime at 50 Hz feeding one learner.

On real arms the transitions come at the control rate whether the learner is ready or not, so
the question is how many of the configured I updates per transition one learner still gives
as arms are added (the multi-robot NAF set-up). Per configuration and K: a realtime graph with
K namespaced arms, timed from the moment the learner's replay is warm for ``--scaling-seconds``
s; figures are the learner's own: its update and transition counters in
``/naf/learner_progress`` (updates per transition over the window, overall) and, per arm, the
run-long ``run_ratio``/``run_target`` it reports there (what ``catch_up_ratio`` waits on).
Configurations: ``paper`` (the YAML's network, 2x200, I = 5) and ``imagination`` (the
imagination-rollout settings of config/train_reacher_imr.yaml: 2x64, I = 5 plus 10 imagined
updates per real step once a model is there; imagination kept on for the whole run).
"""

from __future__ import annotations

import argparse
import shlex
import time
from typing import Any

import numpy as np

from naf_ros.bench.graph.harness import (
    base_launch_args,
    graph_session,
    probe_qos,
    set_text,
    shared_config,
)
from naf_ros.ros.names import PROGRESS_TOPIC

CONFIGS: dict[str, dict[str, Any]] = {
    "paper": {},
    "imagination": {
        "agent.hidden": [64, 64],
        "agent.warmup_steps": 100,
        "model_based.enabled": True,
        "model_based.model": "linear",
        "model_based.linear_state": "joint",
        "model_based.episodes_per_fit": 5,
        "model_based.rollout_length": 10,
        "model_based.rollout_every": 10,
        "model_based.rollout_batch": 10,
        "model_based.imagination_updates_per_step": 10,
        "model_based.ilqg_probability": 0.0,
    },
}


def progress_row(msg) -> dict[str, Any]:
    """A learner progress message as plain numbers (run figures per producer, if present)."""
    from naf_ros.ros.codec import unpack_arrays

    f = unpack_arrays(msg)
    producers = np.atleast_1d(f["producers"]).astype(int)
    per_arm = {}
    if "run_ratio" in f and "run_target" in f:
        ratios, targets = np.atleast_1d(f["run_ratio"]), np.atleast_1d(f["run_target"])
        per_arm = {
            int(p): (float(r), float(t)) for p, r, t in zip(producers, ratios, targets) if r >= 0
        }
    return {
        "transitions": float(f.get("transitions", np.nan)),
        "updates": float(f.get("updates", np.nan)),
        "per_arm": per_arm,
    }


def window_figures(rows: list[tuple[int, dict]], warm: int, seconds: float) -> dict | None:
    """Updates per transition between the first report at >= ``warm`` transitions and the
    first one ``seconds`` later (publisher stamps), with each arm's run figure at the end."""
    start = next(((t, r) for t, r in rows if r["transitions"] >= warm), None)
    if start is None:
        return None
    t0, a = start
    end = next(((t, r) for t, r in rows if t >= t0 + seconds * 1e9), None)
    if end is None:
        return None
    t1, b = end
    transitions = b["transitions"] - a["transitions"]
    updates = b["updates"] - a["updates"]
    if transitions <= 0:
        return None
    targets = [t for _, t in b["per_arm"].values()]
    return {
        "seconds": (t1 - t0) / 1e9,
        "transitions": transitions,
        "updates": updates,
        "transitions_per_s": transitions / ((t1 - t0) / 1e9),
        "updates_per_s": updates / ((t1 - t0) / 1e9),
        "updates_per_transition": updates / transitions,
        "target": float(np.mean(targets)) if targets else None,
        "per_arm_run": {
            str(p): {"updates_per_transition": round(r, 3), "target": round(t, 3)}
            for p, (r, t) in sorted(b["per_arm"].items())
        },
    }


def scaling_run(args: argparse.Namespace, config: str, arms: int) -> dict:
    """One realtime graph with ``arms`` arms; the learner's figures over the timed window."""
    overrides = CONFIGS[config]
    cfg = shared_config(args, overrides)
    warm = max(cfg.agent.warmup_steps, cfg.agent.batch_size)
    launch_args = base_launch_args(args) + [
        "--mode", "realtime",
        "--arms", str(arms),
        "--episodes", "100000",
        "--skip", "ilqg_explorer",
        "--set", set_text("train.eval_every", 100_000),
        "--set", set_text("learner.checkpoint_every_s", 0.0),
        "--set", set_text("naf_policy.persist", False),
    ]  # fmt: skip
    if not cfg.model_based.enabled:
        launch_args += ["--skip", "dynamics_fitter"]
    for key, value in overrides.items():
        launch_args += ["--set", set_text(key, value)]
    from std_msgs.msg import Float64MultiArray

    deep, _ = probe_qos()
    run_dir = args.out / "graph_runs" / f"scaling-{config}-k{arms}-{time.strftime('%H%M%S')}"
    with graph_session(args, run_dir, launch_args) as (run, probe):
        progress = probe.record(Float64MultiArray, PROGRESS_TOPIC, deep, progress_row)
        time.sleep(0.5)
        run.start()
        deadline = time.monotonic() + args.run_timeout
        figures = None
        while time.monotonic() < deadline and run.alive():
            with progress.lock:
                rows = list(zip(progress.source_ns, progress.values))
            figures = window_figures(rows, warm, args.scaling_seconds)
            if figures is not None:
                break
            time.sleep(0.5)
        if figures is None:
            raise RuntimeError(
                f"scaling run ({config}, K={arms}) gave no {args.scaling_seconds} s window "
                f"after {warm} transitions; last progress {progress.last()}\n{run.tail()}"
            )
    figures.update(
        config=config,
        arms=arms,
        configured_updates_per_step=cfg.agent.updates_per_step,
        hidden=list(cfg.agent.hidden),
        command=shlex.join(run.cmd),
        run_dir=str(run_dir),
    )
    return figures


def part_scaling(args: argparse.Namespace, store: dict) -> dict:
    """Per configuration and K: achieved updates per transition of one realtime learner."""
    out: dict[str, Any] = {"window_s": args.scaling_seconds, "control_hz": 50}
    for config in args.scaling_configs:
        if config not in CONFIGS:
            raise ValueError(f"--scaling-configs: unknown {config!r}; choose from {list(CONFIGS)}")
        rows = {}
        for k in args.scaling_arms:
            res = scaling_run(args, config, k)
            rows[f"K={k}"] = res
            target = res["target"]
            print(
                f"  {config} K={k}: {res['updates_per_transition']:.2f} updates per transition "
                f"(target {'?' if target is None else f'{target:.3g}'}; "
                f"{res['transitions_per_s']:.0f} transitions/s, {res['updates_per_s']:.0f} "
                f"updates/s over {res['seconds']:.0f} s)",
                flush=True,
            )
        out[config] = rows
    store["scaling"] = out
    return out


def plot_scaling(scaling: dict, path) -> None:
    """Achieved updates per transition against K, one line per configuration."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for config, rows in scaling.items():
        if not isinstance(rows, dict):
            continue
        ks = [r["arms"] for r in rows.values()]
        ratios = [r["updates_per_transition"] for r in rows.values()]
        (line,) = ax.plot(ks, ratios, "o-", label=f"{config}: achieved")
        targets = [r["target"] for r in rows.values() if r["target"] is not None]
        if targets:
            ax.axhline(max(targets), color=line.get_color(), ls="--", lw=1, label=f"{config}: I")
    ax.set_xscale("log", base=2)
    ks = sorted(
        {r["arms"] for rows in scaling.values() if isinstance(rows, dict) for r in rows.values()}
    )
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("simulated arms K (realtime, 50 Hz each)")
    ax.set_ylabel("learner updates per real transition")
    ax.set_title("One learner, K arms: updates per transition")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
