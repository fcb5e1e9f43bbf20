"""What a URDF says that MuJoCo's URDF import does not take, read from the URDF itself.

Why separate from :mod:`naf_ros.envs.arm`: these are small readers of the URDF's own XML
(stripped meshes, ``<limit velocity>``, Drake's rotor-inertia transmission extension,
ros2_control's ``initial_value``), each of which the arm model applies to MuJoCo's spec; the
arm model itself stays about chains, tips and limits.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET


def for_mujoco(root: ET.Element) -> str:
    """The URDF without meshes and with fixed-joint links kept, as MuJoCo should read it."""
    for link in root.findall("link"):
        for tag in ("visual", "collision"):
            for element in link.findall(tag):
                link.remove(element)
    extension = root.find("mujoco")
    if extension is None:
        extension = ET.SubElement(root, "mujoco")
    compiler = extension.find("compiler")
    if compiler is None:
        compiler = ET.SubElement(extension, "compiler")
    compiler.set("fusestatic", "false")
    return ET.tostring(root, encoding="unicode")


def velocity_limits(root: ET.Element) -> dict[str, float]:
    """``<limit velocity>`` per joint: the one URDF limit MuJoCo's compiler does not keep."""
    found = {}
    for joint in root.findall("joint"):
        limit = joint.find("limit")
        if limit is not None and joint.get("name") and limit.get("velocity") is not None:
            try:
                value = float(limit.get("velocity"))
            except ValueError:
                continue
            if value > 0:
                found[joint.get("name")] = value
    return found


DRAKE_NS = "{http://drake.mit.edu}"


def _float_or_none(text: str | None) -> float | None:
    try:
        value = float(text) if text is not None else None
    except ValueError:
        return None
    return value if value is not None and math.isfinite(value) else None


def rotor_inertia(root: ET.Element) -> dict[str, float]:
    """Joint armature (reflected rotor inertia) per joint from Drake's transmission extension:
    ``rotor_inertia * gear_ratio**2`` (gear ratio 1 when absent)."""
    found = {}
    for transmission in root.findall("transmission"):
        joint, actuator = transmission.find("joint"), transmission.find("actuator")
        if joint is None or actuator is None or not joint.get("name"):
            continue
        rotor = actuator.find(f"{DRAKE_NS}rotor_inertia")
        inertia = _float_or_none(rotor.get("value")) if rotor is not None else None
        if inertia is None or inertia < 0:
            continue
        gear = actuator.find(f"{DRAKE_NS}gear_ratio")
        ratio = _float_or_none(gear.get("value")) if gear is not None else 1.0
        found[joint.get("name")] = inertia * (ratio if ratio is not None else 1.0) ** 2
    return found


def initial_positions(root: ET.Element) -> dict[str, float]:
    """Each joint's ``initial_value`` of its ``position`` state interface in ``<ros2_control>``."""
    found = {}
    for control in root.findall("ros2_control"):
        for joint in control.findall("joint"):
            for state in joint.findall("state_interface"):
                if state.get("name") != "position":
                    continue
                for param in state.findall("param"):
                    value = _float_or_none(param.text)
                    if param.get("name") == "initial_value" and value is not None:
                        found[str(joint.get("name"))] = value
    return found
