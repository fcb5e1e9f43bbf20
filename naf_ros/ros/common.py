"""Shared node plumbing: config as ROS parameters, the spin loop, task helpers, diagnostics.

Nodes are thin adapters: they read the same validated :class:`~naf_ros.config.Config` the
in-process trainer uses (declared as ``section.key`` parameters), and every dropped input
is counted, logged (throttled) and reported on ``/diagnostics``. This module stays light to
import (no torch, no MuJoCo): gymnasium and the task code are imported only when used.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import rclpy
import yaml
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.signals import SignalHandlerOptions
from std_msgs.msg import Float64, Float64MultiArray

from naf_ros.config import Config, ConfigError, EnvConfig, config_from_dict, flatten
from naf_ros.ros.codec import CodecError, decode_transition, unpack_arrays

if TYPE_CHECKING:
    from rclpy.lifecycle import LifecycleNode

    from naf_ros.envs.task import ReacherTask

# Topics every node of the graph agrees on (absolute: one learner serves all arms).
TRANSITIONS_TOPIC = "/naf/transitions"
WEIGHTS_TOPIC = "/naf/weights"
MODEL_TOPIC = "/naf/dynamics_model"
CONTROLLER_TOPIC = "/naf/ilqg_controller"
PROGRESS_TOPIC = "/naf/learner_progress"

REACHER_ENTRY_POINT = "naf_ros.envs.reacher_env:Reacher3DOFEnv"
DEFAULT_EPISODE_STEPS = 50


# --- configuration ----------------------------------------------------------------------------
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


# --- the task, as the configured env defines it -----------------------------------------------
def reacher_env_kwargs(env_cfg: EnvConfig, require_registered: bool = True) -> dict:
    """Constructor kwargs of the configured reacher (registry kwargs + ``env.kwargs``).

    The nodes rebuild exactly what the in-process trainer's ``gym.make`` would, so control
    period, reward weights, initial-state noise and target agree between the two paths.
    The learning-side nodes only need the task, so they accept an unregistered id
    (``require_registered=False``: kwargs then come from ``env.kwargs`` alone).
    """
    import gymnasium as gym

    import naf_ros.envs  # noqa: F401  (registers the reacher ids)

    kwargs: dict = {}
    if env_cfg.id in gym.registry:
        spec = gym.spec(env_cfg.id)
        if spec.entry_point != REACHER_ENTRY_POINT:
            raise ConfigError(
                f"env.id: {env_cfg.id!r} is not the naf_ros reacher; the ROS graph simulates "
                "and learns that task only (its reward must be computable from observations)"
            )
        kwargs.update(spec.kwargs or {})
    elif require_registered:
        raise ConfigError(f"env.id: {env_cfg.id!r} is not a registered environment")
    kwargs.update(env_cfg.kwargs or {})
    return kwargs


def episode_steps(env_cfg: EnvConfig) -> int:
    """Episode length T: ``env.max_episode_steps``, else the registered time limit."""
    if env_cfg.max_episode_steps is not None:
        return int(env_cfg.max_episode_steps)
    import gymnasium as gym

    import naf_ros.envs  # noqa: F401

    if env_cfg.id in gym.registry and gym.spec(env_cfg.id).max_episode_steps:
        return int(gym.spec(env_cfg.id).max_episode_steps)
    return DEFAULT_EPISODE_STEPS


def reacher_task(env_cfg: EnvConfig) -> ReacherTask:
    """The task the configured reacher uses, so rewards and derivatives match the sim's."""
    from naf_ros.envs.task import ArmModel, ReacherTask

    kwargs = reacher_env_kwargs(env_cfg, require_registered=False)
    arm = ArmModel.from_mjcf(kwargs.get("model_path"))
    return ReacherTask(arm, ctrl_cost_weight=float(kwargs.get("ctrl_cost_weight", 0.02)))


# --- messages ---------------------------------------------------------------------------------
HEADER = ("producer", "seq", "episode", "t")


