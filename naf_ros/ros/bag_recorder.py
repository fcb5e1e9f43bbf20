"""Per-arm experience recorder: joint states, effort commands and targets to rosbag2 (MCAP).

The learner records the transitions it trains on; this node records what happened on one
arm at the interface a real ros2_control arm has: ``joint_states``, the effort controller's
``<controller>/commands`` and the ``target``. It writes numbered segments
``<train.run_dir>/<bag.record>/<prefix>_NNNN/`` (prefix: the arm's namespace, or ``arm``),
closing one every ``segment_s`` seconds and at shutdown, so a crash loses at most the open
segment (the next start renames it ``.incomplete``).

Log times: a joint state and a target keep their header stamp (sim time in simulation);
a command, which has no stamp, is logged just after the joint state it answers. Failures
to write (read-only folder, full disk) are reported on ``/diagnostics``; the arm is never
affected: this node only listens.
"""

from __future__ import annotations

from pathlib import Path

from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import PointStamped
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from naf_ros.bag.segments import SegmentedBag
from naf_ros.config import ConfigError
from naf_ros.ros import qos
from naf_ros.ros.diagnostics import Diagnostics
from naf_ros.ros.messages import stamp_to_ns
from naf_ros.ros.names import JOINT_STATES_TOPIC, TARGET_TOPIC, commands_topic
from naf_ros.ros.params import Param, declare_config, declare_params
from naf_ros.ros.runtime import exit_process, run_node

# Best effort matches any joint_states publisher; deep, so a busy recorder drops nothing.
JOINT_STATES_RECORD = QoSProfile(
    depth=200,
    reliability=qos_profile_sensor_data.reliability,
    history=qos_profile_sensor_data.history,
)
COMMANDS_RECORD = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)

RECORDER_PARAMS: tuple[Param, ...] = (
    Param("controller_name", "effort_controller", str, None,
          "effort ForwardCommandController whose <controller_name>/commands are recorded"),
    Param("segment_s", 60.0, float, None,
          "s per bag segment (a crash loses at most the open one); <= 0: one segment"),
    Param("prefix", "", str, None, "segment folder prefix; empty: the arm's namespace, or 'arm'"),
)  # fmt: skip


class BagRecorderNode(Node):
    """Listens to one arm's topics and writes them into segmented bags."""

    def __init__(self, **kwargs) -> None:
        super().__init__("bag_recorder", **kwargs)
        self.cfg = declare_config(self, ("train", "bag"))
        p = declare_params(self, RECORDER_PARAMS)
        self.controller_name, self.segment_s = p.controller_name, p.segment_s
        prefix = p.prefix or self.get_namespace().strip("/") or "arm"
        prefix = prefix.replace("/", "_")
        if not self.cfg.bag.record:
            raise ConfigError("bag.record: the recorder needs a folder name (it is empty)")
        folder = Path(self.cfg.train.run_dir) / self.cfg.bag.record
        self.bag = SegmentedBag(folder, prefix, self.controller_name, log=self.get_logger().warning)
        self._last_js_ns = 0
        self.diag = Diagnostics(self)
        self.create_subscription(
            JointState, JOINT_STATES_TOPIC, self._on_joint_state, JOINT_STATES_RECORD
        )
        self.create_subscription(
            Float64MultiArray,
            commands_topic(self.controller_name),
            self._on_command,
            COMMANDS_RECORD,
        )
        self.create_subscription(PointStamped, TARGET_TOPIC, self._on_target, qos.LATCHED)
        if self.segment_s > 0:
            self.create_timer(self.segment_s, self.bag.rotate)
        self.create_timer(1.0, self._refresh)
        self.get_logger().info(f"recording {prefix} to {folder}")

    def _log_time(self, stamp_ns: int) -> int:
        return self.bag.stamp(stamp_ns if stamp_ns > 0 else None)

    def _on_joint_state(self, msg: JointState) -> None:
        ns = self._log_time(stamp_to_ns(msg.header.stamp))
        self._last_js_ns = ns
        self.bag.write("joint_state", ns, list(msg.name), msg.position, msg.velocity, msg.effort)

    def _on_command(self, msg: Float64MultiArray) -> None:
        self.bag.write("command", self.bag.stamp(self._last_js_ns + 1), list(msg.data))

    def _on_target(self, msg: PointStamped) -> None:
        ns = self._log_time(stamp_to_ns(msg.header.stamp))
        point = (msg.point.x, msg.point.y, msg.point.z)
        self.bag.write("target", ns, point, msg.header.frame_id)

    def _refresh(self) -> None:
        self.diag.values.update(self.bag.diagnostics())
        if self.bag.last_error:
            self.diag.problem("bag", DiagnosticStatus.WARN, f"recording: {self.bag.last_error}")

    def safe_stop(self) -> None:
        self.bag.close()


def main(args: list[str] | None = None) -> None:
    exit_process(run_node(BagRecorderNode, args))


if __name__ == "__main__":
    main()
