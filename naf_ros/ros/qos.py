"""QoS profiles (BRIEF §3), in one place so every node agrees."""

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)

# /joint_states is published reliable (as joint_state_broadcaster does); readers use sensor
# data QoS (best effort, shallow), which matches both reliable and best-effort publishers.
JOINT_STATES_PUB = QoSProfile(
    depth=10, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST
)
JOINT_STATES_SUB = qos_profile_sensor_data

# Commands to a ForwardCommandController: reliable.
COMMANDS = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)

# Latched data (weights, fitted models, controllers, target): the /robot_description pattern.
LATCHED = QoSProfile(
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
    history=HistoryPolicy.KEEP_LAST,
)

# Transition stream: reliable with a deep queue; sequence numbers make losses detectable.
TRANSITIONS = QoSProfile(
    depth=5000, reliability=ReliabilityPolicy.RELIABLE, history=HistoryPolicy.KEEP_LAST
)

CLOCK = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Metrics: the last values are kept for late joiners, so a progress display or rqt that
# matches a policy after its first episodes still gets them (volatile readers match too).
METRICS = QoSProfile(
    depth=10,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
    history=HistoryPolicy.KEEP_LAST,
)

# E-stop (std_msgs/Bool): reliable and volatile, so any publisher (``ros2 topic pub``, a
# latched safety controller) matches; a node started after a ``true`` does not see it.
ESTOP = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)

# robot_description (std_msgs/String): what robot_state_publisher offers (reliable, transient
# local, depth 1), so a node started after it still receives the arm's URDF.
ROBOT_DESCRIPTION = QoSProfile(
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
    history=HistoryPolicy.KEEP_LAST,
)
