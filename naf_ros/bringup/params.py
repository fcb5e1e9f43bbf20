"""The graph's parameters as ``naf-ros launch`` handles them: YAML blocks, ``--set`` items,
per-process override files and the shared config they must validate as.

Why a module of its own: the launcher, the launch-file tests and the benchmarks' parity
checks all read the params file the same way the nodes do, so they share this code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from naf_ros.config import ConfigError, config_from_dict

NODES = (
    "sim_bridge",
    "naf_policy",
    "learner",
    "dynamics_fitter",
    "ilqg_explorer",
    "bag_recorder",
    "description_publisher",
)
ARM_NODES = ("sim_bridge", "naf_policy", "bag_recorder")
# Latches a file on robot_description (per arm and at the root), only with --robot-description.
DESCRIPTION_NODE = "description_publisher"
# Node (and console script) name -> the module whose main() runs it.
NODE_MODULES = {
    "sim_bridge": "naf_ros.ros.sim_bridge",
    "naf_policy": "naf_ros.ros.policy.node",
    "learner": "naf_ros.ros.learner",
    "dynamics_fitter": "naf_ros.ros.dynamics_fitter",
    "ilqg_explorer": "naf_ros.ros.ilqg_explorer",
    "bag_recorder": "naf_ros.ros.bag_recorder",
    "description_publisher": "naf_ros.ros.description_publisher",
}
SHARED_KEY = "/**"
SECTIONS = ("env", "agent", "exploration", "model_based", "train", "safety", "bag", "arm")


def _node_key(key: str) -> str | None:
    """``/**/sim_bridge`` / ``sim_bridge`` -> ``sim_bridge``; ``/**`` -> ``/**``."""
    if key == SHARED_KEY:
        return SHARED_KEY
    name = key.rsplit("/", 1)[-1]
    return name or None


def read_params_file(path: Path) -> dict[str, dict[str, Any]]:
    """Node (or ``/**``) -> its ``ros__parameters`` mapping."""
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    out: dict[str, dict[str, Any]] = {}
    for key, block in data.items():
        name = _node_key(str(key))
        if not isinstance(block, dict) or "ros__parameters" not in block:
            raise ConfigError(f"{path}: {key}: expected a 'ros__parameters:' mapping")
        params = block["ros__parameters"] or {}
        out.setdefault(name, {}).update(params)
    return out


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def parse_set(text: str) -> tuple[str | None, str, Any]:
    """``node.section.key=value`` / ``node.key=value`` (one node) or ``section.key=value`` (all)."""
    if "=" not in text:
        raise ConfigError(f"{text}: overrides look like [node.]section.key=value")
    key, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else ""
    parts = key.strip().split(".")
    if isinstance(value, str) and parts[-1] != "id":  # YAML 1.1 reads 1e-4 as text
        try:
            value = float(value)
        except ValueError:
            pass
    node = None
    if parts[0] in NODES:
        node, parts = parts[0], parts[1:]
    if not parts or (node is None and parts[0] not in SECTIONS and len(parts) != 1):
        raise ConfigError(f"{key}: overrides look like [node.]section.key=value")
    if node is None and len(parts) == 1 and parts[0] in SECTIONS:
        raise ConfigError(f"{key}: name a key inside section {parts[0]}")
    return node, ".".join(parts), value


def param_text(value: Any) -> str:
    """A value as ``-p name:=value`` text (YAML, as rcl parses it)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "''"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(param_text(v) for v in value) + "]"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, dict):
        return yaml.safe_dump(value, default_flow_style=True).strip()
    return str(value)


def write_override_file(path: Path, node: str, namespace: str, values: dict[str, Any]) -> Path:
    """Per-process overrides keyed by the node's fully qualified name (as launch_ros does).

    rcl applies the most specific matching block last, so ``/**/<node>`` blocks of the main
    YAML would beat plain ``-p`` overrides (stored under ``/**``); a second params file with
    a ``/<ns>/<node>`` block wins over both.
    """
    nested: dict[str, Any] = {}
    for key, value in values.items():
        if value is None:
            value = ""
        elif isinstance(value, dict):
            value = yaml.safe_dump(value, default_flow_style=True).strip()
        elif isinstance(value, tuple):
            value = list(value)
        parts = key.split(".")
        d = nested
        for part in parts[:-1]:
            d = d.setdefault(part, {})
        d[parts[-1]] = value
    fqn = f"/{namespace}/{node}" if namespace else f"/{node}"
    path.write_text(yaml.safe_dump({fqn: {"ros__parameters": nested}}, sort_keys=False))
    return path


def effective_config(shared: dict[str, Any], overrides: dict[str, Any]):
    """Validate the shared sections (+ overrides for all nodes) as the nodes will see them."""
    flat = {k: v for k, v in flatten(shared).items() if k.split(".", 1)[0] in SECTIONS}
    flat.update({k: v for k, v in overrides.items() if k.split(".", 1)[0] in SECTIONS})
    nested: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        section, name = key.split(".", 1)
        if isinstance(value, str) and value == "" and name != "id":
            value = None
        nested.setdefault(section, {})[name] = value
    return config_from_dict(nested)
