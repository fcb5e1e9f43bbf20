"""MuJoCo reacher behind the interfaces a real ros2_control arm offers.

The bridge speaks only what a real arm would (``joint_states``, an effort
ForwardCommandController's ``<controller>/commands``) plus what a simulator adds (``/clock``,
``sim/reset``, ``sim/pause``, the target), so the learning side cannot tell it from hardware.

Modes: ``lockstep`` steps exactly one control period per received command (reproducible
training at the speed of the graph); ``realtime`` steps on a wall-clock timer with the last
command, like a robot, with a watchdog that zeroes effort when commands stop.

This module also holds two small helpers the policy node shares (env kwargs from the config
and the SIGINT-safe spin loop), kept free of heavy imports so importing them stays cheap.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PointStamped
from rclpy.executors import SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger
from visualization_msgs.msg import Marker

from naf_ros.config import ConfigError, EnvConfig
from naf_ros.ros import qos
from naf_ros.ros.common import Diagnostics, declare_config

REACHER_ENTRY_POINT = "naf_ros.envs.reacher_env:Reacher3DOFEnv"
MODES = ("lockstep", "realtime")
TARGET_MODES = ("env", "fixed", "random")


# --- helpers shared with the policy node ------------------------------------------------------
def reacher_env_kwargs(env_cfg: EnvConfig) -> dict:
    """Constructor kwargs of the configured reacher (registry kwargs + ``env.kwargs``).

    The nodes rebuild exactly what the in-process trainer's ``gym.make`` would, so control
    period, reward weights, initial-state noise and target agree between the two paths.
    """
    import gymnasium as gym

    import naf_ros.envs  # noqa: F401  (registers the reacher ids)

    if env_cfg.id not in gym.registry:
        raise ConfigError(f"env.id: {env_cfg.id!r} is not a registered environment")
    spec = gym.spec(env_cfg.id)
    if spec.entry_point != REACHER_ENTRY_POINT:
        raise ConfigError(
            f"env.id: {env_cfg.id!r} is not the naf_ros reacher; the ROS graph simulates "
            "and serves that task only"
        )
    kwargs = dict(spec.kwargs or {})
    kwargs.update(env_cfg.kwargs or {})
    return kwargs


def episode_steps(env_cfg: EnvConfig) -> int:
    """Episode length T: ``env.max_episode_steps`` or the registered time limit."""
    if env_cfg.max_episode_steps is not None:
        return int(env_cfg.max_episode_steps)
    from naf_ros.envs import EPISODE_STEPS

    return EPISODE_STEPS


def stamp_to_ns(stamp: Time) -> int:
    """A message stamp as integer nanoseconds (exact, unlike float seconds)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int, stamp: Time) -> None:
    """Write integer nanoseconds into a message stamp in place."""
    stamp.sec, stamp.nanosec = divmod(int(ns), 1_000_000_000)


def run_node(make_node: Callable[[], LifecycleNode], argv: list[str] | None = None) -> int:
    """Spin a node until SIGINT/SIGTERM, then let it make the arm safe before ROS goes down.

    rclpy's own signal handler shuts the context down first, after which a final zero-effort
    command could no longer be published; so we own the signals and call ``node.safe_stop()``
    while the context is still alive.
    """
    rclpy.init(
        args=argv if argv is not None else sys.argv, signal_handler_options=SignalHandlerOptions.NO
    )
    stop = threading.Event()

    def _on_signal(_sig, _frame):
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    code = 0
    node = None
    executor = SingleThreadedExecutor()
    try:
        node = make_node()
        node.stop_event = stop
        executor.add_node(node)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.05)
        code = int(getattr(node, "exit_code", 0))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        code = 2
    finally:
        if node is not None:
            try:
                node.safe_stop()
            except Exception as exc:  # noqa: BLE001 - shutdown must go on
                print(f"safe_stop failed: {exc}", file=sys.stderr)
            executor.remove_node(node)
            node.destroy_node()
        executor.shutdown()
        if rclpy.ok():
            rclpy.shutdown()
    return code


def declare(node: Node, name: str, default: Any) -> Any:
    """Declare one node-specific parameter and return its value."""
    return node.declare_parameter(name, default).value


def guarded(callback: Callable[..., TransitionCallbackReturn]) -> Callable[..., Any]:
    """Run a lifecycle callback, turning exceptions into FAILURE with a logged reason.

    rclpy swallows exceptions in transition callbacks; autostart needs the reason to exit
    with a one-line config error instead of idling unconfigured.
    """

    def wrapper(self, state):
        try:
            return callback(self, state)
        except Exception as exc:  # noqa: BLE001 - reported and turned into FAILURE
            self.transition_error = (
                f"{type(exc).__name__}: {exc}" if not isinstance(exc, ConfigError) else str(exc)
            )
            self.get_logger().fatal(f"{callback.__name__} failed: {self.transition_error}")
            return TransitionCallbackReturn.FAILURE

    wrapper.__name__ = callback.__name__
    wrapper.__doc__ = callback.__doc__
    return wrapper


def autostart(node: LifecycleNode) -> None:
    """configure + activate, raising ConfigError with the reason if either fails."""
    for name in ("configure", "activate"):
        ret = getattr(node, f"trigger_{name}")()
        if ret != TransitionCallbackReturn.SUCCESS:
            raise ConfigError(getattr(node, "transition_error", None) or f"{name} failed")


