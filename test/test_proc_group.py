"""The benchmarks' process-group handling: SIGINT first, nothing of the group survives."""

from __future__ import annotations

import signal
import sys
import time

from naf_ros.bringup.proc_group import group_alive, ros_child_env, spawn_group, stop_group

# The leader exits on SIGINT; its child ignores SIGINT (a hung node) and must be SIGKILLed.
# Like the launcher and the nodes, the leader installs its SIGINT handler itself: a process
# started from a background shell job inherits SIGINT ignored, and Python then keeps it so.
LEADER = """
import signal, subprocess, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(60)"])
print("ready", flush=True)
time.sleep(60)
"""


def test_stop_group_interrupts_the_leader_and_kills_stragglers(tmp_path):
    log_path = tmp_path / "group.log"
    with open(log_path, "wb") as log:
        proc = spawn_group([sys.executable, "-c", LEADER], ros_child_env(5), log)
    deadline = time.monotonic() + 30
    while b"ready" not in log_path.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert group_alive(proc)
    code = stop_group(proc, grace=10.0, linger=1.0)
    assert code == -signal.SIGINT or code == 1  # KeyboardInterrupt traceback exits 1
    assert not group_alive(proc)


def test_child_env_is_isolated():
    env = ros_child_env(42)
    assert env["ROS_DOMAIN_ID"] == "42"
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert "ROS_STATIC_PEERS" not in env
