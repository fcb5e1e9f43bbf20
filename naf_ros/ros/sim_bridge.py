"""MuJoCo reacher behind the interfaces a real ros2_control arm offers.

The bridge speaks only what a real arm would (``joint_states``, an effort
ForwardCommandController's ``<controller>/commands``) plus what a simulator adds (``/clock``,
``sim/reset``, ``sim/pause``, the target), so the learning side cannot tell it from hardware.

Modes: ``lockstep`` steps exactly one control period per received command (reproducible
training at the speed of the graph); ``realtime`` steps on a wall-clock timer with the last
command, like a robot.

Like the hardware side of a real arm, the bridge does not trust its commander: every
command passes its own :class:`~naf_ros.core.safety.SafetyEnvelope` (effort limits, command
watchdog, e-stop latch). The watchdog zeroes the effort ``command_timeout`` s after the last
command in both modes (in lockstep that is the effort the next step would start from, and
what ``/diagnostics`` reports as ``applied_effort``). ``estop`` (``std_msgs/Bool``, in the
arm's namespace): ``true`` latches zero effort, ``false`` releases it (then motion resumes
only with a fresh command); while latched, lockstep commands still step the physics, with
zero effort.

``arm.command_interface`` picks the controller the bridge stands in for: effort (above),
velocity (velocity servos; stop and watchdog command zero velocity) or position (position
servos; stop and watchdog hold the arm where it was when the hold began, never at zero);
see :mod:`naf_ros.envs.sim`. The default controller is ``<command_interface>_controller``.
"""

from __future__ import annotations

import threading
import time

import numpy as np
from geometry_msgs.msg import PointStamped
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray
from std_srvs.srv import SetBool, Trigger
from visualization_msgs.msg import Marker

from naf_ros.config import EFFORT, POSITION, ConfigError
from naf_ros.core.safety import WATCHDOG, SafetyEnvelope, SafetyLimits
from naf_ros.envs.configured import make_reacher
from naf_ros.ros import qos
from naf_ros.ros.description import arm_description
from naf_ros.ros.diagnostics import Diagnostics
from naf_ros.ros.messages import ns_to_stamp
from naf_ros.ros.names import (
    CLOCK_TOPIC,
    ESTOP_TOPIC,
    JOINT_STATES_TOPIC,
    PAUSE_SERVICE,
    RESET_SERVICE,
    TARGET_TOPIC,
    commands_topic,
    controller_for,
)
from naf_ros.ros.params import (
    Param,
    declare_config,
    declare_params,
    finite_list,
    one_of,
    positive,
)
from naf_ros.ros.realtime import raise_priority
from naf_ros.ros.runtime import autostart, exit_process, guarded, run_node

MODES = ("lockstep", "realtime")
TARGET_MODES = ("env", "fixed", "random")
WATCHDOG_PERIOD_S = 0.05

BRIDGE_PARAMS: tuple[Param, ...] = (
    Param("mode", "lockstep", str, one_of(*MODES),
          "lockstep: one control period per received command; realtime: wall-clock steps "
          "with the last command"),
    Param("controller_name", "", str, None,
          "the ForwardCommandController of arm.command_interface; commands arrive on "
          "<controller_name>/commands ('': <command_interface>_controller)"),
    Param("command_timeout", 0.5, float, positive(),
          "s without a command after which the watchdog zeroes the effort"),
    Param("arm_index", 0, int, None, "offsets the reset seed, so arms start differently"),
    Param("target_mode", "env", str, one_of(*TARGET_MODES),
          "env: the env's target; fixed: fixed_target; random: a new one per reset"),
    Param("fixed_target", [0.10, 0.20], list, finite_list(),
          "target_mode fixed: (x, y) for the planar reacher, (x, y, z) for an arm, in m"),
    Param("frame_id", "world", str, None, "frame of the published target"),
    Param("publish_clock", True, bool, None,
          "publish sim time on /clock (one bridge per graph may own it)"),
    Param("autostart", True, bool, None, "configure and activate at start"),
    Param("diagnostics_period", 1.0, float, positive(), "s between /diagnostics messages"),
    Param("realtime_priority", 0, int, None,
          "realtime: SCHED_FIFO priority, as a real driver runs (<= 0: normal scheduling)"),
)  # fmt: skip


