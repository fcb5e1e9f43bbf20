"""An rclpy node that watches a graph from inside another program.

The launcher's progress display, the benchmark probe and the tests' probe all need the same
thing: a node in its own rclpy context (so it can come and go without touching a global
one), spun by a daemon thread, torn down completely on ``close``.
"""

from __future__ import annotations

import os
import threading


class BackgroundNode:
    """A node on ``domain_id`` in its own context, spinning in a daemon thread.

    ``localhost_only`` keeps discovery on this host (tests and benchmarks on a shared
    machine); the launcher leaves it off so it sees nodes on other hosts too.
    ``signal_handlers`` off leaves Ctrl-C to the host program.
    """

    def __init__(
        self,
        name: str,
        domain_id: int | None,
        *,
        localhost_only: bool = True,
        signal_handlers: bool = False,
        spin_timeout: float = 0.05,
    ) -> None:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.signals import SignalHandlerOptions

        if localhost_only:
            os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
            os.environ.pop("ROS_STATIC_PEERS", None)
        self._rclpy = rclpy
        self._spin_timeout = spin_timeout
        self.context = Context()
        options = SignalHandlerOptions.ALL if signal_handlers else SignalHandlerOptions.NO
        rclpy.init(context=self.context, domain_id=domain_id, signal_handler_options=options)
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name=f"{name}-spin", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=self._spin_timeout)
            except Exception:
                if self._stop.is_set() or not self.context.ok():
                    return  # the context is going down
                raise  # a callback failed: let the thread's excepthook show it

    def close(self) -> None:
        """Stop spinning, then destroy the node and shut the context down."""
        self._stop.set()
        self._thread.join(5.0)
        self.executor.shutdown()
        self.node.destroy_node()
        if self.context.ok():
            self._rclpy.shutdown(context=self.context)
