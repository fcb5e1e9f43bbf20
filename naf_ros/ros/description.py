"""The arm's description from the ``robot_description`` topic (``arm.model: robot_description``).

A ROS arm publishes its URDF once, latched, as ``std_msgs/String`` on ``robot_description``
in its namespace (robot_state_publisher). The nodes need it while they configure, which
happens either before the node joins an executor (autostart) or inside the executor's
callback (a lifecycle ``configure`` request): spinning the node itself would deadlock the
latter. So the wait runs on a temporary node with an executor of its own, in the same
context, subscribed to the topic as the node itself resolves it (its namespace and remaps).
"""

from __future__ import annotations

import time

from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from std_msgs.msg import String

from naf_ros.config import Config, ConfigError
from naf_ros.envs.configured import uses_robot_description
from naf_ros.ros import qos
from naf_ros.ros.names import ROBOT_DESCRIPTION_TOPIC

POLL_S = 0.05


def wait_for_description(node: Node, timeout: float, topic: str = ROBOT_DESCRIPTION_TOPIC) -> str:
    """The XML on ``topic`` (resolved as ``node`` resolves it), waiting up to ``timeout`` s
    of wall time; a ConfigError naming topic and timeout when nothing (or nothing but an
    empty string) arrives."""
    resolved = node.resolve_topic_name(topic)
    helper = Node(
        f"{node.get_name()}_robot_description",
        namespace=node.get_namespace(),
        context=node.context,
        use_global_arguments=False,  # no `__node:=` remap: it must not take the node's name
        start_parameter_services=False,
    )
    received: list[str] = []
    helper.create_subscription(
        String, resolved, lambda msg: received.append(msg.data), qos.ROBOT_DESCRIPTION
    )
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(helper)
    try:
        deadline = time.monotonic() + float(timeout)
        while not received and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=min(POLL_S, max(0.0, deadline - time.monotonic())))
    finally:
        executor.remove_node(helper)
        executor.shutdown()
        helper.destroy_node()
    if not received:
        raise ConfigError(
            f"arm.model: no robot_description on {resolved} within {float(timeout):g} s "
            "(arm.description_timeout); is robot_state_publisher running?"
        )
    if not received[-1].strip():
        raise ConfigError(f"arm.model: {resolved} carries an empty description")
    return received[-1]


def arm_description(node: Node, cfg: Config) -> str | None:
    """The ``robot_description`` XML when ``arm.model`` names that topic, else None (the arm
    then comes from a file or the environment)."""
    if not uses_robot_description(cfg):
        return None
    xml = wait_for_description(node, cfg.arm.description_timeout)
    node.get_logger().info(
        f"arm description: {len(xml)} characters from "
        f"{node.resolve_topic_name(ROBOT_DESCRIPTION_TOPIC)}"
    )
    return xml