def parse_transition(
    msg: Float64MultiArray, obs_dim: int, act_dim: int
) -> tuple[dict | None, tuple[int, int, int, int] | None, str]:
    """Decode a transition; on failure still recover (producer, seq, episode, t) if possible.

    Returns ``(transition or None, header or None, reject reason or "")``. A transition
    that is bad but identifiable still accounts for its sequence number, so a rejected
    sample neither looks like a gap nor stalls a lockstep producer waiting on progress.
    """
    try:
        tr = decode_transition(msg, obs_dim, act_dim)
    except CodecError as exc:
        reason = "non_finite" if "non-finite" in str(exc) else "malformed"
    except Exception:  # noqa: BLE001 - any undecodable message is malformed, never fatal
        reason = "malformed"
    else:
        header = tuple(tr[k] for k in HEADER)
        if np.max(np.abs(tr["action"])) > 1.0 + 1e-6:
            return None, header, "action_out_of_range"
        return tr, header, ""
    try:
        raw = unpack_arrays(msg, finite=False)
        vals = [float(np.asarray(raw[k]).reshape(())) for k in HEADER]
    except Exception:  # noqa: BLE001 - header unreadable too
        return None, None, reason
    if all(np.isfinite(v) and v >= 0 and v == int(v) for v in vals):
        return None, tuple(int(v) for v in vals), reason
    return None, None, reason


def publish_scalar(pub, value: float) -> None:
    pub.publish(Float64(data=float(value)))


