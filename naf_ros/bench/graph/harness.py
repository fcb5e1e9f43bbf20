"""The graph benchmark's harness: options, config parity, graph runs and the probe.

Every graph run gets its own ROS domain (leased through naf_ros.bringup.domains, its
BENCH_DOMAINS by default, apart from the tests' range), loopback-only discovery, and is torn
down (SIGINT, then SIGKILL of its process group) whatever happens. A run is one ``naf-ros
launch`` process tree driven only through its documented CLI; the probe is an rclpy node in
the bench process that records what the graph publishes, with publisher and DDS-reception
stamps.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

import naf_ros.bench.graph as graph_pkg
from naf_ros.bringup.domains import BENCH_DOMAINS, allocate_domain
from naf_ros.bringup.params import NODE_MODULES
from naf_ros.bringup.proc_group import PACKAGE_ROOT, ros_child_env, spawn_group, stop_group
from naf_ros.config import SECTIONS, Config, config_from_dict
from naf_ros.ros.background import BackgroundNode

PARTS = ("throughput", "latency", "arms", "curve", "scaling")


# --- options ----------------------------------------------------------------------------------
def _int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    """All options of this suite; ``complete`` fills in what another namespace lacks."""
    p = argparse.ArgumentParser(
        prog="naf-ros bench graph", description=graph_pkg.__doc__.splitlines()[0]
    )
    p.add_argument("--out", type=Path, default=Path("bench_results"))
    p.add_argument("--parts", default=",".join(PARTS), help="comma list of " + ", ".join(PARTS))
    p.add_argument("--graph-config", type=Path, default=None, help="params YAML of the graph")
    p.add_argument("--repeats", type=int, default=3, help="throughput/arms runs (medians)")
    p.add_argument(
        "--timed-episodes", type=int, default=30, help="timed episodes after the warm-up"
    )
    p.add_argument("--arms-list", type=_int_list, default=[1, 2], help="K values, e.g. 1,2")
    p.add_argument("--latency-samples", type=int, default=1500, help="samples while learning")
    p.add_argument(
        "--realtime-priority",
        type=int,
        default=10,
        help="latency: SCHED_FIFO priority of the policy and bridge (0 = normal scheduling)",
    )
    p.add_argument(
        "--latency-reference",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the bridge against a minimal in-callback responder (rclpy floor)",
    )
    p.add_argument("--echo-responder", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--wakeup-jitter", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--curve-episodes", type=int, default=60)
    p.add_argument("--curve-hidden", type=_int_list, default=[200, 200])
    p.add_argument("--curve-seeds", type=int, default=1)
    p.add_argument(
        "--graph-skip",
        action="append",
        default=[],
        help="node the graph runs leave out (default: the whole graph)",
    )
    p.add_argument(
        "--graph-set",
        action="append",
        default=[],
        metavar="[NODE.]SECTION.KEY=VALUE",
        help="extra launcher --set for every graph run (section keys apply in-process too)",
    )
    p.add_argument("--scaling-arms", type=_int_list, default=[1, 2, 4, 8], help="scaling: K values")
    p.add_argument(
        "--scaling-seconds", type=float, default=120.0, help="scaling: timed window per run (s)"
    )
    p.add_argument(
        "--scaling-configs",
        type=lambda text: [v.strip() for v in text.split(",") if v.strip()],
        default=["paper", "imagination"],
        help="scaling: comma list of paper, imagination",
    )
    p.add_argument(
        "--robot-description",
        type=Path,
        default=None,
        metavar="FILE",
        help="graph runs: the arm's URDF/MJCF latched on robot_description (the nodes read it "
        "there); the in-process comparison loads the same file as arm.model",
    )
    p.add_argument(
        "--domains",
        default="{}-{}".format(*BENCH_DOMAINS),
        help="ROS domain ids to lease, lo-hi",
    )
    p.add_argument("--run-timeout", type=float, default=1800.0, help="limit per graph run (s)")
    p.add_argument("--workers", type=int, default=2, help=">1: curve runs side by side")
    return p


def complete(args: argparse.Namespace) -> argparse.Namespace:
    """The learning suites' parser knows only its own flags: take ours from their defaults."""
    for key, value in vars(build_parser().parse_args([])).items():
        if not hasattr(args, key):
            setattr(args, key, value)
    args.out = Path(args.out)
    parts = [s.strip() for s in str(args.parts).split(",") if s.strip()]
    unknown = [s for s in parts if s not in PARTS]
    if unknown:
        raise SystemExit(f"--parts: unknown {unknown}; choose from {', '.join(PARTS)}")
    args.parts = parts
    if args.graph_config is None:
        local = PACKAGE_ROOT / "config" / "reacher_sim.yaml"
        share = Path(sys.prefix) / "share" / "naf_ros" / "config" / "reacher_sim.yaml"
        args.graph_config = local if local.is_file() else share
    args.graph_config = Path(args.graph_config).resolve()  # the launcher runs elsewhere
    return args


