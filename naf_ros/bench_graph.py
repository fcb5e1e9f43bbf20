"""``naf-ros bench graph``: the ROS 2 node graph measured against the in-process trainer.

Parts (``--parts``, default all); every graph run gets its own ROS domain (a lock file per id
in 224-232, the top of Fast DDS's valid range, away from the tests' 110-159), loopback-only
discovery, and is torn down (SIGINT, then SIGKILL of its process group) whatever happens:

  throughput  lockstep env steps/s of the whole graph vs. the in-process trainer, same config,
              timed over a fixed number of steps after the replay warm-up (start-up excluded)
  latency     realtime mode: /joint_states -> effort command latency seen by an independent
              subscriber (publisher stamps, DDS reception stamps, missed control periods),
              the policy's in-node figure from /diagnostics, and the same bridge answered by
              a minimal in-callback responder (what rclpy + Fast DDS cost on this machine)
  arms        lockstep collection rate (env steps/s summed over arms) for K arms
  curve       evaluation return vs. episode: ROS graph vs. in-process trainer, same seed

Writes ``<out>/graph.json`` and ``<out>/graph_*.png``. ``naf-ros bench graph`` takes bench.py's
options; ``python -m naf_ros.bench_graph --help`` lists all of this suite's own.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import fcntl
import json
import math
import multiprocessing as mp
import os
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from naf_ros.config import SECTIONS, Config, config_from_dict
from naf_ros.launcher import NODE_MODULES
from naf_ros.proc_group import PACKAGE_ROOT, ros_child_env, spawn_group, stop_group
from naf_ros.ros.background import BackgroundNode
from naf_ros.ros.names import DIAGNOSTICS_TOPIC, PROGRESS_TOPIC, metric_topic

PARTS = ("throughput", "latency", "arms", "curve")
LOCK_DIR = Path(tempfile.gettempdir()) / "naf_ros_test_domains"  # shared with test/support/ros.py
EVAL_LINE = re.compile(r"eval after episode (\d+): return (-?[0-9.]+(?:e-?\d+)?)")


# --- options ----------------------------------------------------------------------------------
def _int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    """All options of this suite; ``main`` fills in whatever bench.py's namespace lacks."""
    p = argparse.ArgumentParser(prog="naf-ros bench graph", description=__doc__.splitlines()[0])
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
    p.add_argument("--domains", default="224-232", help="ROS domain ids to lease, lo-hi")
    p.add_argument("--run-timeout", type=float, default=1800.0, help="limit per graph run (s)")
    p.add_argument("--workers", type=int, default=2, help=">1: curve runs side by side")
    return p


def _complete(args: argparse.Namespace) -> argparse.Namespace:
    """bench.py's parser knows only its own flags: take ours from their defaults."""
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
    for key, value in {**graph_set_sections(args), **overrides}.items():
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


