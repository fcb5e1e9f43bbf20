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
SIGKILL for stragglers) and exits 0 on a clean finish; a graph without policies (a learner
host, ``--skip naf_policy``) runs until it is stopped. ``--skip sim_bridge`` is a real arm:
the policy then resets by homing (nobody serves ``sim/reset``) and the graph runs realtime,
unless ``--reset-mode`` / ``--mode`` say otherwise.

DDS traffic stays on this machine: ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` for every
process, the launcher's own included, unless ``--discovery-range SUBNET`` lets the nodes
find peers on the local network (e.g. the arms here, ``--skip learner``, and the learner on
another host, same ``--domain-id``).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from naf_ros.bringup.params import (
    DESCRIPTION_NODE,
    NODE_MODULES,
    NODES,
    SHARED_KEY,
    effective_config,
    flatten,
    parse_set,
    read_params_file,
    write_override_file,
)
from naf_ros.bringup.proc_group import DISCOVERY_RANGES, PACKAGE_ROOT, ros_child_env
from naf_ros.bringup.progress import Progress
from naf_ros.config import ConfigError
from naf_ros.envs.configured import (
    ROBOT_DESCRIPTION,
    arm_kwargs,
    reacher_task,
    uses_robot_description,
)
from naf_ros.ros.names import RESET_MODES


def default_config_path() -> Path:
    """The YAML in the source tree, else the installed share/naf_ros copy."""
    local = PACKAGE_ROOT / "config" / "reacher_sim.yaml"
    if local.is_file():
        return local
    share = Path(sys.prefix) / "share" / "naf_ros" / "config" / "reacher_sim.yaml"
    return share if share.is_file() else local


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


def child_env(domain_id: int | None, discovery_range: str = "LOCALHOST") -> dict[str, str]:
    """Environment of every node: loopback-only discovery unless told, package importable."""
    return ros_child_env(domain_id, discovery_range)


def node_available(node: str) -> bool:
    return importlib.util.find_spec(NODE_MODULES[node]) is not None


def real_arm(args: argparse.Namespace) -> bool:
    """No simulator in this graph (``--skip sim_bridge``): the arm is a real one."""
    return "sim_bridge" in args.skip


def policy_reset_mode(args: argparse.Namespace, user_set: bool) -> str | None:
    """The policy's ``reset_mode`` to impose, or None to leave the YAML's in force.

    Without the bridge nobody serves ``sim/reset``: a policy left at the YAML's ``service``
    would wait for it forever, so a real arm resets by homing unless the user chose a mode
    (``--reset-mode`` or ``--set [naf_policy.]reset_mode=...``).
    """
    if args.reset_mode is not None:
        return args.reset_mode
    if real_arm(args) and not user_set:
        return "homing"
    return None


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
    user_set = {**node_overrides.get(None, {}), **node_overrides.get("naf_policy", {})}
    reset_mode = policy_reset_mode(args, "reset_mode" in user_set)
    if reset_mode is not None:
        policy_extra["reset_mode"] = reset_mode
    namespaces = [
        f"{args.namespace}{i}" if args.arms > 1 else args.namespace_single for i in range(args.arms)
    ]
    description = getattr(args, "robot_description", None)
    if description is not None:
        # What robot_state_publisher does on a real system: the arm's URDF latched in each
        # arm's namespace, and at the root for the shared learning nodes.
        for ns in [*namespaces, *([""] if "" not in namespaces else [])]:
            children.append(make(DESCRIPTION_NODE, ns, {"file": str(description)}))
    for i, ns in enumerate(namespaces):
        arm = {"arm_index": i}
        if args.controller_name:
            arm["controller_name"] = args.controller_name
        if "sim_bridge" not in args.skip:
            children.append(make("sim_bridge", ns, {**arm, "publish_clock": i == 0}))
        if "naf_policy" not in args.skip:
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
    p.add_argument("--exploration", choices=("ou", "precision", "gaussian", "none", "policy"))
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
        "--discovery-range",
        choices=DISCOVERY_RANGES,
        default="LOCALHOST",
        help="ROS_AUTOMATIC_DISCOVERY_RANGE of every node: LOCALHOST (default) or SUBNET "
        "(nodes on other hosts of the local network, e.g. a learner elsewhere)",
    )
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
        help="do not start this node (e.g. sim_bridge for a real arm, which implies "
        "--reset-mode homing and, unless --mode is given, realtime)",
    )
    p.add_argument(
        "--reset-mode",
        choices=RESET_MODES,
        default=None,
        help="naf_policy.reset_mode: service (sim/reset) or homing (PD to home_position); "
        "default: homing with --skip sim_bridge, else the YAML's",
    )
    p.add_argument(
        "--record",
        default=None,
        metavar="NAME",
        help="record experience to rosbag2 under RUN_DIR/NAME (sets bag.record)",
    )
    p.add_argument(
        "--robot-description",
        type=Path,
        default=None,
        metavar="FILE",
        help="latch this URDF on robot_description (as robot_state_publisher would) and take "
        "the arm from it (arm.model: robot_description, unless --set arm.model=...)",
    )
    p.add_argument("--respawn", action="store_true", help="restart nodes that die")
    p.add_argument("--max-restarts", type=int, default=3, help="restart limit per node")
    p.add_argument("--timeout", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--quiet", action="store_true", help="no per-episode lines")
    return p


class Launch:
    """Owns the children for one run; ``run()`` returns the exit code."""

    def _check_arm(self, args: argparse.Namespace) -> None:
        """Build the arm once here, before any node starts or anything is written: a file or
        ``--robot-description`` that cannot serve as the arm stops the launch with one line,
        not six nodes each failing configure. (A ``robot_description`` served by the arm's
        own robot_state_publisher is only seen by the nodes, which check it the same way.)"""
        description = None
        if uses_robot_description(self.cfg):
            if args.robot_description is None:
                return
            try:
                description = args.robot_description.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"--robot-description: {args.robot_description}: {exc}") from None
        try:
            reacher_task(self.cfg, description)
        except ConfigError:
            raise
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        params_file = (args.config or default_config_path()).resolve()
        blocks = read_params_file(params_file)
        unknown = [k for k in blocks if k not in NODES and k != SHARED_KEY]
        if unknown:
            raise ConfigError(f"{params_file}: unknown node(s) {unknown}; nodes are {NODES}")
        node_overrides: dict[str | None, dict[str, Any]] = {}
        flat_blocks = {name: flatten(block) for name, block in blocks.items()}
        for text in args.set:
            node, key, value = parse_set(text)
            # ROS parameters are typed: 1000 for a parameter the YAML holds as 60.0 would be
            # refused by the node, so follow the YAML's type.
            ref = flat_blocks.get(node or "", {}).get(key, flat_blocks.get(SHARED_KEY, {}).get(key))
            if isinstance(ref, float) and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            node_overrides.setdefault(node, {})[key] = value
        shared = blocks.get(SHARED_KEY, {})
        if args.robot_description is not None:
            args.robot_description = args.robot_description.expanduser().resolve()
            if not args.robot_description.is_file():
                raise ConfigError(f"--robot-description: {args.robot_description}: no such file")
            node_overrides.setdefault(None, {}).setdefault("arm.model", ROBOT_DESCRIPTION)
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
        arm_kwargs(self.cfg, description="")  # arm keys the env cannot take: stop here
        self._check_arm(args)
        if args.arms < 1:
            raise ConfigError("--arms: must be >= 1")
        if args.mode is None:  # a real arm does not wait for the learner: realtime
            args.mode = "realtime" if real_arm(args) else str(shared.get("mode", "lockstep"))
        self.run_dir = (args.run_dir or Path(self.cfg.train.run_dir)).resolve()
        args.run_dir = self.run_dir
        self.log_dir = self.run_dir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.domain_id = args.domain_id
        if self.domain_id is None and os.environ.get("ROS_DOMAIN_ID"):
            self.domain_id = int(os.environ["ROS_DOMAIN_ID"])
        self.env = child_env(self.domain_id, args.discovery_range)
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
        os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = self.args.discovery_range
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
                # Without policies (a learner host: --skip naf_policy) run until stopped.
                if policies and all(c.finished for c in policies):
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