# --- configuration parity ---------------------------------------------------------------------
def shared_config(args: argparse.Namespace, overrides: dict[str, Any]) -> Config:
    """The config every node of the graph validates (``/**`` sections + ``--graph-set``).

    Built from the YAML here rather than through launcher internals so the in-process
    comparison runs exactly what the nodes run, whatever else the launcher changes.
    """
    data = yaml.safe_load(Path(args.graph_config).read_text()) or {}
    shared = (data.get("/**") or {}).get("ros__parameters") or {}
    nested = {k: dict(v or {}) for k, v in shared.items() if k in SECTIONS}
    description = getattr(args, "robot_description", None)
    arm_model = {} if description is None else {"arm.model": str(Path(description).resolve())}
    for key, value in {**arm_model, **graph_set_sections(args), **overrides}.items():
        section, name = key.split(".", 1)
        nested.setdefault(section, {})[name] = value
    return config_from_dict(nested)


def graph_set_sections(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--graph-set`` items that are config sections (applied in-process too)."""
    out = {}
    for item in args.graph_set:
        key, _, raw = item.partition("=")
        if key.split(".", 1)[0] in SECTIONS and "." in key:
            out[key] = yaml.safe_load(raw)
    return out


def set_text(key: str, value: Any) -> str:
    """One ``--set key=value`` argument in the YAML spelling the launcher parses."""
    return f"{key}={json.dumps(value, separators=(',', ':'))}"  # JSON is YAML too


def episode_length(cfg: Config) -> int:
    if cfg.env.max_episode_steps is not None:
        return int(cfg.env.max_episode_steps)
    from naf_ros.envs import EPISODE_STEPS

    return EPISODE_STEPS


# --- processes -----------------------------------------------------------------------------------
def _proc_cpu(pid: int) -> float | None:
    """User+system CPU seconds of one process (None if it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class GraphRun:
    """One ``naf-ros launch`` process tree (own session) on a leased domain.

    Only the documented launcher CLI is used; the tree is found again by process group, so
    teardown reaches every node even if the launcher itself died.
    """

    def __init__(self, run_dir: Path, domain_id: int, launch_args: list[str]) -> None:
        self.run_dir = run_dir
        self.domain_id = domain_id
        self.cmd = [
            sys.executable,
            "-m",
            "naf_ros.cli",
            "launch",
            "--",
            "--domain-id",
            str(domain_id),
            "--run-dir",
            str(run_dir),
            "--quiet",
            *launch_args,
        ]
        self.proc: subprocess.Popen | None = None
        self.started = 0.0
        self._log = None

    def start(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.run_dir / "launch.out", "wb")
        self.started = time.monotonic()
        self.proc = spawn_group(self.cmd, ros_child_env(self.domain_id), self._log)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def node_pids(self) -> dict[str, int]:
        """Node label (``arm0/naf_policy``) -> pid, for the processes of this run's group."""
        out: dict[str, int] = {}
        if self.proc is None:
            return out
        by_module = {module: node for node, module in NODE_MODULES.items()}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmd = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[2]) != self.proc.pid:
                continue
            args = [a.decode(errors="replace") for a in cmd]
            node = next((by_module[a] for a in args if a in by_module), None)
            if node is None:
                continue
            ns = next((a.split("/", 1)[1] for a in args if a.startswith("__ns:=/")), "")
            out[f"{ns}/{node}" if ns else node] = int(entry.name)
        return out

    def cpu_seconds(self) -> dict[str, float]:
        out = {}
        for label, pid in self.node_pids().items():
            cpu = _proc_cpu(pid)
            if cpu is not None:
                out[label] = cpu
        return out

    def wait(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace: float = 60.0) -> int | None:
        """SIGINT to the launcher (it stops the nodes in order), then SIGKILL the group."""
        if self.proc is None:
            return None
        code = stop_group(self.proc, grace)
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def tail(self, lines: int = 20) -> str:
        try:
            text = (self.run_dir / "launch.out").read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


# --- the in-bench observer --------------------------------------------------------------------
@dataclass
class Series:
    """Samples of one topic: callback time, publisher and DDS-reception stamps, payload."""

    cb_ns: list[int] = field(default_factory=list)
    source_ns: list[int] = field(default_factory=list)
    received_ns: list[int] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __len__(self) -> int:
        with self.lock:
            return len(self.values)

    def last(self) -> Any:
        with self.lock:
            return self.values[-1] if self.values else None


class Probe(BackgroundNode):
    """An rclpy node in its own context on the run's domain, spinning in a thread.

    Timing uses the publisher's source stamp and the DDS reception stamp (rmw MessageInfo),
    so the probe's own scheduling on a loaded machine does not enter the figures.
    """

    def __init__(self, domain_id: int) -> None:
        super().__init__("naf_bench_probe", domain_id)

    def record(self, msg_type, topic: str, qos, convert: Callable[[Any], Any]) -> Series:
        series = Series()

        def callback(msg, info) -> None:
            now = time.time_ns()
            value = convert(msg)
            with series.lock:
                series.cb_ns.append(now)
                series.source_ns.append(int(info.get("source_timestamp") or 0))
                series.received_ns.append(int(info.get("received_timestamp") or 0))
                series.values.append(value)

        self.node.create_subscription(msg_type, topic, callback, qos)
        return series


def progress_value(msg) -> tuple[float, float]:
    """(transitions, updates) of one learner progress message."""
    from naf_ros.ros.codec import unpack_arrays

    f = unpack_arrays(msg)
    return float(f.get("transitions", np.nan)), float(f.get("updates", np.nan))


def diag_value(msg) -> dict[str, dict[str, str]]:
    return {s.name: {kv.key: kv.value for kv in s.values} for s in msg.status}


@contextlib.contextmanager
def graph_session(
    args: argparse.Namespace, run_dir: Path, launch_args: list[str]
) -> Iterator[tuple[GraphRun, Probe]]:
    """Lease a domain, start the probe, then the graph; tear everything down on the way out."""
    lease = allocate_domain(args.domains, spread=False)
    probe = run = None
    try:
        probe = Probe(lease.domain_id)
        run = GraphRun(run_dir, lease.domain_id, launch_args)
        yield run, probe
    finally:
        try:
            if run is not None:
                code = run.stop()
                if code not in (0, 130, -signal.SIGINT, None):
                    print(f"  (launcher exited {code}; see {run_dir}/launch.out)", flush=True)
        finally:
            if probe is not None:
                probe.close()
            lease.release()


def probe_qos():
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    deep = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
    return deep, qos_profile_sensor_data


def base_launch_args(args: argparse.Namespace) -> list[str]:
    out = ["--config", str(args.graph_config)]
    if getattr(args, "robot_description", None) is not None:
        out += ["--robot-description", str(Path(args.robot_description).resolve())]
    for node in args.graph_skip:
        out += ["--skip", node]
    for item in args.graph_set:
        out += ["--set", item]
    return out


def in_subprocess(fn: Callable[[dict], dict], job: dict, timeout: float) -> dict:
    """One job in a fresh spawned interpreter (no rclpy state, its own torch threads)."""
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply_async(fn, (job,)).get(timeout)
