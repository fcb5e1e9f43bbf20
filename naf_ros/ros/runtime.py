"""How a node process runs: lifecycle guards, autostart, and the spin loop that owns signals.

A node that seems stuck (a service that does not answer, a topic that went quiet) can be
asked where it is without stopping it: ``kill -USR1 <pid>`` makes :func:`run_node`'s process
write the Python stack of every thread to its stderr (the node's log file under
``naf-ros launch``), and the node carries on. The graph tests send it when a wait times out,
so a rare hang leaves its stacks in the test's output instead of only a timeout. A node that
dies of a fatal signal (a segfault in a native library, an abort) leaves its stacks there
too, instead of vanishing without a word.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions

from naf_ros.config import ConfigError
from naf_ros.ros.realtime import pin_cpus

if TYPE_CHECKING:
    from rclpy.lifecycle import LifecycleNode


def guarded(callback: Callable[..., Any]) -> Callable[..., Any]:
    """Run a lifecycle callback, turning exceptions into FAILURE with a logged reason.

    rclpy swallows exceptions in transition callbacks; autostart needs the reason to exit
    with a one-line config error instead of idling unconfigured.
    """
    from rclpy.lifecycle import TransitionCallbackReturn

    def wrapper(self, state):
        try:
            return callback(self, state)
        except Exception as exc:  # noqa: BLE001 - reported and turned into FAILURE
            self.transition_error = (
                f"{type(exc).__name__}: {exc}" if not isinstance(exc, ConfigError) else str(exc)
            )
            self.get_logger().fatal(f"{callback.__name__} failed: {self.transition_error}")
            return TransitionCallbackReturn.FAILURE

    wrapper.__name__ = callback.__name__
    wrapper.__doc__ = callback.__doc__
    return wrapper


def autostart(node: LifecycleNode) -> None:
    """configure + activate, raising ConfigError with the reason if either fails."""
    from rclpy.lifecycle import TransitionCallbackReturn

    for name in ("configure", "activate"):
        ret = getattr(node, f"trigger_{name}")()
        if ret != TransitionCallbackReturn.SUCCESS:
            raise ConfigError(getattr(node, "transition_error", None) or f"{name} failed")


STACK_DUMP_SIGNAL = signal.SIGUSR1


def install_stack_dump() -> None:
    """``kill -USR1 <pid>`` writes all threads' stacks to stderr; the process goes on. A
    fatal signal (SIGSEGV, SIGABRT, ...) writes them before the process dies.

    faulthandler's handler runs at the C level, so it answers even while the main thread is
    blocked inside rclpy or DDS (where a Python-level signal handler would never run).
    """
    faulthandler.enable(file=sys.stderr, all_threads=True)
    faulthandler.register(STACK_DUMP_SIGNAL, file=sys.stderr, all_threads=True, chain=False)


def exit_process(code: int) -> None:
    """End a node process now that its node has stopped safely, skipping interpreter teardown.

    Why: after ``run_node`` returns, everything that matters is done (zero effort sent,
    checkpoints fsynced, rclpy shut down), but finalising a process that holds torch, MuJoCo
    and a DDS participant can stall for many seconds under load (seen: a policy still
    garbage-collecting 7 s after SIGINT, then SIGKILLed by the launcher). Only for node
    entry points, never for code running inside another program.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(code))


def run_node(make_node: Callable[[], Node], argv: list[str] | None = None) -> int:
    """Spin a node until SIGINT/SIGTERM (or until it is done), then let it stop safely.

    rclpy's own signal handler shuts the context down first, after which a final
    zero-effort command or checkpoint could no longer be published; so we own the signals.
    Optional node hooks, all called with ROS still up:

    - ``node.stop_event`` is set to the loop's event (a node ends the run by setting it);
    - ``start()`` after the node joined the executor;
    - ``healthy()`` returning False (e.g. a dead worker) ends the loop with exit code 1;
    - ``safe_stop()`` on the way down (zero effort, final checkpoint);
    - ``drained()`` / ``drain_timeout``: keep spinning after ``safe_stop`` until the node
      has handed off what it holds (e.g. unacknowledged transitions), at most that long.

    ``node.exit_code`` (default 0) is the process's exit code. SIGUSR1 dumps every thread's
    stack to stderr (see the module docstring).
    """
    install_stack_dump()
    rclpy.init(
        args=argv if argv is not None else sys.argv,
        signal_handler_options=SignalHandlerOptions.NO,
    )
    stop = threading.Event()

    def _on_signal(_sig, _frame) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    code, node = 0, None
    executor = SingleThreadedExecutor()
    try:
        node = make_node()
        node.stop_event = stop
        # Dynamically typed: `cpu_affinity:=1` arrives as an integer, `0,2` as text.
        affinity = node.declare_parameter(
            "cpu_affinity", "", ParameterDescriptor(dynamic_typing=True)
        ).value
        pin_cpus(node, str(affinity))
        executor.add_node(node)
        start = getattr(node, "start", None)
        if start is not None:
            start()
        healthy = getattr(node, "healthy", None)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.05)
            if healthy is not None and not healthy():
                code = 1
                break
        code = code or int(getattr(node, "exit_code", 0))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        code = 2
    finally:
        if node is not None:
            try:
                safe_stop = getattr(node, "safe_stop", None)
                if safe_stop is not None:
                    safe_stop()
                drained = getattr(node, "drained", None)
                deadline = time.monotonic() + float(getattr(node, "drain_timeout", 0.0))
                while drained is not None and rclpy.ok() and time.monotonic() < deadline:
                    if drained():
                        break
                    executor.spin_once(timeout_sec=0.05)
            except Exception as exc:  # noqa: BLE001 - shutdown must go on
                print(f"shutdown failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                code = code or 1
            executor.remove_node(node)
            node.destroy_node()
        executor.shutdown()
        if rclpy.ok():
            rclpy.shutdown()
    return code