def stamp_to_ns(stamp: Time) -> int:
    """A message stamp as integer nanoseconds (exact, unlike float seconds)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int, stamp: Time) -> None:
    """Write integer nanoseconds into a message stamp in place."""
    stamp.sec, stamp.nanosec = divmod(int(ns), 1_000_000_000)


# --- lifecycle helpers ------------------------------------------------------------------------
def guarded(callback: Callable[..., Any]) -> Callable[..., Any]:
    """Run a lifecycle callback, turning exceptions into FAILURE with a logged reason.

    rclpy swallows exceptions in transition callbacks; autostart needs the reason to exit
    with a one-line config error instead of idling unconfigured.
    """
    from rclpy.lifecycle import TransitionCallbackReturn

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
    from rclpy.lifecycle import TransitionCallbackReturn

    for name in ("configure", "activate"):
        ret = getattr(node, f"trigger_{name}")()
        if ret != TransitionCallbackReturn.SUCCESS:
            raise ConfigError(getattr(node, "transition_error", None) or f"{name} failed")


def run_node(make_node: Callable[[], Node], argv: list[str] | None = None) -> int:
    """Spin a node until SIGINT/SIGTERM (or until it is done), then let it stop safely.

    rclpy's own signal handler shuts the context down first, after which a final
    zero-effort command or checkpoint could no longer be published; so we own the signals.
    Optional node hooks, all called with ROS still up:

    - ``node.stop_event`` is set to the loop's event (a node ends the run by setting it);
    - ``start()`` after the node joined the executor;
    - ``healthy()`` returning False (e.g. a dead worker) ends the loop with exit code 1;
    - ``safe_stop()`` on the way down (zero effort, final checkpoint);
    - ``drained()`` / ``drain_timeout``: keep spinning after ``safe_stop`` until the node
      has handed off what it holds (e.g. unacknowledged transitions), at most that long.

    ``node.exit_code`` (default 0) is the process's exit code.
    """
    rclpy.init(
        args=argv if argv is not None else sys.argv,
        signal_handler_options=SignalHandlerOptions.NO,
    )
    stop = threading.Event()

    def _on_signal(_sig, _frame) -> None:
        stop.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    code, node = 0, None
    executor = SingleThreadedExecutor()
    try:
        node = make_node()
        node.stop_event = stop
        # Dynamically typed: `cpu_affinity:=1` arrives as an integer, `0,2` as text.
        affinity = node.declare_parameter(
            "cpu_affinity", "", ParameterDescriptor(dynamic_typing=True)
        ).value
        pin_cpus(node, str(affinity))
        executor.add_node(node)
        start = getattr(node, "start", None)
        if start is not None:
            start()
        healthy = getattr(node, "healthy", None)
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.05)
            if healthy is not None and not healthy():
                code = 1
                break
        code = code or int(getattr(node, "exit_code", 0))
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        code = 2
    finally:
        if node is not None:
            try:
                safe_stop = getattr(node, "safe_stop", None)
                if safe_stop is not None:
                    safe_stop()
                drained = getattr(node, "drained", None)
                deadline = time.monotonic() + float(getattr(node, "drain_timeout", 0.0))
                while drained is not None and rclpy.ok() and time.monotonic() < deadline:
                    if drained():
                        break
                    executor.spin_once(timeout_sec=0.05)
            except Exception as exc:  # noqa: BLE001 - shutdown must go on
                print(f"shutdown failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                code = code or 1
            executor.remove_node(node)
            node.destroy_node()
        executor.shutdown()
        if rclpy.ok():
            rclpy.shutdown()
    return code


# --- diagnostics ------------------------------------------------------------------------------
class Diagnostics:
    """Counts rejected inputs by reason and publishes them (and extra values) on /diagnostics.

    ``problems`` maps a key to a (level, message) that stays until cleared, so several
    independent conditions (a failing checkpoint, a full outbox) can be reported at once;
    the status takes the worst level and joins the messages.
    """

    def __init__(self, node: Node, period_s: float = 1.0) -> None:
        self.node = node
        self.rejected: Counter[str] = Counter()
        self.values: dict[str, Any] = {}
        self.level = DiagnosticStatus.OK
        self.message = "ok"
        self.problems: dict[str, tuple[bytes, str]] = {}
        self._last_reject_log = -float("inf")
        self._pub = node.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._timer = node.create_timer(period_s, self.publish)

    def reject(self, reason: str, detail: str = "") -> None:
        """Count one dropped input; log at most once per 2 s per node.

        Throttled here, not with rclpy's ``throttle_duration_sec``: that inspects the
        caller's frame and source on every call (~0.5 ms), which a flood of malformed input
        would pay per message, starving the executor.
        """
        self.rejected[reason] += 1
        now = time.monotonic()
        if now - self._last_reject_log < 2.0:
            return
        self._last_reject_log = now
        self.node.get_logger().warning(
            f"dropped input ({reason}){': ' + detail if detail else ''} "
            f"[{self.rejected[reason]} so far]"
        )

    def problem(self, key: str, level: bytes, message: str) -> None:
        """Report a standing condition (until :meth:`clear`)."""
        self.problems[key] = (level, message)

    def clear(self, key: str) -> None:
        self.problems.pop(key, None)

    @property
    def total_rejected(self) -> int:
        return sum(self.rejected.values())

    def status(self) -> tuple[bytes, str]:
        level, message = self.level, self.message
        problems = list(self.problems.values())  # one C-level copy: other threads write too
        if problems:
            worst = max(lvl for lvl, _ in problems)
            texts = [msg for _, msg in problems]
            if worst >= level:
                level = worst
                message = "; ".join(texts) if message == "ok" else "; ".join([message, *texts])
        return level, message

    def publish(self) -> None:
        level, message = self.status()
        status = DiagnosticStatus(
            level=level,
            name=f"naf_ros: {self.node.get_fully_qualified_name()}",
            message=message,
            hardware_id=self.node.get_name(),
        )
        rejected, values = list(self.rejected.items()), list(self.values.items())
        status.values = [KeyValue(key=f"rejected/{k}", value=str(v)) for k, v in rejected]
        status.values.append(KeyValue(key="rejected/total", value=str(sum(v for _, v in rejected))))
        status.values += [KeyValue(key=k, value=str(v)) for k, v in values]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.node.get_clock().now().to_msg()
        self._pub.publish(msg)


def parse_cpu_list(text: str) -> set[int]:
    """``taskset -c`` notation (``"1"``, ``"0,2"``, ``"0-3"``) -> CPU ids; ``""`` -> none."""
    cpus: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        hi = hi if sep else lo
        if not (lo.isdigit() and hi.isdigit()) or int(hi) < int(lo):
            raise ConfigError(f"cpu_affinity: {text!r} is not a CPU list like '1' or '0,2-3'")
        cpus.update(range(int(lo), int(hi) + 1))
    return cpus


def pin_cpus(node: Node, text: str) -> bool:
    """Keep every thread of this process (and those it starts later) on the CPUs ``text``
    lists; ``""`` leaves placement to the scheduler.

    Why: in lockstep the learner is the graph's bottleneck, and on a small machine the bridge
    and policies, woken every step, otherwise land on its core and slice its updates. A CPU
    that this process may not use is a config error.
    """
    cpus = parse_cpu_list(text)
    if not cpus:
        return False
    allowed = os.sched_getaffinity(0)
    if not cpus <= allowed:
        raise ConfigError(
            f"cpu_affinity: {text!r} names CPUs outside this process's {sorted(allowed)}"
        )
    threads = os.listdir("/proc/self/task")
    for tid in threads:
        with contextlib.suppress(ProcessLookupError):  # a thread that just ended
            os.sched_setaffinity(int(tid), cpus)
    node.get_logger().info(f"pinned {len(threads)} threads to CPUs {sorted(cpus)}")
    return True


def raise_priority(node: Node, priority: int) -> bool:
    """SCHED_FIFO ``priority`` for every thread of this process (DDS receive threads too).

    Why: a realtime state -> command path must not wait behind the learner for a core. Like a
    ros2_control loop it asks, and carries on at normal priority with a warning where the
    system does not permit it; ``priority`` <= 0 leaves scheduling alone. Threads started
    later inherit the policy. Returns whether it took effect.
    """
    if priority <= 0:
        return False
    try:
        param = os.sched_param(priority)
        threads = os.listdir("/proc/self/task")
        for tid in threads:
            os.sched_setscheduler(int(tid), os.SCHED_FIFO, param)
    except (AttributeError, OSError, ValueError) as exc:
        node.get_logger().warning(
            f"realtime_priority {priority}: not permitted here ({type(exc).__name__}: {exc}); "
            "running at normal priority"
        )
        return False
    node.get_logger().info(f"SCHED_FIFO priority {priority} on {len(threads)} threads")
    return True


class LatestOnly:
    """Hands the newest submitted item to ``handle`` in a daemon thread; an item not yet
    handled when a newer one arrives is dropped (a newer weight set supersedes it).

    Why: a realtime node's executor thread must be free for the next joint state, so work
    that takes milliseconds (decoding 130k weights, rebuilding the actor) happens here.
    """

    def __init__(self, name: str, handle: Callable[[Any], None]) -> None:
        self._handle = handle
        self._cond = threading.Condition()
        self._item: Any = None
        self._pending = False
        self._stop = False
        self.handled = 0
        self.superseded = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> None:
        with self._cond:
            self.superseded += self._pending
            self._item, self._pending = item, True
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._pending or self._stop):
                    self._cond.wait()
                if self._stop:
                    return
                item, self._item, self._pending = self._item, None, False
            self._handle(item)
            self.handled += 1

    def close(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join(timeout)


class SideNode:
    """A minimal node in this process (same context and namespace, so the same remaps
    apply) with its own executor thread.

    Why: the executor of a node with lifecycle and parameter services, timers and latched
    inputs rebuilds a large wait set on every wake-up and may be inside another callback
    when a joint state arrives. A subscription that is a control loop's input gets a wait
    set of its own here, like a bare echo node (BENCHMARKS.md, session 3).
    """

    def __init__(self, parent: Node, suffix: str, spin_timeout: float = 0.1) -> None:
        self.node = rclpy.create_node(
            f"{parent.get_name()}_{suffix}",
            namespace=parent.get_namespace(),
            context=parent.context,
            start_parameter_services=False,
        )
        self._executor = SingleThreadedExecutor(context=parent.context)
        self._executor.add_node(self.node)
        self._timeout = spin_timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name=suffix, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self.node.context.ok():
            try:
                self._executor.spin_once(timeout_sec=self._timeout)
            except Exception:
                if self._stop.is_set() or not self.node.context.ok():
                    return  # shutting down
                raise

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self._executor.shutdown()
        self.node.destroy_node()