# --- the bridge -------------------------------------------------------------------------------
class SimBridge(LifecycleNode):
    """Lifecycle node owning one simulated arm; nothing moves before it is active."""

    def __init__(self, **kwargs) -> None:
        super().__init__("sim_bridge", **kwargs)
        self.cfg = declare_config(self, ("env", "train", "arm", "safety"))
        p = declare_params(self, BRIDGE_PARAMS)
        self.interface = self.cfg.arm.command_interface
        self.mode = p.mode
        self.controller_name = controller_for(self.interface, p.controller_name)
        self.command_timeout, self.arm_index = p.command_timeout, p.arm_index
        self.target_mode, self.fixed_target = p.target_mode, p.fixed_target
        self.frame_id = p.frame_id
        # One /clock per graph: with several arms only one bridge may own sim time.
        self.publish_clock = p.publish_clock
        self.diag = Diagnostics(self, p.diagnostics_period)
        if self.mode == "realtime":  # the arm's clock: a real driver runs SCHED_FIFO too
            raise_priority(self, p.realtime_priority)
        self.env = None
        self.active = False
        self.paused = False
        self.exit_code = 0
        self.sim_time_ns = 0
        self.steps = 0
        self.commands = 0
        self.watchdog_trips = 0
        self._fresh_reset = False
        self._seeded = False
        self._last_command_wall = 0.0
        self._command = None  # the last accepted command (realtime holds it, like the controller)
        self._trip_age: float | None = None
        self._target_request: np.ndarray | None = None
        self._timer = None
        self._watchdog_timer = None
        self.envelope: SafetyEnvelope | None = None
        self._lock = threading.Lock()
        self.transition_error: str | None = None
        if p.autostart:
            autostart(self)

    # --- lifecycle ----------------------------------------------------------------------------
    @guarded
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        # The reacher the config names (an arm id: ArmReachEnv with the arm section and, for
        # arm.model robot_description, the URDF from that topic; else the planar reacher).
        # Servo interfaces need velocity limits: safety.velocity where given (else the arm's).
        speeds = {}
        if self.interface != EFFORT and self.cfg.safety.velocity is not None:
            speeds["velocity"] = self.cfg.safety.velocity
        self.env = make_reacher(self.cfg, arm_description(self, self.cfg), **speeds)
        self.dims = self.env.task.dims
        if self.target_mode == "fixed":
            if len(self.fixed_target) != self.dims:
                raise ConfigError(
                    f"fixed_target: {self.fixed_target} has {len(self.fixed_target)} values; "
                    f"the task's targets have {self.dims} ({'x, y, z'[: 3 * self.dims - 2]})"
                )
            self.env.fixed_target = np.asarray(self.fixed_target, dtype=float)
        elif self.target_mode == "random":
            self.env.fixed_target = None
        self.sim = self.env.sim
        self.get_logger().info(self.sim.arm.describe())
        self.joint_names = list(self.sim.joint_names)
        self.n = len(self.joint_names)
        self.control_dt_ns = int(round(self.sim.control_dt * 1e9))
        # The hardware side's own envelope: effort limits, watchdog and e-stop; no soft
        # position limits (the sim has its hard joint ranges, as a real arm has end stops).
        unlimited = [float("inf")] * self.n
        speeds = {} if self.interface == EFFORT else {"velocity": self.env.command.velocity_limits}
        self.envelope = SafetyEnvelope(
            SafetyLimits.from_arm(
                self.sim.arm,
                command_timeout=self.command_timeout,
                soft_lower=[-x for x in unlimited],
                soft_upper=unlimited,
                **{k: v.tolist() for k, v in speeds.items()},
            ),
            self.interface,
            self.sim.control_dt,
            hold_effort=self.env.command.hold_effort,
        )
        self.js_pub = self.create_publisher(JointState, JOINT_STATES_TOPIC, qos.JOINT_STATES_PUB)
        self.clock_pub = self.create_publisher(Clock, CLOCK_TOPIC, qos.CLOCK)
        self.target_pub = self.create_publisher(PointStamped, TARGET_TOPIC, qos.LATCHED)
        self.marker_pub = self.create_publisher(Marker, "target_marker", qos.LATCHED)
        self.cmd_sub = self.create_subscription(
            Float64MultiArray, commands_topic(self.controller_name), self._on_command, qos.COMMANDS
        )
        self.target_sub = self.create_subscription(
            PointStamped, "target_request", self._on_target_request, qos.LATCHED
        )
        self.estop_sub = self.create_subscription(Bool, ESTOP_TOPIC, self._on_estop, qos.ESTOP)
        self.reset_srv = self.create_service(Trigger, RESET_SERVICE, self._on_reset)
        self.pause_srv = self.create_service(SetBool, PAUSE_SERVICE, self._on_pause)
        self._reset(seed=self.cfg.train.seed + self.arm_index)
        self._fresh_reset = True
        self._publish_target()
        self.diag.values.update(mode=self.mode, control_dt=self.sim.control_dt)
        self.get_logger().info(
            f"configured: {self.n} joints {self.joint_names}, mode {self.mode}, "
            f"control_dt {self.sim.control_dt} s, commands on "
            f"{self.resolve_topic_name(commands_topic(self.controller_name))}"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._zero_effort()
        self._command = None
        self._last_command_wall = time.monotonic()
        self.active = True
        if self.mode == "realtime":
            self._timer = self.create_timer(self.sim.control_dt, self._on_timer)
        else:
            self._watchdog_timer = self.create_timer(WATCHDOG_PERIOD_S, self._on_watchdog)
        self._publish_state()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._hold()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        for ent in (self.cmd_sub, self.target_sub, self.estop_sub):
            self.destroy_subscription(ent)
        for srv in (self.reset_srv, self.pause_srv):
            self.destroy_service(srv)
        for pub in (self.js_pub, self.clock_pub, self.target_pub, self.marker_pub):
            self.destroy_publisher(pub)
        self.env = None
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._hold()
        return TransitionCallbackReturn.SUCCESS

    def _hold(self) -> None:
        """Zero effort and stop stepping: a deactivated arm must not keep the last command."""
        self.active = False
        for timer in (self._timer, self._watchdog_timer):
            if timer is not None:
                self.destroy_timer(timer)
        self._timer = self._watchdog_timer = None
        self._command = None
        if self.env is not None:
            self._zero_effort()

    def _zero_effort(self) -> None:
        """The interface's rest: zero effort or velocity, or hold where the arm is."""
        self.sim.set_command(self.envelope.rest(self.sim.joint_positions()))
        self._report_effort()

    def safe_stop(self) -> None:
        """Called by run_node on the way down, while ROS is still up."""
        self._hold()

    # --- inputs -------------------------------------------------------------------------------
    def _on_command(self, msg: Float64MultiArray) -> None:
        """ForwardCommandController semantics: one effort per joint, else the message is dropped."""
        data = np.asarray(msg.data, dtype=float)
        if data.shape != (self.n,):
            self.diag.reject("command_length", f"{data.size} values for {self.n} joints")
            return
        if not np.isfinite(data).all():
            self.diag.reject("command_non_finite")
            return
        if not self.active:
            self.diag.reject("command_inactive")
            return
        if self.paused and self.mode == "lockstep":
            self.diag.reject("command_paused")
            return
        self.commands += 1
        now = time.monotonic()
        self._last_command_wall = now
        self._command = data
        self.envelope.command_received(now)
        self._apply(now)
        if self.mode == "lockstep":
            self._step()
            self._publish_state()

    def _on_target_request(self, msg: PointStamped) -> None:
        p = np.array([msg.point.x, msg.point.y, msg.point.z], dtype=float)[: self.dims]
        if not np.isfinite(p).all():
            self.diag.reject("target_non_finite")
            return
        self._target_request = p

    def _on_reset(self, request: Trigger.Request, response: Trigger.Response):
        if self.env is None:
            response.success, response.message = False, "not configured"
            return response
        if not self._fresh_reset or self._target_request is not None:
            self._reset()
        self._fresh_reset = False
        self.sim_time_ns += self.control_dt_ns  # a reset takes one period: stamps stay unique
        self._publish_target()
        self._publish_state()
        response.success = True
        response.message = f"stamp_ns={self.sim_time_ns}"
        return response

    def _on_pause(self, request: SetBool.Request, response: SetBool.Response):
        self.paused = bool(request.data)
        response.success, response.message = True, "paused" if self.paused else "running"
        return response

    def _on_estop(self, msg: Bool) -> None:
        if self.envelope is None:
            return
        if msg.data:
            if not self.envelope.estopped:
                self.get_logger().warning("e-stop: zero effort until released")
            self.envelope.engage_estop("estop topic")
            self._apply(time.monotonic())
        elif self.envelope.estopped:
            self.envelope.release_estop()
            self._command = None  # nothing from before the stop is replayed
            self.get_logger().info("e-stop released")
        self.diag.values.update(self.envelope.diagnostics())

    def _apply(self, now: float) -> None:
        """Effort <- the envelope's verdict on the held command (zero if none or stale)."""
        q, qd = self.sim.joint_positions(), self.sim.joint_velocities()
        command = self._command if self._command is not None else self.envelope.rest(q)
        was_live = self._live()
        safe, reasons = self.envelope.filter(command, q, qd, now)
        self.sim.set_command(safe)  # effort: also clips to the model's effort limits
        if WATCHDOG in reasons and was_live:
            self.watchdog_trips += 1
            self._trip_age = now - self._last_command_wall
            self.diag.values["watchdog_trips"] = self.watchdog_trips
            self.diag.values["watchdog_trip_after_s"] = round(self._trip_age, 3)
            self.get_logger().warning(
                f"no command for {self.command_timeout} s: zero effort",
                throttle_duration_sec=5.0,
            )
        self._report_effort()

    def _report_effort(self) -> None:
        self.diag.values["applied_effort"] = [round(float(e), 6) for e in self.sim.effort]
        if self.envelope is not None:
            self.diag.values["estop"] = self.envelope.estopped

    def _live(self) -> bool:
        """A command that asks for motion is applied: non-zero effort or velocity; for
        position, anything but a hold."""
        if self.interface == POSITION:
            return not self.envelope.holding
        return bool(np.any(self.sim.command != 0.0))

    def _on_watchdog(self) -> None:
        """Lockstep: zero a held effort (velocity; hold a position) when commands stop
        (nothing steps without them)."""
        if self.active and self._live():
            self._apply(time.monotonic())

    def _on_timer(self) -> None:
        if not self.active or self.paused:
            return
        self._apply(time.monotonic())
        self._step()
        self._publish_state()

    # --- physics and outputs ------------------------------------------------------------------
    def _reset(self, seed: int | None = None) -> None:
        """A new episode starts at rest with zero effort: the held command belongs to the old
        one, and /diagnostics must say so (it reported the last applied effort before)."""
        options = None
        if self._target_request is not None:
            options = {"target": self._target_request}
            self._target_request = None
        self.env.reset(seed=seed, options=options)
        self._command = None
        self._report_effort()

    def _step(self) -> None:
        self.sim.step()
        self._fresh_reset = False
        self.steps += 1
        self.sim_time_ns += self.control_dt_ns
        self.diag.values.update(steps=self.steps, commands=self.commands)

    def _publish_state(self) -> None:
        js = JointState()
        ns_to_stamp(self.sim_time_ns, js.header.stamp)
        js.name = self.joint_names
        js.position = self.sim.joint_positions().tolist()
        js.velocity = self.sim.joint_velocities().tolist()
        js.effort = self.sim.effort.tolist()
        if self.publish_clock:
            clock = Clock()
            clock.clock = js.header.stamp
            self.clock_pub.publish(clock)
        self.js_pub.publish(js)

    def _publish_target(self) -> None:
        target = self.sim.target
        pt = PointStamped()
        ns_to_stamp(self.sim_time_ns, pt.header.stamp)
        pt.header.frame_id = self.frame_id
        pt.point.x, pt.point.y = float(target[0]), float(target[1])
        pt.point.z = float(target[2]) if len(target) > 2 else 0.0
        self.target_pub.publish(pt)
        marker = Marker()
        marker.header = pt.header
        marker.ns, marker.id = "naf_ros_target", 0
        marker.type, marker.action = Marker.SPHERE, Marker.ADD
        marker.pose.position = pt.point
        marker.pose.orientation.w = 1.0
        marker.scale.x = marker.scale.y = marker.scale.z = 0.024
        marker.color.r, marker.color.g, marker.color.b, marker.color.a = 0.2, 0.9, 0.2, 0.8
        self.marker_pub.publish(marker)


def main(argv: list[str] | None = None) -> None:
    """Console script ``sim_bridge``: run the node until SIGINT/SIGTERM or until it is done."""
    exit_process(run_node(SimBridge, argv))


if __name__ == "__main__":
    main()
