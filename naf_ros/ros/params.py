"""The one config schema as ROS parameters (``section.key``), plus node-specific ones.

Nodes read the same validated :class:`~naf_ros.config.Config` the in-process trainer uses;
``None`` defaults and mappings cannot be typed ROS parameters, so they travel as YAML strings.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import yaml
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


def declare(node: Node, name: str, default: Any) -> Any:
    """Declare one node-specific parameter and return its value."""
    return node.declare_parameter(name, default).value


# --- the task, as the configured env defines it -----------------------------------------------
