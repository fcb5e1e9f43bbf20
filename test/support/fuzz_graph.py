"""The fuzz test's graph: the launcher, the fuzzer's publishers and the live-topic checks.

One :class:`Graph` per module run: the default graph started as a user starts it
(``naf-ros launch``, lockstep, Algorithm 2 on, the small shapes of
:mod:`support.fuzz_payloads`), a ``fuzzer`` node with a publisher on every input
(``TOPICS``), and a :class:`Watch` on the bridge's joint states and the policy's commands
that checks every real message as it arrives (fuzz messages are told apart by publisher
GID). The counters the nodes report on ``/diagnostics`` are read through it too.
"""

from __future__ import annotations

import shutil
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rclpy.subscription_content_filter_options import ContentFilterOptions
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float32MultiArray, Float64MultiArray

from naf_ros.ros import qos
from naf_ros.ros.names import (
    CONTROLLER_TOPIC,
    DIAGNOSTICS_TOPIC,
    MODEL_TOPIC,
    PROGRESS_TOPIC,
    TRANSITIONS_TOPIC,
    WEIGHTS_TOPIC,
)
from support.faults import alive, dump_stacks, node_pid
from support.fuzz_payloads import ARM, HIDDEN, JOINTS, T
from support.ros import RosTestNode, launch_graph, reap_launch, wait_until

LIMITS = np.asarray(ARM.effort_limits, dtype=float)

NICE = ["nice", "-n", "5"] if shutil.which("nice") else []

GRAPH = [
    "--mode", "lockstep", "--episodes", "100000", "--quiet", "--timeout", "400",
    "--set", f"agent.hidden={HIDDEN}", "--set", f"env.max_episode_steps={T}",
    "--set", "agent.warmup_steps=20", "--set", "agent.batch_size=16",
    "--set", "agent.updates_per_step=1", "--set", "model_based.imagination_updates_per_step=1",
    "--set", "train.eval_every=100000",
    "--set", "model_based.enabled=true", "--set", "model_based.episodes_per_fit=2",
    "--set", "model_based.prior_episodes=4", "--set", "model_based.ilqg_probability=0.3",
    "--set", "model_based.rollout_length=3",
    "--set", "learner.checkpoint_every_s=5.0", "--set", "learner.weights_every_updates=20",
    "--set", "learner.gap_timeout_s=1.0",
    "--set", "naf_policy.state_timeout=1.0", "--set", "naf_policy.reset_timeout=3.0",
    "--set", "naf_policy.wait_for_learner=1.0", "--set", "naf_policy.diagnostics_period=0.25",
    "--set", "sim_bridge.diagnostics_period=0.25",
]  # fmt: skip
NODES = ("sim_bridge", "naf_policy", "learner", "dynamics_fitter", "ilqg_explorer")

LATCHED_OUT = QoSProfile(
    depth=50, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
)
STREAM_OUT = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
PROBE_IN = QoSProfile(depth=20000, reliability=ReliabilityPolicy.RELIABLE)
# input -> (message type, topic, fuzzer QoS: latched readers need a transient-local writer)
TOPICS: dict[str, tuple[type, str, QoSProfile]] = {
    "commands": (Float64MultiArray, "/effort_controller/commands", STREAM_OUT),
    "target_request": (PointStamped, "/target_request", LATCHED_OUT),
    "joint_states": (JointState, "/joint_states", STREAM_OUT),
    "target": (PointStamped, "/target", LATCHED_OUT),
    "weights": (Float32MultiArray, WEIGHTS_TOPIC, LATCHED_OUT),
    "controller": (Float64MultiArray, CONTROLLER_TOPIC, LATCHED_OUT),
    "progress": (Float64MultiArray, PROGRESS_TOPIC, LATCHED_OUT),
    "transitions": (Float64MultiArray, TRANSITIONS_TOPIC, STREAM_OUT),
    "models": (Float64MultiArray, MODEL_TOPIC, LATCHED_OUT),
}


# --- watching the real topics -----------------------------------------------------------------
def gid_of(info: Any) -> bytes:
    return bytes(info["publisher_gid"]["data"])


class Watch:
    """Checks every message on one topic from anyone but the fuzzer, as it arrives."""

    def __init__(self, check: Callable[[Any], str | None]) -> None:
        self.check = check
        self.zeros = 0  # real messages whose data are all zero (the e-stop's commands)
        self.fuzz_gids: set[bytes] = set()
        self.count = 0
        self.fuzz_seen = 0
        self.problems: list[str] = []
        self.last: Any = None
        self._lock = threading.Lock()

    def __call__(self, msg: Any, info: Any) -> None:
        if gid_of(info) in self.fuzz_gids:
            with self._lock:
                self.fuzz_seen += 1
            return
        problem = self.check(msg)
        with self._lock:
            self.count += 1
            self.zeros += not any(getattr(msg, "data", (1.0,)))
            self.last = msg
            if problem is not None and len(self.problems) < 20:
                self.problems.append(problem)


