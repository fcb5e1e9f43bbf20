"""The graph suite as a whole: run the selected parts, print, write graph.json and plots.

A part that fails is reported in the JSON and the others still run; SIGTERM tears the
graph runs down like Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from naf_ros.bench.common import machine
from naf_ros.bench.graph.curve import part_curve
from naf_ros.bench.graph.harness import complete, shared_config
from naf_ros.bench.graph.latency import part_latency
from naf_ros.bench.graph.scaling import part_scaling, plot_scaling
from naf_ros.bench.graph.throughput import part_arms, part_throughput
from naf_ros.bringup.proc_group import PACKAGE_ROOT


def _plots(args: argparse.Namespace, payload: dict, store: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from naf_ros.core.metrics import plot_curves

    written = []
    parts = payload["parts"]
    bars: dict[str, list[float]] = {}
    if isinstance(parts.get("throughput"), dict) and "inprocess_runs" in parts["throughput"]:
        bars["in-process"] = [r["steps_per_s"] for r in parts["throughput"]["inprocess_runs"]]
        bars["graph K=1"] = [r["steps_per_s"] for r in parts["throughput"]["graph_runs"]]
    if isinstance(parts.get("arms"), dict):
        for key, v in parts["arms"].items():
            if isinstance(v, dict) and "runs" in v and v["reused_from_throughput"] < len(v["runs"]):
                bars[f"graph {key} (sum)"] = [r["steps_per_s"] for r in v["runs"]]
    if bars:
        fig, ax = plt.subplots(figsize=(7, 4))
        labels = list(bars)
        ax.bar(labels, [float(np.median(bars[k])) for k in labels], color="#8ab", alpha=0.8)
        for i, k in enumerate(labels):
            ax.plot([i] * len(bars[k]), bars[k], "k.", ms=6)
        ax.set_ylabel("env steps/s (lockstep, learner running)")
        ax.set_title("NAF node graph vs. in-process trainer (bars: median; dots: runs)")
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        path = args.out / "graph_throughput.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path.name)
    if store.get("latency_ms"):
        lat = np.asarray(store["latency_ms"])
        fig, ax = plt.subplots(figsize=(7, 4))
        top = max(30.0, float(np.percentile(lat, 99.5)) * 1.3)
        bins = np.linspace(0.0, top, 90)
        ax.hist(np.clip(lat, 0, top), bins=bins, color="#8ab", label="policy node")
        if store.get("reference_ms"):
            ref = np.clip(np.asarray(store["reference_ms"]), 0, top)
            ax.hist(ref, bins=bins, histtype="step", color="#c60", label="in-callback echo")
        for q, style in ((50, "--"), (99, ":")):
            v = np.percentile(lat, q)
            ax.axvline(v, color="k", ls=style, label=f"p{q} {v:.2f} ms")
        ax.axvline(2.0, color="r", lw=1, label="p99 target 2 ms")
        ax.set_xlabel("joint state -> effort command (ms; publisher stamps; last bin: beyond)")
        ax.set_ylabel("samples")
        ax.set_title("Realtime mode, learner updating")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = args.out / "graph_latency.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path.name)
    if store.get("curve"):
        path = args.out / "graph_curve.png"
        imr = shared_config(args, {}).model_based.enabled  # what the graph ran
        label = "NAF + imagination rollouts" if imr else "NAF"
        plot_curves(
            store["curve"], path, f"{label}, fixed-target 3-DOF reacher: ROS graph vs. in-process"
        )
        written.append(path.name)
    if isinstance(parts.get("scaling"), dict) and "error" not in parts["scaling"]:
        path = args.out / "graph_scaling.png"
        plot_scaling(parts["scaling"], path)
        written.append(path.name)
    return written


def _source_version() -> str | None:
    """Commit (+ "dirty") of the tree being measured; None outside a git checkout."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=PACKAGE_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "naf_ros", "config"],
            cwd=PACKAGE_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + (" (dirty)" if dirty else "")


def _raise_interrupt(_sig, _frame) -> None:
    raise KeyboardInterrupt


def main(args: argparse.Namespace) -> int:
    """Run the selected parts, print the figures, write ``graph.json`` and the plots."""
    args = complete(args)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    old_term = signal.signal(signal.SIGTERM, _raise_interrupt)  # teardown runs on SIGTERM too
    payload: dict[str, Any] = {
        "suite": "graph",
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "graph_config": str(args.graph_config),
        "package_root": str(PACKAGE_ROOT),
        "source": _source_version(),
        "parts": {},
        "runtime_s": {},
        "load_average": {},
    }
    store: dict[str, Any] = {}
    runners = {
        "throughput": part_throughput,
        "latency": part_latency,
        "arms": part_arms,
        "curve": part_curve,
        "scaling": part_scaling,
    }
    failed = []
    try:
        for part in args.parts:
            print(f"\n[{part}] load average {os.getloadavg()[0]:.2f}", flush=True)
            load_before = os.getloadavg()
            t0 = time.monotonic()
            try:
                payload["parts"][part] = runners[part](args, store)
            except Exception as exc:  # noqa: BLE001 - report it, go on with the other parts
                failed.append(part)
                payload["parts"][part] = {"error": f"{type(exc).__name__}: {exc}"}
                print(f"  {part} failed: {exc}", flush=True)
            payload["runtime_s"][part] = round(time.monotonic() - t0, 1)
            payload["load_average"][part] = {
                "before": [round(v, 2) for v in load_before],
                "after": [round(v, 2) for v in os.getloadavg()],
            }
            print(f"  [{part}] {payload['runtime_s'][part]:.0f} s", flush=True)
    except KeyboardInterrupt:
        print("\nbench graph: interrupted; graph runs were torn down", file=sys.stderr)
        failed.append("interrupted")
    finally:
        signal.signal(signal.SIGTERM, old_term)
        payload["machine"] = machine()
        payload["date"] = time.strftime("%Y-%m-%d %H:%M")
        try:
            payload["plots"] = _plots(args, payload, store)
        except Exception as exc:  # noqa: BLE001 - the figures matter more than the plots
            payload["plots"] = []
            payload["plot_error"] = f"{type(exc).__name__}: {exc}"
        (args.out / "graph.json").write_text(json.dumps(payload, indent=2))
        print(f"\nwrote {args.out}/graph.json and {', '.join(payload['plots']) or 'no plots'}")
    if "interrupted" in failed:
        return 130
    return 1 if failed else 0
