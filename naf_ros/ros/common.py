"""Shared node plumbing: the config schema as ROS parameters, and rejection counting.

Nodes are thin adapters: they read the same validated :class:`~naf_ros.config.Config` the
in-process trainer uses (declared as ``section.key`` parameters), and every dropped input
is counted, logged (throttled) and reported on ``/diagnostics``.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import yaml
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node

from naf_ros.config import Config, ConfigError, config_from_dict, flatten


def declare_config(node: Node, sections: tuple[str, ...] | None = None) -> Config:
    """Declare every schema key of ``sections`` as a parameter and return the validated Config.

    ``None`` defaults and mappings cannot be typed ROS parameters, so they travel as YAML
    strings (``''`` meaning None); lists and scalars are native parameters.
    """
    defaults = flatten(Config())
    data: dict[str, dict[str, Any]] = {}
    for key, default in defaults.items():
        section, name = key.split(".", 1)
        if sections is not None and section not in sections:
            continue
        as_text = default is None or isinstance(default, dict)
        value = yaml.safe_dump(default, default_flow_style=True).strip() if as_text else default
        if default is None:
            value = ""
        descriptor = ParameterDescriptor(dynamic_typing=True)
        param = node.declare_parameter(key, value, descriptor)
        got = param.value
        if as_text or isinstance(got, str) and not isinstance(default, str):
            got = (
                yaml.safe_load(got)
                if isinstance(got, str) and got.strip()
                else (None if got == "" else got)
            )
        if isinstance(got, (list, tuple)) or type(got).__name__ == "array":
            got = list(got)
        data.setdefault(section, {})[name] = got
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        node.get_logger().fatal(f"config error: {exc}")
        raise


def config_section_dict(cfg: Config, section: str) -> dict:
    return dataclasses.asdict(getattr(cfg, section))


class Diagnostics:
    """Counts rejected inputs by reason and publishes them (and extra values) on /diagnostics."""

    def __init__(self, node: Node, period_s: float = 1.0) -> None:
        self.node = node
        self.rejected: Counter[str] = Counter()
        self.values: dict[str, Any] = {}
        self.level = DiagnosticStatus.OK
        self.message = "ok"
        self._pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._timer = node.create_timer(period_s, self.publish)

    def reject(self, reason: str, detail: str = "") -> None:
        """Count one dropped input; log at most once per 2 s per node."""
        self.rejected[reason] += 1
        self.node.get_logger().warning(
            f"dropped input ({reason}){': ' + detail if detail else ''} "
            f"[{self.rejected[reason]} so far]",
            throttle_duration_sec=2.0,
        )

    @property
    def total_rejected(self) -> int:
        return sum(self.rejected.values())

    def publish(self) -> None:
        status = DiagnosticStatus(
            level=self.level,
            name=f"naf_ros: {self.node.get_fully_qualified_name()}",
            message=self.message,
            hardware_id=self.node.get_name(),
        )
        status.values = [
            KeyValue(key=f"rejected/{k}", value=str(v)) for k, v in self.rejected.items()
        ]
        status.values.append(KeyValue(key="rejected/total", value=str(self.total_rejected)))
        status.values += [KeyValue(key=k, value=str(v)) for k, v in self.values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self._pub.publish(msg)
