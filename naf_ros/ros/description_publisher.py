"""Latches an arm description file on ``robot_description``, as robot_state_publisher would.

A real system runs robot_state_publisher, which publishes the URDF once, latched
(transient local), in the arm's namespace. A simulated run without it still needs someone to
offer the description when the nodes take their arm from the topic (``arm.model:
robot_description``): this node does only that. ``naf-ros launch --robot-description FILE``
and the launch file's ``robot_description`` argument start it.
"""

from __future__ import annotations

from pathlib import Path

from rclpy.node import Node
from std_msgs.msg import String

from naf_ros.config import ConfigError
from naf_ros.ros import qos
from naf_ros.ros.names import ROBOT_DESCRIPTION_TOPIC
from naf_ros.ros.params import Param, declare_params
from naf_ros.ros.runtime import exit_process, run_node

NODE_NAME = "description_publisher"

DESCRIPTION_PARAMS: tuple[Param, ...] = (
    Param("file", "", str, None, "URDF (or MJCF) file whose text is latched on robot_description"),
)


class DescriptionPublisher(Node):
    """Reads the file once and latches its text; nothing else."""

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        p = declare_params(self, DESCRIPTION_PARAMS)
        if not p.file:
            raise ConfigError("file: the arm description file to publish is not set")
        try:
            text = Path(p.file).expanduser().read_text()
        except OSError as err:
            raise ConfigError(f"file: {p.file}: cannot read it ({err.strerror})") from None
        self.pub = self.create_publisher(String, ROBOT_DESCRIPTION_TOPIC, qos.ROBOT_DESCRIPTION)
        self.pub.publish(String(data=text))
        self.get_logger().info(
            f"latched {p.file} ({len(text)} characters) on "
            f"{self.resolve_topic_name(ROBOT_DESCRIPTION_TOPIC)}"
        )


def main(argv: list[str] | None = None) -> None:
    """Console script ``description_publisher``: latch the file until SIGINT/SIGTERM."""
    exit_process(run_node(DescriptionPublisher, argv))


if __name__ == "__main__":
    main()