# --- domains and processes --------------------------------------------------------------------
class DomainLease:
    """An exclusively held ROS domain id (flock on a file, so concurrent runs never share)."""

    def __init__(self, domains: str) -> None:
        lo, hi = (int(v) for v in domains.split("-"))
        LOCK_DIR.mkdir(parents=True, exist_ok=True)
        for did in range(lo, hi + 1):
            fd = os.open(LOCK_DIR / f"{did}.lock", os.O_CREAT | os.O_RDWR, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self.domain_id, self._fd = did, fd
            return
        raise RuntimeError(f"no free ROS domain id in {domains}")

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


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


def _progress_value(msg) -> tuple[float, float]:
    """(transitions, updates) of one learner progress message."""
    from naf_ros.ros.codec import unpack_arrays

    f = unpack_arrays(msg)
    return float(f.get("transitions", np.nan)), float(f.get("updates", np.nan))


def _diag_value(msg) -> dict[str, dict[str, str]]:
    return {s.name: {kv.key: kv.value for kv in s.values} for s in msg.status}


@contextlib.contextmanager
def graph_session(
    args: argparse.Namespace, run_dir: Path, launch_args: list[str]
) -> Iterator[tuple[GraphRun, Probe]]:
    """Lease a domain, start the probe, then the graph; tear everything down on the way out."""
    lease = DomainLease(args.domains)
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


def _qos():
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    deep = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
    return deep, qos_profile_sensor_data


def _base_launch_args(args: argparse.Namespace) -> list[str]:
    out = ["--config", str(args.graph_config)]
    for node in args.graph_skip:
        out += ["--skip", node]
    for item in args.graph_set:
        out += ["--set", item]
    return out


# --- part 1/3: lockstep rate ------------------------------------------------------------------
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


def _in_subprocess(fn: Callable[[dict], dict], job: dict, timeout: float) -> dict:
    """One job in a fresh spawned interpreter (no rclpy state, its own torch threads)."""
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply_async(fn, (job,)).get(timeout)


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
    launch_args = _base_launch_args(args) + [
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

    deep, _ = _qos()
    run_dir = args.out / "graph_runs" / f"{tag}-{time.strftime('%H%M%S')}"
    with graph_session(args, run_dir, launch_args) as (run, probe):
        progress = probe.record(Float64MultiArray, PROGRESS_TOPIC, deep, _progress_value)
        diag = probe.record(DiagnosticArray, DIAGNOSTICS_TOPIC, deep, _diag_value)
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
                res = _in_subprocess(_inprocess_throughput, job, args.run_timeout)
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


# --- part 2: realtime latency -----------------------------------------------------------------
def _pair_latencies(
    js: list[int], cmd: list[int], nonzero: list[bool], period_ns: int
) -> tuple[np.ndarray, dict]:
    """Per command: age of the newest joint state when it went out (first command per state).

    The policy always acts on the newest state it has, so this is its reaction time, except
    when a newer state arrives while it is still computing: then the figure is a lower bound.
    Such lagging shows up instead as *missed periods*, control periods inside an episode
    (commands within two periods on both sides, no end-of-episode zero within two periods
    before) that got no command at all. Zero-effort commands are the policy's end-of-episode
    safety zeros, not reactions; ``cmd`` entries of 0 are excluded samples.
    """
    js = sorted(js)
    lat, used = [], set()
    for t, nz in zip(cmd, nonzero):
        if not nz or not t:
            continue
        i = bisect.bisect_right(js, t) - 1
        if i < 0 or i in used:
            continue
        used.add(i)
        lat.append((t - js[i]) / 1e6)
    times = sorted(t for t, nz in zip(cmd, nonzero) if nz and t)
    # A zero-effort command ends an episode; the periods until the next one starts (reset,
    # first fresh state) are not control periods of an episode.
    zeros = sorted(t for t, nz in zip(cmd, nonzero) if not nz and t)
    missed = periods = 0
    if times:
        for a, b in zip(js, js[1:]):
            if not (times[0] <= a and b <= times[-1]):
                continue
            if bisect.bisect_right(zeros, b) - bisect.bisect_left(zeros, a - 2 * period_ns):
                continue
            before = bisect.bisect_left(times, a) - bisect.bisect_left(times, a - 2 * period_ns)
            after = bisect.bisect_left(times, b + 2 * period_ns) - bisect.bisect_left(times, b)
            if before and after:
                periods += 1
                inside = bisect.bisect_left(times, b) - bisect.bisect_left(times, a)
                missed += inside == 0
    arr = np.asarray(lat)
    info = {
        "over_one_period": int(np.sum(arr > period_ns / 1e6)),
        "missed_periods": missed,
        "in_episode_periods": periods,
    }
    return arr, info


def _stats(ms: np.ndarray) -> dict:
    if not len(ms):
        return {"samples": 0}
    return {
        "samples": int(len(ms)),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p90_ms": round(float(np.percentile(ms, 90)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "max_ms": round(float(ms.max()), 3),
        "mean_ms": round(float(ms.mean()), 3),
    }


def part_latency(args: argparse.Namespace, store: dict) -> dict:
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    cfg = shared_config(args, {})
    control_dt = 0.02
    with contextlib.suppress(Exception):
        from naf_ros.envs.configured import reacher_env_kwargs

        control_dt = float(reacher_env_kwargs(cfg.env).get("control_dt", control_dt))
    period_ns = int(control_dt * 1e9)
    launch_args = _base_launch_args(args) + [
        "--mode",
        "realtime",
        "--episodes",
        "100000",
        "--set",
        set_text("learner.checkpoint_every_s", 0.0),
    ]
    for node in ("naf_policy", "sim_bridge"):  # the state -> command path, at SCHED_FIFO
        launch_args += ["--set", set_text(f"{node}.realtime_priority", args.realtime_priority)]
    deep, sensor = _qos()
    run_dir = args.out / "graph_runs" / f"latency-{time.strftime('%H%M%S')}"
    with graph_session(args, run_dir, launch_args) as (run, probe):
        js = probe.record(JointState, "/joint_states", sensor, lambda m: None)
        cmd = probe.record(
            Float64MultiArray,
            "/effort_controller/commands",
            deep,
            lambda m: bool(np.any(np.asarray(m.data) != 0.0)),
        )
        progress = probe.record(Float64MultiArray, PROGRESS_TOPIC, deep, _progress_value)
        diag = probe.record(DiagnosticArray, DIAGNOSTICS_TOPIC, deep, _diag_value)
        time.sleep(0.5)
        run.start()
        learning_from: int | None = None
        deadline = time.monotonic() + args.run_timeout
        cpu_a = cpu_b = None
        t_cpu = 0.0
        while time.monotonic() < deadline and run.alive():
            last = progress.last()
            # Without a learner (--graph-skip learner) the whole run counts, after 2 s.
            no_learner = "learner" in args.graph_skip and time.monotonic() - run.started > 2.0
            if learning_from is None and (no_learner or (last and last[1] > 0)):
                learning_from = time.time_ns()
                cpu_a, t_cpu = run.cpu_seconds(), time.monotonic()
            if learning_from is not None:
                with cmd.lock:
                    n = sum(1 for t in cmd.received_ns if t > learning_from)
                if n >= args.latency_samples * 1.05 + 10:
                    cpu_b, t_cpu = run.cpu_seconds(), time.monotonic() - t_cpu
                    break
            time.sleep(0.1)
        time.sleep(1.5)  # one more /diagnostics period with the in-node figures
        if not run.alive():
            raise RuntimeError(f"realtime graph stopped early\n{run.tail()}")
        cpu = {}
        if cpu_a and cpu_b:
            cpu = {k: round((cpu_b[k] - cpu_a[k]) / t_cpu, 3) for k in cpu_b if k in cpu_a}
        with js.lock, cmd.lock:
            snap = {
                "js_rx": list(js.received_ns),
                "js_src": list(js.source_ns),
                "cmd_rx": list(cmd.received_ns),
                "cmd_src": list(cmd.source_ns),
                "nz": list(cmd.values),
            }
        node_diag = {}
        for values in reversed(diag.values):
            hits = [v for name, v in values.items() if name.endswith("naf_policy")]
            if hits and "state_to_command_ms_p99" in hits[0]:
                node_diag = hits[0]
                break
        command = shlex.join(run.cmd)
    if learning_from is None:
        raise RuntimeError("the learner never started updating in realtime mode")
    out: dict[str, Any] = {"control_period_ms": control_dt * 1e3, "command": command}
    for phase, keep in (
        ("before_learning", lambda t: t < learning_from),
        ("learning", lambda t: t >= learning_from),
    ):
        res = {}
        for label, jk, ck in (
            ("publisher_stamps", "js_src", "cmd_src"),
            ("dds_reception", "js_rx", "cmd_rx"),
        ):
            cmd_t = [t if keep(r) else 0 for t, r in zip(snap[ck], snap["cmd_rx"])]
            lat, info = _pair_latencies(snap[jk], cmd_t, snap["nz"], period_ns)
            res[label] = {**_stats(lat), **info}
            if phase == "learning" and label == "publisher_stamps":
                store["latency_ms"] = lat.tolist()
        out[phase] = res
    out["joint_states_received"] = len(snap["js_rx"])
    # The node's own figure: its last <= 2000 steps, start-up and pre-learning included.
    out["in_node"] = {
        k: node_diag.get(k)
        for k in (
            "state_to_command_ms_p50",
            "state_to_command_ms_p99",
            "state_to_command_cpu_ms_p50",
            "state_to_command_cpu_ms_p99",
            "state_transit_ms_p50",
            "state_transit_ms_p99",
            "state_dispatch_ms_p50",
            "state_dispatch_ms_p99",
            "episodes",
            "env_steps",
        )
    }
    out["cpu_cores_per_node_while_learning"] = cpu
    out["p99_target_ms"] = 2.0
    if args.latency_reference:
        out["reference_echo"] = latency_reference(args, min(args.latency_samples, 1000), period_ns)
        store["reference_ms"] = out["reference_echo"].pop("_samples_ms", [])
        out["scheduler_wakeup"] = scheduler_wakeup(args.realtime_priority)
    pub = out["learning"]["publisher_stamps"]
    rx = out["learning"]["dds_reception"]
    print(
        f"  external, publisher stamps (bridge write -> policy write) while learning: "
        f"p50 {pub.get('p50_ms')} / p99 {pub.get('p99_ms')} ms over {pub.get('samples')} "
        f"samples, {pub.get('missed_periods')}/{pub.get('in_episode_periods')} control periods "
        f"missed; DDS reception at the probe p50 {rx.get('p50_ms')} / p99 {rx.get('p99_ms')} "
        f"ms; in-node p50 {out['in_node']['state_to_command_ms_p50']} / p99 "
        f"{out['in_node']['state_to_command_ms_p99']} ms (of it CPU in the callback p50 "
        f"{out['in_node']['state_to_command_cpu_ms_p50']} / p99 "
        f"{out['in_node']['state_to_command_cpu_ms_p99']} ms); before the callback: DDS "
        f"transit p50 {out['in_node']['state_transit_ms_p50']} / p99 "
        f"{out['in_node']['state_transit_ms_p99']} ms, dispatch p50 "
        f"{out['in_node']['state_dispatch_ms_p50']} / p99 "
        f"{out['in_node']['state_dispatch_ms_p99']} ms; cores {cpu}",
        flush=True,
    )
    pre = out["before_learning"]["publisher_stamps"]
    print(f"  (before the learner warmed up: p50 {pre.get('p50_ms')} / p99 {pre.get('p99_ms')} ms)")
    if "reference_echo" in out:
        ref = out["reference_echo"]["publisher_stamps"]
        print(
            f"  reference (bridge + in-callback echo, publisher stamps): p50 {ref.get('p50_ms')} "
            f"/ p99 {ref.get('p99_ms')} ms over {ref.get('samples')} samples",
            flush=True,
        )
        wake = out["scheduler_wakeup"]
        print(
            f"  scheduler floor (1 ms sleeps at the same priority, no ROS): lateness p50 "
            f"{wake.get('p50_ms')} / p99 {wake.get('p99_ms')} / p99.9 {wake.get('p999_ms')} ms",
            flush=True,
        )
    return out


WAKEUP_PERIOD_S = 0.001
WAKEUP_SAMPLES = 10_000


def _wakeup_jitter(priority: int) -> int:
    """How late a thread wakes from a 1 ms sleep: the OS part of any callback's latency.

    Every message hop needs at least one such wake-up (DDS receive thread, executor), so its
    tail bounds what a node can achieve on this machine at this priority."""
    if priority > 0:
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    late = np.empty(WAKEUP_SAMPLES)
    for i in range(WAKEUP_SAMPLES):
        t0 = time.perf_counter()
        time.sleep(WAKEUP_PERIOD_S)
        late[i] = time.perf_counter() - t0 - WAKEUP_PERIOD_S
    late *= 1e3
    print(
        json.dumps(
            {
                "priority": priority,
                "policy": "fifo" if os.sched_getscheduler(0) == os.SCHED_FIFO else "normal",
                "samples": WAKEUP_SAMPLES,
                "p50_ms": round(float(np.percentile(late, 50)), 3),
                "p99_ms": round(float(np.percentile(late, 99)), 3),
                "p999_ms": round(float(np.percentile(late, 99.9)), 3),
                "max_ms": round(float(late.max()), 3),
                "over_2ms_fraction": round(float((late > 2.0).mean()), 5),
            }
        )
    )
    return 0


def scheduler_wakeup(priority: int) -> dict:
    """:func:`_wakeup_jitter` in a child process (so only it runs at that priority)."""
    cmd = [sys.executable, "-m", "naf_ros.bench_graph", "--wakeup-jitter", str(priority)]
    try:
        done = subprocess.run(
            cmd, env=ros_child_env(None), capture_output=True, text=True, timeout=120
        )
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}


def _echo_responder(priority: int = 0) -> int:
    """Reference responder: answer each joint state from inside its callback.

    One thread, no torch, no episode logic: what rclpy + Fast DDS on this machine cost for
    the state -> command round trip, the floor under the policy node's figure. It runs at
    the policy's SCHED_FIFO ``priority`` (all threads, DDS ones too) so the floor is
    measured on equal terms.
    """
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    from naf_ros.ros import qos

    rclpy.init()
    node = rclpy.create_node("naf_bench_echo")
    if priority > 0:
        from naf_ros.ros.realtime import raise_priority

        raise_priority(node, priority)
    pub = node.create_publisher(Float64MultiArray, "/effort_controller/commands", qos.COMMANDS)
    reply = Float64MultiArray(data=[0.01, -0.01, 0.01])
    node.create_subscription(
        JointState, "/joint_states", lambda _m: pub.publish(reply), qos.JOINT_STATES_SUB
    )
    with contextlib.suppress(KeyboardInterrupt, ExternalShutdownException):
        rclpy.spin(node)
    return 0


def _spawn(cmd: list[str], domain_id: int, log_path: Path) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        return spawn_group(cmd, ros_child_env(domain_id), log)


def latency_reference(args: argparse.Namespace, samples: int, period_ns: int) -> dict:
    """The realtime bridge answered by :func:`_echo_responder` instead of the policy."""
    from sensor_msgs.msg import JointState
    from std_msgs.msg import Float64MultiArray

    deep, sensor = _qos()
    run_dir = args.out / "graph_runs" / f"latency-reference-{time.strftime('%H%M%S')}"
    run_dir.mkdir(parents=True, exist_ok=True)
    lease = DomainLease(args.domains)
    probe = None
    procs: list[subprocess.Popen] = []
    try:
        probe = Probe(lease.domain_id)
        js = probe.record(JointState, "/joint_states", sensor, lambda m: None)
        cmd = probe.record(Float64MultiArray, "/effort_controller/commands", deep, lambda m: True)
        time.sleep(0.5)
        bridge = [sys.executable, "-m", "naf_ros.ros.sim_bridge", "--ros-args"]
        bridge += ["-p", "mode:=realtime", "-p", "command_timeout:=5.0"]
        bridge += ["-p", f"realtime_priority:={args.realtime_priority}"]
        echo = [sys.executable, "-m", "naf_ros.bench_graph", "--echo-responder"]
        echo += ["--realtime-priority", str(args.realtime_priority)]
        procs.append(_spawn(bridge, lease.domain_id, run_dir / "sim_bridge.log"))
        procs.append(_spawn(echo, lease.domain_id, run_dir / "echo.log"))
        deadline = time.monotonic() + min(args.run_timeout, 300.0)
        while len(cmd) < samples + 100 and time.monotonic() < deadline:
            if any(p.poll() is not None for p in procs):
                raise RuntimeError(f"reference bridge/echo exited; logs in {run_dir}")
            time.sleep(0.1)
        with js.lock, cmd.lock:
            snap = {
                k: list(getattr(s, f))
                for k, s, f in (
                    ("js_src", js, "source_ns"),
                    ("js_rx", js, "received_ns"),
                    ("cmd_src", cmd, "source_ns"),
                    ("cmd_rx", cmd, "received_ns"),
                )
            }
    finally:
        for proc in procs:
            stop_group(proc, 15.0)
        if probe is not None:
            probe.close()
        lease.release()
    out: dict[str, Any] = {
        "responder": "in-callback echo (naf_ros.bench_graph --echo-responder)",
        "realtime_priority": args.realtime_priority,
    }
    for label, jk, ck in (
        ("publisher_stamps", "js_src", "cmd_src"),
        ("dds_reception", "js_rx", "cmd_rx"),
    ):
        cmd_t = snap[ck][100:]  # skip discovery/start-up
        lat, info = _pair_latencies(snap[jk], cmd_t, [True] * len(cmd_t), period_ns)
        out[label] = {**_stats(lat), **info}
        if label == "publisher_stamps":
            out["_samples_ms"] = lat.tolist()
    return out


# --- part 4: learning curves ------------------------------------------------------------------
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
    launch_args = _base_launch_args(args) + ["--mode", "lockstep"]
    for key, value in overrides.items():
        launch_args += ["--set", set_text(key, value)]
    deep, _ = _qos()
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
            runs["in-process"].append(_in_subprocess(_inprocess_curve, job, args.run_timeout))
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


# --- plots and the whole suite ----------------------------------------------------------------
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
    args = _complete(args)
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
        from naf_ros.bench import machine

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


if __name__ == "__main__":
    _cli = build_parser().parse_args()
    if _cli.wakeup_jitter is not None:
        sys.exit(_wakeup_jitter(_cli.wakeup_jitter))
    if _cli.echo_responder:
        sys.exit(_echo_responder(_cli.realtime_priority))
    sys.exit(main(_cli))