def check_joint_state(msg: JointState) -> str | None:
    """Physics: what the bridge reports is finite, and the applied effort within limits."""
    values = [np.asarray(v, dtype=float) for v in (msg.position, msg.velocity, msg.effort)]
    if any(v.shape != (len(JOINTS),) or not np.isfinite(v).all() for v in values):
        return f"bridge joint state not finite: {values}"
    if np.any(np.abs(values[2]) > LIMITS + 1e-9):
        return f"bridge applied effort {values[2]} beyond limits {LIMITS}"
    return None


def check_command(msg: Float64MultiArray) -> str | None:
    """The arm: every policy command is finite, one per joint, within the effort limits."""
    data = np.asarray(msg.data, dtype=float)
    if data.shape != (len(JOINTS),) or not np.isfinite(data).all():
        return f"policy command {data} malformed or not finite"
    if np.any(np.abs(data) > LIMITS + 1e-12):
        return f"policy command {data} beyond limits {LIMITS}"
    return None


# --- the graph --------------------------------------------------------------------------------
class Graph:
    """The launcher process, the fuzzer/probe node and what it watches."""

    def __init__(self, domain: int, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.node = RosTestNode(domain, name="fuzzer")
        n = self.node.node
        self.pubs = {name: n.create_publisher(*spec) for name, spec in TOPICS.items()}
        self.estop = n.create_publisher(Bool, "/estop", qos.ESTOP)
        self.watch = {
            "joint_states": Watch(check_joint_state),
            "commands": Watch(check_command),
        }
        # Receiving costs rclpy ~0.5 ms a message, so DDS drops most fuzz messages before
        # they reach Python, by fields the real publishers always set the same way: the
        # bridge's stamps are normalised (nanosec < 1e9), the policy's commands have
        # data_offset 0. Everything they publish still arrives and is checked.
        filters = {
            "joint_states": ContentFilterOptions("header.stamp.nanosec < %0", ["1000000000"]),
            "commands": ContentFilterOptions("layout.data_offset = %0", ["0"]),
        }
        for name, watch in self.watch.items():
            cls, topic, _ = TOPICS[name]
            watch.fuzz_gids = self.fuzz_gids(topic)
            n.create_subscription(cls, topic, watch, PROBE_IN, content_filter_options=filters[name])
        self.diag = self.node.collect(DiagnosticArray, DIAGNOSTICS_TOPIC, 1000)
        self.proc = launch_graph(domain, run_dir, *GRAPH, prefix=NICE)
        self.output = ""

    def fuzz_gids(self, topic: str) -> set[bytes]:
        """GIDs of this node's own publishers on ``topic`` (to tell fuzz from real traffic)."""
        found: set[bytes] = set()

        def ours() -> bool:
            infos = self.node.node.get_publishers_info_by_topic(topic)
            found.update(bytes(i.endpoint_gid) for i in infos if i.node_name == "fuzzer")
            return bool(found)

        assert wait_until(ours, 10.0), f"own publisher on {topic} not in the graph"
        return found

    def status(self, node: str) -> dict[str, str]:
        """Newest /diagnostics values of ``node``."""
        for msg in reversed(self.diag.snapshot()):
            for status in msg.status:
                if status.name.endswith(f"/{node}"):
                    return {kv.key: kv.value for kv in status.values}
        return {}

    def rejected(self, node: str) -> Counter[str]:
        vals = self.status(node)
        return Counter({k[9:]: int(v) for k, v in vals.items() if k.startswith("rejected/")})

    def value(self, node: str, key: str, default: float = -1.0) -> float:
        try:
            return float(self.status(node).get(key, default))
        except ValueError:
            return default

    def updates(self) -> float:
        return self.value("learner", "updates", 0.0)

    def episodes(self) -> float:
        return self.value("naf_policy", "episodes", 0.0)

    def pids(self) -> dict[str, int | None]:
        return {name: node_pid(self.proc.pid, name) for name in NODES}

    def log_tail(self, node: str, n: int = 30) -> str:
        path = self.run_dir / "logs" / f"{node}.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        return "\n".join(lines[-n:])

    def stop(self) -> int:
        """Ctrl-C to the launcher, as a user stops the graph; returns its exit code.

        The launcher SIGKILLs a node still up 10 s after its SIGINT (the policy first, then
        the rest): a node still up 7 and 17 s after the Ctrl-C is asked for its stacks
        first, so a shutdown hang leaves where it was in ``output``.
        """
        if self.proc.poll() is None:
            pids = self.pids()
            self.proc.send_signal(signal.SIGINT)
            t_int = time.monotonic()
            for at in (7.0, 17.0):
                wait_until(
                    lambda: not any(pid and alive(pid) for pid in pids.values()),
                    t_int + at - time.monotonic(),
                )
                for name, pid in pids.items():
                    if pid and alive(pid):
                        log = self.run_dir / "logs" / f"{name}.log"
                        self.output += f"\n=== {name} still up {at:.0f} s after Ctrl-C ===\n"
                        self.output += dump_stacks(pid, log) + "\n"
        self.output += reap_launch(self.proc, 90)
        return self.proc.returncode


def wait_settled(g: Graph, nodes: tuple[str, ...], quiet_s: float = 2.5, timeout: float = 20.0):
    """Wait until no node's rejection counters moved for ``quiet_s`` (backlogs drained)."""
    last, since = None, time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = {n: sum(g.rejected(n).values()) for n in nodes}
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.25)
