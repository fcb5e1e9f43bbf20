"""``naf-ros launch``: the node graph of ``launch/reacher_sim.launch.py`` without ROS tooling.

On pip-only machines there is no ``ros2 launch``; this starts the same nodes from the same
YAML, each in its own OS process (``python -m <module> --ros-args --params-file
<yaml> ...``), with K namespaced bridge+policy pairs (``arm0``, ``arm1``, ...) and one
learner, dynamics fitter and iLQG explorer; with ``bag.record`` (or ``--record NAME``) also
one experience recorder per arm. ``--respawn`` restarts a node that dies (up to
``--max-restarts`` times each; the nodes resume from their checkpoints in the run folder).
It prints one line per finished episode from
``/naf/metrics/*``, stops when every policy has finished its episodes (or on Ctrl-C: SIGINT
to the policies first so their zero-effort command reaches the bridges, then to the rest,
SIGKILL for stragglers) and exits 0 on a clean finish.

DDS traffic stays on this machine: ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` for every
process, the launcher's own included.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import math
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from naf_ros.config import ConfigError, config_from_dict
from naf_ros.proc_group import PACKAGE_ROOT, ros_child_env
from naf_ros.ros.background import BackgroundNode
from naf_ros.ros.names import POLICY_METRICS, metric_topic

NODES = (
    "sim_bridge",
    "naf_policy",
    "learner",
    "dynamics_fitter",
    "ilqg_explorer",
    "bag_recorder",
)
ARM_NODES = ("sim_bridge", "naf_policy", "bag_recorder")
# Node (and console script) name -> the module whose main() runs it.
NODE_MODULES = {
    "sim_bridge": "naf_ros.ros.sim_bridge",
    "naf_policy": "naf_ros.ros.policy.node",
    "learner": "naf_ros.ros.learner",
    "dynamics_fitter": "naf_ros.ros.dynamics_fitter",
    "ilqg_explorer": "naf_ros.ros.ilqg_explorer",
    "bag_recorder": "naf_ros.ros.bag_recorder",
}
SHARED_KEY = "/**"
SECTIONS = ("env", "agent", "exploration", "model_based", "train", "safety", "bag")
METRIC_NAMES = POLICY_METRICS + ("updates_per_s", "q_loss")  # what a progress line shows


def default_config_path() -> Path:
    """The YAML in the source tree, else the installed share/naf_ros copy."""
    local = PACKAGE_ROOT / "config" / "reacher_sim.yaml"
    if local.is_file():
        return local
    share = Path(sys.prefix) / "share" / "naf_ros" / "config" / "reacher_sim.yaml"
    return share if share.is_file() else local


# --- parameters -------------------------------------------------------------------------------
def _node_key(key: str) -> str | None:
    """``/**/sim_bridge`` / ``sim_bridge`` -> ``sim_bridge``; ``/**`` -> ``/**``."""
    if key == SHARED_KEY:
        return SHARED_KEY
    name = key.rsplit("/", 1)[-1]
    return name or None


def read_params_file(path: Path) -> dict[str, dict[str, Any]]:
    """Node (or ``/**``) -> its ``ros__parameters`` mapping."""
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    out: dict[str, dict[str, Any]] = {}
    for key, block in data.items():
        name = _node_key(str(key))
        if not isinstance(block, dict) or "ros__parameters" not in block:
            raise ConfigError(f"{path}: {key}: expected a 'ros__parameters:' mapping")
        params = block["ros__parameters"] or {}
        out.setdefault(name, {}).update(params)
    return out


def _flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def parse_set(text: str) -> tuple[str | None, str, Any]:
    """``node.section.key=value`` / ``node.key=value`` (one node) or ``section.key=value`` (all)."""
    if "=" not in text:
        raise ConfigError(f"{text}: overrides look like [node.]section.key=value")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    parts = key.strip().split(".")
    if isinstance(value, str) and parts[-1] != "id":  # YAML 1.1 reads 1e-4 as text
        try:
            value = float(value)
        except ValueError:
            pass
    node = None
    if parts[0] in NODES:
        node, parts = parts[0], parts[1:]
    if not parts or (node is None and parts[0] not in SECTIONS and len(parts) != 1):
        raise ConfigError(f"{key}: overrides look like [node.]section.key=value")
    if node is None and len(parts) == 1 and parts[0] in SECTIONS:
        raise ConfigError(f"{key}: name a key inside section {parts[0]}")
    return node, ".".join(parts), value


def param_text(value: Any) -> str:
    """A value as ``-p name:=value`` text (YAML, as rcl parses it)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "''"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(param_text(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    return str(value)


def write_override_file(path: Path, node: str, namespace: str, values: dict[str, Any]) -> Path:
    """Per-process overrides keyed by the node's fully qualified name (as launch_ros does).

    rcl applies the most specific matching block last, so ``/**/<node>`` blocks of the main
    YAML would beat plain ``-p`` overrides (stored under ``/**``); a second params file with
    a ``/<ns>/<node>`` block wins over both.
    """
    nested: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            value = ""
        elif isinstance(value, dict):
            value = yaml.safe_dump(value, default_flow_style=True).strip()
        elif isinstance(value, tuple):
            value = list(value)
        parts = key.split(".")
        d = nested
        for part in parts[:-1]:
            d = d.setdefault(part, {})
        d[parts[-1]] = value
    fqn = f"/{namespace}/{node}" if namespace else f"/{node}"
    path.write_text(yaml.safe_dump({fqn: {"ros__parameters": nested}}, sort_keys=False))
    return path


def effective_config(shared: dict[str, Any], overrides: dict[str, Any]):
    """Validate the shared sections (+ overrides for all nodes) as the nodes will see them."""
    flat = {k: v for k, v in _flatten(shared).items() if k.split(".", 1)[0] in SECTIONS}
    flat.update({k: v for k, v in overrides.items() if k.split(".", 1)[0] in SECTIONS})
    nested: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        section, name = key.split(".", 1)
        if isinstance(value, str) and value == "" and name != "id":
            value = None
        nested.setdefault(section, {})[name] = value
    return config_from_dict(nested)


# --- processes --------------------------------------------------------------------------------
@dataclass
class Child:
    """One node process and how to start it again."""

    node: str
    namespace: str
    args: list[str]
    log_path: Path
    proc: subprocess.Popen | None = None
    restarts: int = 0
    finished: bool = False
    log: Any = field(default=None, repr=False)

    @property
    def label(self) -> str:
        return f"{self.namespace}/{self.node}" if self.namespace else self.node

    def start(self, env: dict[str, str]) -> None:
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.args, env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=os.getcwd()
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def close_log(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None


def child_env(domain_id: int | None) -> dict[str, str]:
    """Environment of every node: loopback-only discovery, this package importable."""
    return ros_child_env(domain_id)


def node_available(node: str) -> bool:
    return importlib.util.find_spec(NODE_MODULES[node]) is not None


def build_children(
    args: argparse.Namespace,
    params_file: Path,
    log_dir: Path,
    node_overrides: dict[str | None, dict[str, Any]],
    record: bool = False,
) -> list[Child]:
    """The process list: per arm a bridge, a policy (and a recorder), then the shared nodes."""
    children: list[Child] = []
    params_dir = log_dir.parent / "params"
    params_dir.mkdir(parents=True, exist_ok=True)
    common = dict(node_overrides.get(None, {}))
    common["mode"] = args.mode
    common["train.run_dir"] = str(args.run_dir)
    if args.episodes is not None:
        common["train.episodes"] = args.episodes
    if args.exploration is not None:
        common["exploration.kind"] = args.exploration
    if args.model is not None:
        common["model_based.model"] = args.model
    if getattr(args, "record", None):
        common["bag.record"] = args.record

    def make(node: str, namespace: str, extra: dict[str, Any]) -> Child:
        tag = f"{namespace}_{node}" if namespace else node
        values = {**common, **extra, **node_overrides.get(node, {})}
        override = write_override_file(params_dir / f"{tag}.yaml", node, namespace, values)
        cmd = [
            sys.executable,
            "-m",
            NODE_MODULES[node],
            "--ros-args",
            "--params-file",
            str(params_file),
            "--params-file",
            str(override),
        ]
        if namespace:
            cmd += ["-r", f"__ns:=/{namespace}"]
        return Child(node, namespace, cmd, log_dir / f"{tag}.log")

    learner_up = "learner" not in args.skip and node_available("learner")
    policy_extra: dict[str, Any] = {} if learner_up else {"startup_timeout": 0.0}
    for i in range(args.arms):
        ns = f"{args.namespace}{i}" if args.arms > 1 else args.namespace_single
        arm = {"arm_index": i}
        if args.controller_name:
            arm["controller_name"] = args.controller_name
        if "sim_bridge" not in args.skip:
            children.append(make("sim_bridge", ns, {**arm, "publish_clock": i == 0}))
        children.append(make("naf_policy", ns, {**arm, **policy_extra}))
        if record and "bag_recorder" not in args.skip:
            children.append(make("bag_recorder", ns, arm))
    for node in ("learner", "dynamics_fitter", "ilqg_explorer"):
        if node in args.skip:
            continue
        if not node_available(node):
            print(f"naf-ros launch: {node} is not available in this build; skipped", flush=True)
            continue
        children.append(make(node, "", {}))
    return children


# --- progress ---------------------------------------------------------------------------------
class Progress(BackgroundNode):
    """Subscribes to /naf/metrics/* and prints one line per finished episode."""

    def __init__(
        self, domain_id: int | None, total: int, csv_path: Path | None, quiet: bool = False
    ) -> None:
        from std_msgs.msg import Float64

        from naf_ros.ros import qos

        self.total, self.quiet = total, quiet
        self.latest: dict[str, float] = {m: math.nan for m in METRIC_NAMES}
        self.episodes = 0
        self.counts: dict[str, int] = {}
        self._pending: float | None = None
        self._lock = threading.Lock()
        self._csv = open(csv_path, "w", newline="") if csv_path else None
        self._writer = None
        if self._csv is not None:
            self._writer = csv.writer(self._csv)
            self._writer.writerow(
                [
                    "episode",
                    "return",
                    "tip_distance",
                    "eval_return",
                    "eval_tip_distance",
                    "updates_per_s",
                    "wall_s",
                ]
            )
        self._t0 = time.monotonic()
        super().__init__("naf_launch_progress", domain_id, spin_timeout=0.1)
        for name in METRIC_NAMES:
            self.node.create_subscription(
                Float64,
                metric_topic(name),
                lambda msg, name=name: self._on_metric(name, msg.data),
                qos.METRICS,
            )
        self.node.create_timer(0.25, self._check_pending)

    def _on_metric(self, name: str, value: float) -> None:
        """Keep the newest value per metric; an episode's line waits for its tip distance."""
        with self._lock:
            self.latest[name] = value
            self.counts[name] = self.counts.get(name, 0) + 1
            if name == "eval_return" and not self.quiet:
                print(f"      eval after episode {self.episodes}: return {value:8.2f}", flush=True)
            if name == "episode_return":
                self._pending = time.monotonic()
            if self._pending is not None and (
                self.counts.get("tip_distance", 0) >= self.counts.get("episode_return", 0)
            ):
                self._flush()

    def _flush(self) -> None:
        self._pending = None
        self.episodes += 1
        value = self.latest["episode_return"]
        row = [
            self.episodes,
            value,
            self.latest["tip_distance"],
            self.latest["eval_return"],
            self.latest["eval_tip_distance"],
            self.latest["updates_per_s"],
            round(time.monotonic() - self._t0, 3),
        ]
        if self._writer is not None:
            self._writer.writerow(row)
            self._csv.flush()
        if not self.quiet:
            print(
                f"ep {self.episodes:4d}/{self.total} | return {value:8.2f} | "
                f"tip {self.latest['tip_distance']:.3f} m | "
                f"eval {self.latest['eval_return']:8.2f} | "
                f"learner {self.latest['updates_per_s']:6.0f} upd/s",
                flush=True,
            )

    def _check_pending(self) -> None:
        with self._lock:
            if self._pending is not None and time.monotonic() - self._pending > 1.0:
                self._flush()  # the tip distance of this episode was lost: print anyway

    def close(self) -> None:
        super().close()
        with self._lock:
            if self._pending is not None:
                self._flush()
        if self._csv is not None:
            self._csv.close()


# --- the run ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="naf-ros launch", description=__doc__.splitlines()[0])
    p.add_argument(
        "--config",
        "--params-file",
        dest="config",
        type=Path,
        default=None,
        help="params YAML (default: config/reacher_sim.yaml)",
    )
    p.add_argument("--arms", type=int, default=1, help="simulated arms (bridge+policy pairs)")
    p.add_argument(
        "--mode",
        choices=("lockstep", "realtime"),
        default=None,
        help="graph mode (default: the YAML's)",
    )
    p.add_argument("--episodes", type=int, default=None, help="training episodes per arm")
    p.add_argument("--exploration", choices=("ou", "precision", "gaussian", "none"))
    p.add_argument("--model", choices=("linear", "nn", "true"), help="model_based.model")
    p.add_argument("--controller-name", default=None, help="effort controller name")
    p.add_argument(
        "--namespace",
        default="arm",
        help="namespace prefix of the arms when --arms > 1 (arm0, arm1, ...)",
    )
    p.add_argument(
        "--single-namespace",
        dest="namespace_single",
        default="",
        help="namespace of the arm when --arms 1 (default: none)",
    )
    p.add_argument("--run-dir", type=Path, default=None, help="logs, progress.csv, learner output")
    p.add_argument("--domain-id", type=int, default=None, help="ROS_DOMAIN_ID for the graph")
    p.add_argument(
        "--set",
        "-s",
        action="append",
        default=[],
        metavar="[NODE.]SECTION.KEY=VALUE",
        help="override a parameter (repeatable)",
    )
    p.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=NODES,
        help="do not start this node (e.g. sim_bridge for a real arm)",
    )
    p.add_argument(
        "--record",
        default=None,
        metavar="NAME",
        help="record experience to rosbag2 under RUN_DIR/NAME (sets bag.record)",
    )
    p.add_argument("--respawn", action="store_true", help="restart nodes that die")
    p.add_argument("--max-restarts", type=int, default=3, help="restart limit per node")
    p.add_argument("--timeout", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--quiet", action="store_true", help="no per-episode lines")
    return p


class Launch:
    """Owns the children for one run; ``run()`` returns the exit code."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        params_file = (args.config or default_config_path()).resolve()
        blocks = read_params_file(params_file)
        unknown = [k for k in blocks if k not in NODES and k != SHARED_KEY]
        if unknown:
            raise ConfigError(f"{params_file}: unknown node(s) {unknown}; nodes are {NODES}")
        node_overrides: dict[str | None, dict[str, Any]] = {}
        flat_blocks = {name: _flatten(block) for name, block in blocks.items()}
        for text in args.set:
            node, key, value = parse_set(text)
            # ROS parameters are typed: 1000 for a parameter the YAML holds as 60.0 would be
            # refused by the node, so follow the YAML's type.
            ref = flat_blocks.get(node or "", {}).get(key, flat_blocks.get(SHARED_KEY, {}).get(key))
            if isinstance(ref, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            node_overrides.setdefault(node, {})[key] = value
        shared = blocks.get(SHARED_KEY, {})
        overrides = dict(node_overrides.get(None, {}))
        for opt, key in (
            ("episodes", "train.episodes"),
            ("exploration", "exploration.kind"),
            ("model", "model_based.model"),
            ("record", "bag.record"),
        ):
            if getattr(args, opt, None) is not None:
                overrides[key] = getattr(args, opt)
        self.cfg = effective_config(shared, overrides)
        for node, values in node_overrides.items():  # per-node overrides must validate too
            if node is not None:
                effective_config(shared, {**overrides, **values})
        if args.arms < 1:
            raise ConfigError("--arms: must be >= 1")
        if args.mode is None:
            args.mode = str(shared.get("mode", "lockstep"))
        self.run_dir = (args.run_dir or Path(self.cfg.train.run_dir)).resolve()
        args.run_dir = self.run_dir
        self.log_dir = self.run_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.domain_id = args.domain_id
        if self.domain_id is None and os.environ.get("ROS_DOMAIN_ID"):
            self.domain_id = int(os.environ["ROS_DOMAIN_ID"])
        self.env = child_env(self.domain_id)
        self.children = build_children(
            args, params_file, self.log_dir, node_overrides, record=bool(self.cfg.bag.record)
        )
        self.stop = threading.Event()
        self.interrupted = False
        self.params_file = params_file

    def _on_signal(self, _sig, _frame) -> None:
        self.interrupted = True
        self.stop.set()

    def run(self) -> int:
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        os.environ.pop("ROS_STATIC_PEERS", None)
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        progress = None
        failed: list[str] = []
        try:
            total = self.cfg.train.episodes * self.args.arms
            progress = Progress(
                self.domain_id, total, self.run_dir / "progress.csv", self.args.quiet
            )
            print(
                f"naf-ros launch: {len(self.children)} nodes ({self.args.arms} arm(s), "
                f"{self.args.mode}) from {self.params_file}; logs in {self.log_dir}",
                flush=True,
            )
            for child in self.children:
                child.start(self.env)
            deadline = time.monotonic() + self.args.timeout if self.args.timeout else None
            while not self.stop.is_set():
                if deadline is not None and time.monotonic() > deadline:
                    print("naf-ros launch: timeout reached; stopping", flush=True)
                    failed.append("timeout")
                    break
                policies = [c for c in self.children if c.node == "naf_policy"]
                for child in self.children:
                    if child.finished or child.alive():
                        continue
                    code = child.proc.returncode
                    if child.node == "naf_policy" and code == 0:
                        child.finished = True
                        continue
                    tail = self._tail(child)
                    if self.args.respawn and child.restarts < self.args.max_restarts:
                        child.restarts += 1
                        print(
                            f"naf-ros launch: {child.label} exited with {code}; restart "
                            f"{child.restarts}/{self.args.max_restarts}\n{tail}",
                            flush=True,
                        )
                        child.close_log()
                        child.start(self.env)
                    else:
                        child.finished = True
                        failed.append(f"{child.label} exited with {code}")
                        print(
                            f"naf-ros launch: {child.label} exited with {code}\n{tail}", flush=True
                        )
                if all(c.finished for c in policies):
                    break
                if failed and not self.args.respawn:
                    break
                time.sleep(0.1)
            if not self.shutdown():
                failed.append("some nodes needed SIGKILL")
        finally:
            self.shutdown()
            if progress is not None:
                print(
                    f"naf-ros launch: {progress.episodes} episodes reported; "
                    f"progress in {self.run_dir / 'progress.csv'}",
                    flush=True,
                )
                progress.close()
            for sig, handler in old.items():
                signal.signal(sig, handler)
        restarted = [f"{c.label} {c.restarts}" for c in self.children if c.restarts]
        if restarted:
            print(f"naf-ros launch: restarts: {', '.join(restarted)}", flush=True)
        if self.interrupted:
            return 130
        if failed:
            print("naf-ros launch: " + "; ".join(failed), file=sys.stderr, flush=True)
            return 1
        return 0

    @staticmethod
    def _tail(child: Child, lines: int = 15) -> str:
        try:
            text = child.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    " + line for line in text[-lines:])

    def shutdown(self, timeout: float = 10.0) -> bool:
        """SIGINT policies, then everything else; SIGKILL what is still up. True if clean."""
        clean = True
        for group in (("naf_policy",), tuple(n for n in NODES if n != "naf_policy")):
            members = [c for c in self.children if c.node in group and c.alive()]
            for child in members:
                child.proc.send_signal(signal.SIGINT)
            deadline = time.monotonic() + timeout
            for child in members:
                try:
                    child.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    print(f"naf-ros launch: {child.label} ignored SIGINT; SIGKILL", flush=True)
                    child.proc.kill()
                    child.proc.wait(5)
                    clean = False
                if child.proc.returncode not in (0, -signal.SIGINT):
                    clean = False
                    print(
                        f"naf-ros launch: {child.label} stopped with {child.proc.returncode}"
                        f"\n{self._tail(child)}",
                        flush=True,
                    )
        for child in self.children:
            child.close_log()
        return clean


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``naf-ros launch``; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # ``naf-ros launch -- --arms 2``: argparse REMAINDER workaround
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    try:
        launch = Launch(args)
    except ConfigError as exc:
        print(f"naf-ros launch: config error: {exc}", file=sys.stderr)
        return 2
    return launch.run()


if __name__ == "__main__":
    sys.exit(main())
