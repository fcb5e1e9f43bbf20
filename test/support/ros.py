"""Helpers for tests that run real node processes over real DDS.

Every test gets its own ROS domain id (``allocate_domain`` from naf_ros.bringup.domains: a
lock file per id, so concurrent pytest runs and xdist workers never share one), all traffic
stays on loopback (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``), node processes log to files,
and an in-test node spins in a background thread with collectors that record what arrives.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

# Tests lease domain ids through the package's one implementation (benchmarks use it too).
from naf_ros.bringup.domains import allocate_domain as allocate_domain
from naf_ros.ros.background import BackgroundNode

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


# --- environment ------------------------------------------------------------------------------
def ros_env(domain_id: int, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a node process: isolated domain, loopback only, package importable."""
    env = dict(os.environ)
    env["ROS_DOMAIN_ID"] = str(domain_id)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.pop("ROS_STATIC_PEERS", None)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")
    if extra:
        env.update(extra)
    return env


# --- node processes ---------------------------------------------------------------------------
def param_text(value: Any) -> str:
    """A value as ``-p name:=value`` text (YAML, as rcl parses it)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(param_text(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    return str(value)


class NodeProcess:
    """One node in its own OS process, output in a log file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            args, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=str(REPO)
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def sigint(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGINT)

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT, wait, then SIGKILL: how the launcher and a user's Ctrl-C end nodes."""
        self.sigint()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()
        return self.proc.returncode

    def output(self) -> str:
        if not self._log.closed:  # (stop() closed it: a teardown message reads it after)
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stacks(self) -> str:
        """Every thread's stack of this node, for the message of a wait that timed out."""
        from support.faults import dump_stacks

        if not self._log.closed:
            self._log.flush()
        return dump_stacks(self.pid, self.log_path) if self.alive() else "(exited)"


def spawn_node(
    module: str,
    domain_id: int,
    log_dir: Path,
    params: dict[str, Any] | None = None,
    params_file: str | Path | None = None,
    namespace: str | None = None,
    remaps: dict[str, str] | None = None,
    name: str | None = None,
    env: dict[str, str] | None = None,
) -> NodeProcess:
    """``python -m <module> --ros-args ...`` with parameters given as ``-p key:=value``."""
    args = [PYTHON, "-m", module, "--ros-args"]
    if params_file is not None:
        args += ["--params-file", str(params_file)]
    if namespace:
        args += ["-r", f"__ns:={namespace if namespace.startswith('/') else '/' + namespace}"]
    for src, dst in (remaps or {}).items():
        args += ["-r", f"{src}:={dst}"]
    for key, value in (params or {}).items():
        args += ["-p", f"{key}:={param_text(value)}"]
    tag = name or module.rsplit(".", 1)[-1]
    log_dir.mkdir(parents=True, exist_ok=True)
    return NodeProcess(args, ros_env(domain_id, env), log_dir / f"{tag}.log")


def stop_all(procs: Iterable[NodeProcess], timeout: float = 10.0) -> None:
    procs = list(procs)
    for p in procs:
        p.sigint()
    for p in procs:
        p.stop(timeout)


# --- the launcher (``naf-ros launch``) ---------------------------------------------------------
def launch_args(
    domain_id: int, run_dir: str | Path, *extra: str, sets: Iterable[str] = ()
) -> list[str]:
    """The ``naf-ros launch`` command line a user types, on ``domain_id`` into ``run_dir``.

    ``sets`` become ``--set`` items ahead of ``extra``, so a ``--set`` in ``extra`` overrides
    one of them (the launcher applies them in order).
    """
    args = [PYTHON, "-m", "naf_ros.cli", "launch", "--", "--domain-id", str(domain_id)]
    args += ["--run-dir", str(run_dir)]
    for item in sets:
        args += ["--set", item]
    return args + list(extra)


