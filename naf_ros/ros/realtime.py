"""Keeping a control path quick: CPU pinning, SCHED_FIFO, latest-only hand-off, side nodes."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node

from naf_ros.config import ConfigError


def parse_cpu_list(text: str) -> set[int]:
    """``taskset -c`` notation (``"1"``, ``"0,2"``, ``"0-3"``) -> CPU ids; ``""`` -> none."""
    cpus: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        hi = hi if sep else lo
        if not (lo.isdigit() and hi.isdigit()) or int(hi) < int(lo):
            raise ConfigError(f"cpu_affinity: {text!r} is not a CPU list like '1' or '0,2-3'")
        cpus.update(range(int(lo), int(hi) + 1))
    return cpus


def pin_cpus(node: Node, text: str) -> bool:
    """Keep every thread of this process (and those it starts later) on the CPUs ``text``
    lists; ``""`` leaves placement to the scheduler.

    Why: in lockstep the learner is the graph's bottleneck, and on a small machine the bridge
    and policies, woken every step, otherwise land on its core and slice its updates. A CPU
    that this process may not use is a config error.
    """
    cpus = parse_cpu_list(text)
    if not cpus:
        return False
    allowed = os.sched_getaffinity(0)
    if not cpus <= allowed:
        raise ConfigError(
            f"cpu_affinity: {text!r} names CPUs outside this process's {sorted(allowed)}"
        )
    threads = os.listdir("/proc/self/task")
    for tid in threads:
        with contextlib.suppress(ProcessLookupError):  # a thread that just ended
            os.sched_setaffinity(int(tid), cpus)
    node.get_logger().info(f"pinned {len(threads)} threads to CPUs {sorted(cpus)}")
    return True


def raise_priority(node: Node, priority: int) -> bool:
    """SCHED_FIFO ``priority`` for every thread of this process (DDS receive threads too).

    Why: a realtime state -> command path must not wait behind the learner for a core. Like a
    ros2_control loop it asks, and carries on at normal priority with a warning where the
    system does not permit it; ``priority`` <= 0 leaves scheduling alone. Threads started
    later inherit the policy. Returns whether it took effect.
    """
    if priority <= 0:
        return False
    try:
        param = os.sched_param(priority)
        threads = os.listdir("/proc/self/task")
        for tid in threads:
            os.sched_setscheduler(int(tid), os.SCHED_FIFO, param)
    except (AttributeError, OSError, ValueError) as exc:
        node.get_logger().warning(
            f"realtime_priority {priority}: not permitted here ({type(exc).__name__}: {exc}); "
            "running at normal priority"
        )
        return False
    node.get_logger().info(f"SCHED_FIFO priority {priority} on {len(threads)} threads")
    return True


class LatestOnly:
    """Hands the newest submitted item to ``handle`` in a daemon thread; an item not yet
    handled when a newer one arrives is dropped (a newer weight set supersedes it).

    Why: a realtime node's executor thread must be free for the next joint state, so work
    that takes milliseconds (decoding 130k weights, rebuilding the actor) happens here.
    """

    def __init__(self, name: str, handle: Callable[[Any], None]) -> None:
        self._handle = handle
        self._cond = threading.Condition()
        self._item: Any = None
        self._pending = False
        self._stop = False
        self.handled = 0
        self.superseded = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> None:
        with self._cond:
            self.superseded += self._pending
            self._item, self._pending = item, True
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._pending or self._stop):
                    self._cond.wait()
                if self._stop:
                    return
                item, self._item, self._pending = self._item, None, False
            self._handle(item)
            self.handled += 1

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout)


class SideNode:
    """A minimal node in this process (same context and namespace, so the same remaps
    apply) with its own executor thread.

    Why: the executor of a node with lifecycle and parameter services, timers and latched
    inputs rebuilds a large wait set on every wake-up and may be inside another callback
    when a joint state arrives. A subscription that is a control loop's input gets a wait
    set of its own here, like a bare echo node (BENCHMARKS.md, session 3).

    Its name is ``<parent>_<suffix>`` even under a process-wide ``__node:=<parent>`` remap
    (what ``ros2 launch`` passes for ``Node(name=...)``): a node-local remap wins over a
    global one. Two nodes of one name in a process share a rosout publisher (rcl warns
    "Publisher already registered") and are indistinguishable in the graph.
    """

    def __init__(self, parent: Node, suffix: str, spin_timeout: float = 0.1) -> None:
        name = f"{parent.get_name()}_{suffix}"
        self.node = rclpy.create_node(
            name,
            namespace=parent.get_namespace(),
            context=parent.context,
            cli_args=["--ros-args", "-r", f"__node:={name}"],
            start_parameter_services=False,
        )
        self._executor = SingleThreadedExecutor(context=parent.context)
        self._executor.add_node(self.node)
        self._timeout = spin_timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name=suffix, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self.node.context.ok():
            try:
                self._executor.spin_once(timeout_sec=self._timeout)
            except Exception:
                if self._stop.is_set() or not self.node.context.ok():
                    return  # shutting down
                raise

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self._executor.shutdown()
        self.node.destroy_node()
