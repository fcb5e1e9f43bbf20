"""The one config schema as ROS parameters (``section.key``), plus node-specific ones.

Nodes read the same validated :class:`~naf_ros.config.Config` the in-process trainer uses;
``None`` defaults and mappings cannot be typed ROS parameters, so they travel as YAML strings.
A node's own parameters are a table of :class:`Param` (name, default, type, check,
description), declared at once by :func:`declare_params`, the way ros2_controllers declares
each parameter once in a ``*_parameters.yaml``: one place to read what a node accepts, and
every bad value rejected with the same one-line error naming the parameter.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import yaml
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import InvalidParameterTypeException
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


# --- node parameter tables --------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Check:
    """A rule a parameter's value must meet; ``rule`` completes "must be ..."."""

    ok: Callable[[Any], bool]
    rule: str


def one_of(*choices: Any) -> Check:
    return Check(lambda v: v in choices, f"one of {', '.join(str(c) for c in choices)}")


def positive() -> Check:
    return Check(lambda v: v > 0, "> 0")  # NaN fails too


def at_least(low: float) -> Check:
    return Check(lambda v: v >= low, f">= {low}")


def in_range(low: float, high: float) -> Check:
    """``low < v <= high`` (a positive quantity with an upper bound)."""
    return Check(lambda v: low < v <= high, f"in ({low}, {high}]")


def finite_list(length: int | None = None) -> Check:
    what = f"{length} finite numbers" if length is not None else "finite numbers"
    return Check(
        lambda v: (length is None or len(v) == length) and all(math.isfinite(x) for x in v), what
    )


@dataclasses.dataclass(frozen=True)
class Param:
    """One node parameter: its default (which also fixes its ROS type), the Python type its
    value is read as, an optional :class:`Check`, and the description ``ros2 param describe``
    shows."""

    name: str
    default: Any
    type: type
    check: Check | None
    description: str


def declare_params(node: Node, table: tuple[Param, ...]) -> SimpleNamespace:
    """Declare every parameter of ``table`` (with its description) and return their values.

    Raises :class:`ConfigError` with one line naming the parameter for a value of the wrong
    type or one its check rejects: ``"<name>: <value> is invalid; must be <rule>"``.
    """
    values: dict[str, Any] = {}
    for p in table:
        descriptor = ParameterDescriptor(description=p.description)
        try:
            raw = node.declare_parameter(p.name, p.default, descriptor).value
        except InvalidParameterTypeException as exc:
            reason = exc.args[0] if exc.args else exc  # "Trying to set ... expecting type ..."
            raise ConfigError(f"{p.name}: wrong type ({reason})") from None
        value = p.type(raw)
        if p.check is not None and not p.check.ok(value):
            raise ConfigError(f"{p.name}: {value!r} is invalid; must be {p.check.rule}")
        values[p.name] = value
    return SimpleNamespace(**values)


# --- the task, as the configured env defines it -----------------------------------------------
