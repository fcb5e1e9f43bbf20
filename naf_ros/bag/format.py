"""What a naf_ros experience bag holds, shared by the writer and the reader.

We record the same standard messages the nodes publish (BRIEF §3) so a bag is useful to
``ros2 bag info/play``, rqt and Foxglove as well as to us:

- ``/naf/transitions``: ``std_msgs/msg/Float64MultiArray``, the layout of
  :func:`~naf_ros.ros.codec.encode_transition`;
- ``/joint_states``: ``sensor_msgs/msg/JointState`` (fields may hold NaN);
- ``/effort_controller/commands``: ``std_msgs/msg/Float64MultiArray``, one effort per joint;
- ``/target``: ``geometry_msgs/msg/PointStamped``.

The bag is rosbag2 metadata version 8 with Humble-style QoS strings, which Humble, Jazzy and
Kilted all read; the message definitions of these types (and so their type hashes) are
identical across those releases. ``metadata.yaml`` carries a count and an order-independent
SHA-256 sum of the transition messages, because MCAP chunks written by rosbags have no CRC
and a flipped byte in a float would otherwise decode silently as a different, perfectly
finite number.
"""

from __future__ import annotations

import hashlib
from typing import Any

from naf_ros.ros import names

# A bag holds one arm's topics under their absolute names (the arm's namespace stripped).
TRANSITIONS_TOPIC = names.TRANSITIONS_TOPIC
JOINT_STATES_TOPIC = "/" + names.JOINT_STATES_TOPIC
TARGET_TOPIC = "/" + names.TARGET_TOPIC
DEFAULT_CONTROLLER = names.DEFAULT_CONTROLLER
ARRAY_TYPE = "std_msgs/msg/Float64MultiArray"
JOINT_STATE_TYPE = "sensor_msgs/msg/JointState"
POINT_TYPE = "geometry_msgs/msg/PointStamped"
BAG_FORMAT_VERSION = 8  # rosbag2 metadata version every supported ROS 2 release reads
FORMAT = "naf_ros-experience"
# Custom data in metadata.yaml.
KEY_FORMAT = "naf_ros.format"
KEY_SCHEMA = "naf_ros.transition_schema"
KEY_COUNT = "naf_ros.transitions"
KEY_DIGEST = "naf_ros.transitions_sha256_sum"


class BagError(RuntimeError):
    """A bag that cannot be written or read as experience; the message is one line."""


def commands_topic(controller: str = DEFAULT_CONTROLLER) -> str:
    """The effort controller's command topic, absolute as in a bag."""
    return "/" + names.commands_topic(controller)


def typestore() -> Any:
    """rosbags' message definitions, Humble's: the oldest release we target, and identical
    for these types in the later ones."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_HUMBLE)


def one_line(exc: BaseException) -> str:
    """``Type: first line`` of an exception, for :class:`BagError` messages."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def transition_digest(raw: bytes) -> int:
    """SHA-256 of one serialised transition; bags store the sum of these modulo 2^256, so
    the check does not depend on the order messages are read back in."""
    return int.from_bytes(hashlib.sha256(raw).digest(), "big")
