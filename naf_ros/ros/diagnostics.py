"""Health on ``/diagnostics``: rejected inputs counted by reason, standing problems, values."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.node import Node

from naf_ros.ros.names import DIAGNOSTICS_TOPIC


class Diagnostics:
    """Counts rejected inputs by reason and publishes them (and extra values) on /diagnostics.

    ``problems`` maps a key to a (level, message) that stays until cleared, so several
    independent conditions (a failing checkpoint, a full outbox) can be reported at once;
    the status takes the worst level and joins the messages.
    """

    def __init__(self, node: Node, period_s: float = 1.0) -> None:
        self.node = node
        self.rejected: Counter[str] = Counter()
        self.values: dict[str, Any] = {}
        self.level = DiagnosticStatus.OK
        self.message = "ok"
        self.problems: dict[str, tuple[bytes, str]] = {}
        self._last_reject_log = -float("inf")
        self._pub = node.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        self._timer = node.create_timer(period_s, self.publish)

    def reject(self, reason: str, detail: str = "") -> None:
        """Count one dropped input; log at most once per 2 s per node.

        Throttled here, not with rclpy's ``throttle_duration_sec``: that inspects the
        caller's frame and source on every call (~0.5 ms), which a flood of malformed input
        would pay per message, starving the executor.
        """
        self.rejected[reason] += 1
        now = time.monotonic()
        if now - self._last_reject_log < 2.0:
            return
        self._last_reject_log = now
        self.node.get_logger().warning(
            f"dropped input ({reason}){': ' + detail if detail else ''} "
            f"[{self.rejected[reason]} so far]"
        )

    def problem(self, key: str, level: bytes, message: str) -> None:
        """Report a standing condition (until :meth:`clear`)."""
        self.problems[key] = (level, message)

    def clear(self, key: str) -> None:
        self.problems.pop(key, None)

    @property
    def total_rejected(self) -> int:
        return sum(self.rejected.values())

    def status(self) -> tuple[bytes, str]:
        level, message = self.level, self.message
        problems = list(self.problems.values())  # one C-level copy: other threads write too
        if problems:
            worst = max(lvl for lvl, _ in problems)
            texts = [msg for _, msg in problems]
            if worst >= level:
                level = worst
                message = "; ".join(texts) if message == "ok" else "; ".join([message, *texts])
        return level, message

    def publish(self) -> None:
        level, message = self.status()
        status = DiagnosticStatus(
            level=level,
            name=f"naf_ros: {self.node.get_fully_qualified_name()}",
            message=message,
            hardware_id=self.node.get_name(),
        )
        rejected, values = list(self.rejected.items()), list(self.values.items())
        status.values = [KeyValue(key=f"rejected/{k}", value=str(v)) for k, v in rejected]
        status.values.append(KeyValue(key="rejected/total", value=str(sum(v for _, v in rejected))))
        status.values += [KeyValue(key=k, value=str(v)) for k, v in values]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self._pub.publish(msg)
