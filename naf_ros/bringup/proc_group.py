"""Child processes that are started and stopped as one process group.

Benchmarks run graphs and helper nodes as children in their own session, so a crashed run
can never leave a node publishing into the next one: stop sends SIGINT first (a Ctrl-C, which
every node turns into zero effort and a checkpoint), then SIGKILLs whatever of the group is
left after the grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[2]


# ROS_AUTOMATIC_DISCOVERY_RANGE values a graph may use: this machine only (the default), or
# the local network too (the learner on another host; peers on the same subnet).
DISCOVERY_RANGES = ("LOCALHOST", "SUBNET")


def ros_child_env(domain_id: int | None, discovery_range: str = "LOCALHOST") -> dict[str, str]:
    """This environment with ``discovery_range`` discovery (loopback-only unless told; no
    static peers), on ``domain_id`` unless None, with this package importable and
    single-threaded BLAS."""
    if discovery_range not in DISCOVERY_RANGES:
        raise ValueError(f"discovery range {discovery_range!r} is not one of {DISCOVERY_RANGES}")
    env = dict(os.environ)
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = discovery_range
    env.pop("ROS_STATIC_PEERS", None)
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(PACKAGE_ROOT) not in paths:
        paths.insert(0, str(PACKAGE_ROOT))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def spawn_group(cmd: list[str], env: dict[str, str], log) -> subprocess.Popen:
    """Start ``cmd`` as the leader of a new process group, output to the open file ``log``."""
    return subprocess.Popen(
        cmd,
        env=env,
        cwd=str(PACKAGE_ROOT),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def group_alive(proc: subprocess.Popen) -> bool:
    try:
        os.killpg(proc.pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def stop_group(proc: subprocess.Popen, grace: float, linger: float = 5.0) -> int | None:
    """SIGINT the leader and wait up to ``grace`` s; then SIGKILL the group if the leader or,
    after ``linger`` s more, any member is still up. Returns the leader's exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            proc.wait(10)
    deadline = time.monotonic() + linger
    while group_alive(proc) and time.monotonic() < deadline:
        time.sleep(0.1)
    if group_alive(proc):
        kill_group(proc)
        deadline = time.monotonic() + 2.0  # until the killed members are reaped
        while group_alive(proc) and time.monotonic() < deadline:
            time.sleep(0.05)
    return proc.returncode