# --- the bridge -------------------------------------------------------------------------------
class SimBridge(LifecycleNode):
    """Lifecycle node owning one simulated arm; nothing moves before it is active."""

    def __init__(self, **kwargs) -> None:
        super().__init__("sim_bridge", **kwargs)
        self.cfg = declare_config(self, ("env", "train"))
        self.mode = declare(self, "mode", "lockstep")
        if self.mode not in MODES:
            raise ConfigError(f"mode: {self.mode!r} is not one of {', '.join(MODES)}")
        self.controller_name = declare(self, "controller_name", "effort_controller")
        self.command_timeout = float(declare(self, "command_timeout", 0.5))
        self.arm_index = int(declare(self, "arm_index", 0))
        self.target_mode = declare(self, "target_mode", "env")
        if self.target_mode not in TARGET_MODES:
            raise ConfigError(f"target_mode: {self.target_mode!r} not in {TARGET_MODES}")
        self.fixed_target = list(declare(self, "fixed_target", [0.10, 0.20]))
        self.frame_id = declare(self, "frame_id", "world")
        # One /clock per graph: with several arms only one bridge may own sim time.
        self.publish_clock = bool(declare(self, "publish_clock", True))
        start = bool(declare(self, "autostart", True))
        self.diag = Diagnostics(self, float(declare(self, "diagnostics_period", 1.0)))
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
        self._target_request: np.ndarray | None = None
        self._timer = None
        self._lock = threading.Lock()
        self.transition_error: str | None = None
        if start:
            autostart(self)

    # --- lifecycle ----------------------------------------------------------------------------
    @guarded
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        from naf_ros.envs.reacher_env import Reacher3DOFEnv

        kwargs = reacher_env_kwargs(self.cfg.env)
        if self.target_mode == "fixed":
            kwargs["fixed_target"] = tuple(self.fixed_target)
        elif self.target_mode == "random":
            kwargs["fixed_target"] = None
        self.env = Reacher3DOFEnv(**kwargs)
        self.sim = self.env.sim
        self.joint_names = list(self.sim.joint_names)
        self.n = len(self.joint_names)
        self.control_dt_ns = int(round(self.sim.control_dt * 1e9))
        self.js_pub = self.create_publisher(JointState, "joint_states", qos.JOINT_STATES_PUB)
        self.clock_pub = self.create_publisher(Clock, "/clock", qos.CLOCK)
        self.target_pub = self.create_publisher(PointStamped, "target", qos.LATCHED)
        self.marker_pub = self.create_publisher(Marker, "target_marker", qos.LATCHED)
        self.cmd_sub = self.create_subscription(
            Float64MultiArray, f"{self.controller_name}/commands", self._on_command, qos.COMMANDS
        )
        self.target_sub = self.create_subscription(
            PointStamped, "target_request", self._on_target_request, qos.LATCHED
        )
        self.reset_srv = self.create_service(Trigger, "sim/reset", self._on_reset)
        self.pause_srv = self.create_service(SetBool, "sim/pause", self._on_pause)
        self._reset(seed=self.cfg.train.seed + self.arm_index)
        self._fresh_reset = True
        self._publish_target()
        self.diag.values.update(mode=self.mode, control_dt=self.sim.control_dt)
        self.get_logger().info(
            f"configured: {self.n} joints {self.joint_names}, mode {self.mode}, "
            f"control_dt {self.sim.control_dt} s, commands on "
            f"{self.resolve_topic_name(f'{self.controller_name}/commands')}"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.sim.set_effort(np.zeros(self.n))
        self._last_command_wall = time.monotonic()
        self.active = True
        if self.mode == "realtime":
            self._timer = self.create_timer(self.sim.control_dt, self._on_timer)
        self._publish_state()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._hold()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        for ent in (self.cmd_sub, self.target_sub):
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
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None
        if self.env is not None:
            self.sim.set_effort(np.zeros(self.n))

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
        self._last_command_wall = time.monotonic()
        self.sim.set_effort(data)  # clips to the model's effort limits
        if self.mode == "lockstep":
            self._step()
            self._publish_state()

    def _on_target_request(self, msg: PointStamped) -> None:
        p = np.array([msg.point.x, msg.point.y], dtype=float)
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

    def _on_timer(self) -> None:
        if not self.active or self.paused:
            return
        if time.monotonic() - self._last_command_wall > self.command_timeout:
            if np.any(self.sim.effort != 0.0):
                self.watchdog_trips += 1
                self.diag.values["watchdog_trips"] = self.watchdog_trips
                self.get_logger().warning(
                    f"no command for {self.command_timeout} s: zero effort",
                    throttle_duration_sec=5.0,
                )
            self.sim.set_effort(np.zeros(self.n))
        self._step()
        self._publish_state()

    # --- physics and outputs ------------------------------------------------------------------
    def _reset(self, seed: int | None = None) -> None:
        options = None
        if self._target_request is not None:
            options = {"target": self._target_request}
            self._target_request = None
        self.env.reset(seed=seed, options=options)

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


def main(argv: list[str] | None = None) -> int:
    """Console script ``sim_bridge``: run the node until SIGINT/SIGTERM or until it is done."""
    return run_node(SimBridge, argv)


if __name__ == "__main__":
    sys.exit(main())