def launch_graph(
    domain_id: int,
    run_dir: str | Path,
    *extra: str,
    sets: Iterable[str] = (),
    prefix: Iterable[str] = (),
    env: dict[str, str] | None = None,
) -> subprocess.Popen[str]:
    """Start ``naf-ros launch`` (``launch_args``; ``prefix`` such as ``nice -n 5`` before it)
    with its stdout and stderr merged into one text pipe, read by ``finish_launch``.
    ``env``: extra environment for the launcher and its nodes."""
    return subprocess.Popen(
        [*prefix, *launch_args(domain_id, run_dir, *extra, sets=sets)],
        env=ros_env(domain_id, env),
        cwd=str(REPO),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _rest_of_output(proc: subprocess.Popen[str], timeout: float | None) -> str:
    """Wait for the exit and read what is left of the output ("" once it was all read)."""
    if proc.stdout is None or proc.stdout.closed:
        proc.wait(timeout)
        return ""
    out, _ = proc.communicate(timeout=timeout)  # (a retry after a timeout loses nothing)
    return out or ""


def reap_launch(proc: subprocess.Popen[str], grace: float) -> str:
    """Wait up to ``grace`` s for a launcher already told to stop, then SIGKILL; its output."""
    try:
        return _rest_of_output(proc, grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        return _rest_of_output(proc, None)


def stop_launch(proc: subprocess.Popen[str], grace: float = 30.0) -> str:
    """Ctrl-C to the launcher if it still runs, so its nodes stop cleanly (the policies zero
    their commands); SIGKILL after ``grace`` s. Returns the output not read yet; harmless on a
    launcher that already ended."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    return reap_launch(proc, grace)


def finish_launch(proc: subprocess.Popen[str], timeout: float, grace: float = 30.0) -> str:
    """The launcher's whole output once it ended by itself within ``timeout`` s.

    Otherwise it is stopped (``stop_launch``) before this raises, so whatever the test reads
    afterwards (probe snapshots) comes from a graph that is down, and the ``TimeoutError``
    carries the launcher's output for the failure report.
    """
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = stop_launch(proc, grace)  # all of it: communicate() keeps what it read so far
        raise TimeoutError(
            f"naf-ros launch still running after {timeout} s (stopped; exit "
            f"{proc.returncode}); its output:\n{out}"
        ) from exc
    except BaseException:
        stop_launch(proc, grace)
        raise
    return out or ""


# --- in-test node -----------------------------------------------------------------------------
class Collector:
    """Messages of one subscription with their monotonic arrival times."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.times: list[float] = []
        self._cond = threading.Condition()

    def __call__(self, msg: Any) -> None:
        with self._cond:
            self.messages.append(msg)
            self.times.append(time.monotonic())
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self.messages)

    @property
    def last(self) -> Any:
        with self._cond:
            return self.messages[-1] if self.messages else None

    def snapshot(self) -> list[Any]:
        with self._cond:
            return list(self.messages)

    def timed(self) -> list[tuple[float, Any]]:
        """(arrival time, message) pairs, taken together so they cannot misalign."""
        with self._cond:
            return list(zip(self.times, self.messages))

    def wait_for(self, n: int, timeout: float) -> bool:
        """True once at least ``n`` messages arrived."""
        return self.wait_until(lambda msgs: len(msgs) >= n, timeout)

    def wait_until(self, pred: Callable[[list[Any]], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
            return True


class RosTestNode(BackgroundNode):
    """An rclpy node in its own context on ``domain_id``, spinning in a background thread."""

    def __init__(
        self, domain_id: int, name: str = "test_probe", localhost_only: bool = True
    ) -> None:
        super().__init__(name, domain_id, signal_handlers=True, localhost_only=localhost_only)

    def collect(self, msg_type, topic: str, qos) -> Collector:
        col = Collector()
        self.node.create_subscription(msg_type, topic, col, qos)
        return col

    def publisher(self, msg_type, topic: str, qos):
        return self.node.create_publisher(msg_type, topic, qos)

    def wait_for_subscribers(self, pub, n: int = 1, timeout: float = 20.0) -> bool:
        return wait_until(lambda: pub.get_subscription_count() >= n, timeout)

    def call(self, srv_type, name: str, request, timeout: float = 20.0):
        """Call a service, waiting for it to appear; returns the response or raises."""
        client = self.node.create_client(srv_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                raise TimeoutError(f"service {name} not available")
            future = client.call_async(request)
            done = threading.Event()
            future.add_done_callback(lambda _f: done.set())
            if not done.wait(timeout):
                raise TimeoutError(f"service {name} did not answer")
            return future.result()
        finally:
            self.node.destroy_client(client)

    def __enter__(self) -> RosTestNode:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def wait_until(pred: Callable[[], bool], timeout: float, period: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(period)
    return pred()


# --- the policy's own record --------------------------------------------------------------------
def policy_final_weights_version(run_dir: Path) -> float:
    """The weights version the policy acted with when its run ended (0.0: none loaded), from
    its closing log line ("done: ... weights version V").

    Why not /diagnostics: they come once per period, so the last one a probe receives can
    predate the last weights the node loaded, and a node that is done publishes no more.
    """
    log = (Path(run_dir) / "logs" / "naf_policy.log").read_text(errors="replace")
    done = re.findall(r"\bdone: .*weights version (\S+)", log)
    assert done, "the policy never logged the end of its run:\n" + log[-2000:]
    return 0.0 if done[-1] == "None" else float(done[-1])


# --- /diagnostics -----------------------------------------------------------------------------
def diagnostic_values(collector: Collector, node_name: str) -> dict[str, str]:
    """Key/values of the newest /diagnostics status whose name mentions ``node_name``."""
    for msg in reversed(collector.snapshot()):
        for status in msg.status:
            if node_name in status.name:
                return {kv.key: kv.value for kv in status.values}
    return {}


def rejected_counts(collector: Collector, node_name: str) -> dict[str, int]:
    """``rejected/<reason>`` counters of a node from its latest /diagnostics status."""
    values = diagnostic_values(collector, node_name)
    return {k.split("/", 1)[1]: int(v) for k, v in values.items() if k.startswith("rejected/")}


def wait_rejected(
    collector: Collector, node_name: str, reason: str, at_least: int = 1, timeout: float = 10.0
) -> int:
    """Wait until the node reports ``reason`` at least ``at_least`` times; returns the count."""
    ok = wait_until(
        lambda: rejected_counts(collector, node_name).get(reason, 0) >= at_least, timeout
    )
    count = rejected_counts(collector, node_name).get(reason, 0)
    assert ok, f"{node_name}: {reason} counted {count} < {at_least}: " + str(
        diagnostic_values(collector, node_name)
    )
    return count
