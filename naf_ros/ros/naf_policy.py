"""The acting side of NAF on one arm: joint states in, effort commands and transitions out.

A thin adapter around the pure code: :class:`~naf_ros.envs.task.ReacherTask` turns joint
states (mapped by name) and the target into observations and rewards, :class:`NAFAgent`
acts (μ plus the configured exploration noise, or μ alone in evaluation episodes), and an
iLQG controller from ``/naf/ilqg_controller`` takes the episodes Algorithm 2 gives it.

Episodes run in a worker thread as plain sequential code (reset, then T steps of
state -> action -> command -> next state -> transition) while the executor thread only
fills in the latest inputs; that keeps the episode logic readable and the callbacks short.

Safety: nothing is commanded before activation, every command is clipped to the arm's
effort limits, and zero effort is sent on deactivation, at the end of the run and on
SIGINT/SIGTERM (a ForwardCommandController holds the last command forever).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque

import numpy as np
from geometry_msgs.msg import PointStamped
from rclpy.duration import Duration
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import JointState
from std_msgs.msg import Float32MultiArray, Float64, Float64MultiArray
from std_srvs.srv import Trigger

from naf_ros.config import ConfigError
from naf_ros.ros import qos
from naf_ros.ros.codec import (
    CONTROLLER_ILQG,
    CONTROLLER_POLICY,
    CodecError,
    encode_transition,
    unpack_arrays,
)
from naf_ros.ros.common import Diagnostics, declare_config
from naf_ros.ros.sim_bridge import (
    MODES,
    autostart,
    declare,
    episode_steps,
    guarded,
    reacher_env_kwargs,
    run_node,
    stamp_to_ns,
)

TRANSITIONS_TOPIC = "/naf/transitions"
WEIGHTS_TOPIC = "/naf/weights"
CONTROLLER_TOPIC = "/naf/ilqg_controller"
PROGRESS_TOPIC = "/naf/learner_progress"
METRICS = ("episode_return", "tip_distance", "eval_return", "eval_tip_distance")
RESET_MODES = ("service", "homing")


class Stopped(Exception):
    """The worker was asked to stop (deactivation or shutdown)."""


class JointSample:
    """One validated joint state for the configured joints, in configured order."""

    __slots__ = ("q", "qd", "time_ns", "index")

    def __init__(self, q: np.ndarray, qd: np.ndarray, time_ns: int, index: int) -> None:
        self.q, self.qd, self.time_ns, self.index = q, qd, time_ns, index


class NafPolicy(LifecycleNode):
    """Lifecycle node running NAF episodes on one arm (simulated or real)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("naf_policy", **kwargs)
        self.cfg = declare_config(self)
        self.mode = declare(self, "mode", "lockstep")
        if self.mode not in MODES:
            raise ConfigError(f"mode: {self.mode!r} is not one of {', '.join(MODES)}")
        self.reset_mode = declare(self, "reset_mode", "service")
        if self.reset_mode not in RESET_MODES:
            raise ConfigError(f"reset_mode: {self.reset_mode!r} not in {RESET_MODES}")
        if self.reset_mode == "homing" and self.mode == "lockstep":
            raise ConfigError("reset_mode: homing needs mode realtime (a real arm does not wait)")
        self.controller_name = declare(self, "controller_name", "effort_controller")
        self.arm_index = int(declare(self, "arm_index", 0))
        self.wait_for_learner = float(declare(self, "wait_for_learner", 2.0))
        self.max_learner_lag = int(declare(self, "max_learner_lag", 0))
        self.state_timeout = float(declare(self, "state_timeout", 5.0))
        self.reset_timeout = float(declare(self, "reset_timeout", 10.0))
        self.exit_when_done = bool(declare(self, "exit_when_done", True))
        # Transitions published before the learner subscribed are lost for good: at start,
        # wait (up to startup_timeout s) until these nodes subscribe to /naf/transitions.
        self.startup_subscribers = list(declare(self, "startup_subscribers", ["learner"]))
        self.startup_timeout = float(declare(self, "startup_timeout", 30.0))
        self.home_position = list(declare(self, "home_position", [0.0, 0.0, 0.0]))
        self.homing_kp = float(declare(self, "homing_kp", 2.0))
        self.homing_kd = float(declare(self, "homing_kd", 0.3))
        self.homing_duration = float(declare(self, "homing_duration", 2.0))
        # Target when no bridge publishes one (homing / real arm); empty = the env's target.
        self.config_target = list(declare(self, "target", [0.0]))
        start = bool(declare(self, "autostart", True))
        self.diag = Diagnostics(self, float(declare(self, "diagnostics_period", 1.0)))
        self.exit_code = 0
        self.stop_event: threading.Event | None = None
        self.transition_error: str | None = None
        self._cond = threading.Condition()
        self._agent_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._stopping = threading.Event()
        self._latest: JointSample | None = None
        self._latest_recv = 0.0
        self._learner_wait_s = 0.0
        self._js_count = 0
        self._target: np.ndarray | None = None
        self._target_ns = -1
        self._learner_seq = -1
        self._learner_updates = 0.0
        self._learner_stale = False
        self._ilqg = None
        self._ilqg_version = None
        self._weights_version = None
        self._latency_s: deque[float] = deque(maxlen=2000)
        self.seq = 0
        self.episode = 0
        self.env_steps = 0
        self.done = False
        self.configured = False
        if start:
            autostart(self)

    # --- lifecycle ----------------------------------------------------------------------------
    @guarded
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        import torch

        from naf_ros.core.naf import NAFAgent
        from naf_ros.core.noise import make_noise
        from naf_ros.envs.task import ArmModel, ReacherTask

        cfg = self.cfg
        kwargs = reacher_env_kwargs(cfg.env)
        self.arm = ArmModel.from_mjcf(kwargs.get("model_path"))
        self.task = ReacherTask(self.arm, ctrl_cost_weight=kwargs.get("ctrl_cost_weight", 0.02))
        self.joint_names = list(self.arm.joint_names)
        self.n = self.arm.n_joints
        self.limits = np.asarray(self.arm.effort_limits, dtype=float)
        self.control_dt = float(kwargs.get("control_dt", 0.02))
        self.T = episode_steps(cfg.env)
        if len(self.home_position) != self.n:
            raise ConfigError(f"home_position: needs {self.n} values, got {self.home_position}")
        if len(self.config_target) == 2:
            self.default_target = np.asarray(self.config_target, dtype=float)
        elif kwargs.get("fixed_target") is not None:
            self.default_target = np.asarray(kwargs["fixed_target"], dtype=float)
        else:
            from naf_ros.envs.reacher_env import FIXED_TARGET

            self.default_target = np.asarray(FIXED_TARGET, dtype=float)
        torch.set_num_threads(cfg.train.torch_threads)
        seed = cfg.train.seed + self.arm_index
        self.rng = np.random.default_rng(seed)
        self.agent = NAFAgent(self.task.obs_dim, self.task.act_dim, cfg.agent, seed=seed)
        ex = cfg.exploration
        self.noise = make_noise(
            ex.kind, self.task.act_dim, ex.scale, ex.ou_theta, self.rng, ex.precision_ema
        )
        self.cmd_pub = self.create_publisher(
            Float64MultiArray, f"{self.controller_name}/commands", qos.COMMANDS
        )
        self.trans_pub = self.create_publisher(
            Float64MultiArray, TRANSITIONS_TOPIC, qos.TRANSITIONS
        )
        self.metric_pubs = {
            m: self.create_publisher(Float64, f"/naf/metrics/{m}", qos.METRICS) for m in METRICS
        }
        self.create_subscription(
            JointState, "joint_states", self._on_joint_state, qos.JOINT_STATES_SUB
        )
        self.create_subscription(PointStamped, "target", self._on_target, qos.LATCHED)
        self.create_subscription(Float32MultiArray, WEIGHTS_TOPIC, self._on_weights, qos.LATCHED)
        self.create_subscription(
            Float64MultiArray, CONTROLLER_TOPIC, self._on_controller, qos.LATCHED
        )
        self.create_subscription(Float64MultiArray, PROGRESS_TOPIC, self._on_progress, qos.METRICS)
        self.reset_client = self.create_client(Trigger, "sim/reset")
        self.configured = True
        self.get_logger().info(
            f"configured: arm {self.arm_index}, joints {self.joint_names}, mode {self.mode}, "
            f"reset {self.reset_mode}, T={self.T}, commands on "
            f"{self.resolve_topic_name(f'{self.controller_name}/commands')}"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stopping.clear()
        self._worker = threading.Thread(target=self._run, name="episodes", daemon=True)
        self._worker.start()
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_worker()
        self._send_zero()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.safe_stop()
        return TransitionCallbackReturn.SUCCESS

    def safe_stop(self) -> None:
        """Stop acting, then leave zero effort as the last command (and make sure it is out)."""
        self._stop_worker()
        if self.configured:
            self._send_zero()
            self.cmd_pub.wait_for_all_acked(Duration(seconds=1.0))
            for pub in (self.trans_pub, *self.metric_pubs.values()):
                pub.wait_for_all_acked(Duration(seconds=1.0))

    def _stop_worker(self) -> None:
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=10.0)
        self._worker = None

    def _send_zero(self) -> None:
        if self.configured:
            self.cmd_pub.publish(Float64MultiArray(data=[0.0] * self.n))

    # --- inputs (executor thread) -------------------------------------------------------------
    def _on_joint_state(self, msg: JointState) -> None:
        """Map by name; drop (and count) anything that cannot give all configured joints."""
        if not self.configured:
            return
        names = list(msg.name)
        if not names:
            self.diag.reject("joint_state_no_names")
            return
        if len(msg.position) != len(names) or len(msg.velocity) != len(names):
            self.diag.reject(
                "joint_state_length",
                f"{len(names)} names, {len(msg.position)} positions, {len(msg.velocity)} "
                "velocities",
            )
            return
        index = {name: i for i, name in enumerate(names)}
        if len(index) != len(names):
            self.diag.reject("joint_state_duplicate_name")
            return
        missing = [j for j in self.joint_names if j not in index]
        if missing:
            self.diag.reject("joint_state_missing_joint", f"missing {missing}")
            return
        idx = [index[j] for j in self.joint_names]
        q = np.asarray(msg.position, dtype=float)[idx]
        qd = np.asarray(msg.velocity, dtype=float)[idx]
        if not (np.isfinite(q).all() and np.isfinite(qd).all()):
            self.diag.reject("joint_state_non_finite")
            return
        stamp = stamp_to_ns(msg.header.stamp)
        with self._cond:
            self._js_count += 1
            self._latest = JointSample(
                q, qd, stamp if stamp > 0 else time.monotonic_ns(), self._js_count
            )
            self._latest_recv = time.perf_counter()
            self._cond.notify_all()

    def _on_target(self, msg: PointStamped) -> None:
        p = np.array([msg.point.x, msg.point.y], dtype=float)
        if not np.isfinite(p).all():
            self.diag.reject("target_non_finite")
            return
        with self._cond:
            self._target = p
            self._target_ns = stamp_to_ns(msg.header.stamp)
            self._cond.notify_all()

    def _on_weights(self, msg: Float32MultiArray) -> None:
        """New μ/L/V weights from the learner; anything malformed keeps the old weights."""
        if not self.configured:
            return
        try:
            arrays = unpack_arrays(msg)
            version = arrays.pop("version", None)
            with self._agent_lock:
                self.agent.load_weight_arrays(arrays)
        except (CodecError, ValueError) as exc:
            self.diag.reject("weights", str(exc)[:200])
            return
        self._weights_version = None if version is None else float(version)
        self.diag.values["weights_version"] = self._weights_version

    def _on_controller(self, msg: Float64MultiArray) -> None:
        if not self.configured:
            return
        from naf_ros.core.ilqg import LinearGaussianController

        try:
            arrays = unpack_arrays(msg)
            version = arrays.pop("version", None)
            ctrl = LinearGaussianController.from_arrays(arrays)
            if ctrl.nx != self.task.obs_dim or ctrl.nu != self.task.act_dim:
                raise ValueError(
                    f"controller is for nx={ctrl.nx}, nu={ctrl.nu}; need "
                    f"{self.task.obs_dim}, {self.task.act_dim}"
                )
            if ctrl.horizon < self.T:
                raise ValueError(f"controller horizon {ctrl.horizon} < episode length {self.T}")
        except (CodecError, ValueError) as exc:
            self.diag.reject("ilqg_controller", str(exc)[:200])
            return
        with self._cond:
            self._ilqg = ctrl
            self._ilqg_version = None if version is None else float(version)
        self.diag.values["ilqg_version"] = self._ilqg_version

    def _on_progress(self, msg: Float64MultiArray) -> None:
        try:
            f = unpack_arrays(msg, {"producers": None, "last_seq": None})
            producers = np.atleast_1d(f["producers"])
            last = np.atleast_1d(f["last_seq"])
            if producers.shape != last.shape or producers.ndim != 1:
                raise CodecError("producers and last_seq differ in shape")
        except CodecError as exc:
            self.diag.reject("learner_progress", str(exc)[:200])
            return
        hits = np.nonzero(producers == self.arm_index)[0]
        seq = int(last[hits[0]]) if hits.size else -1
        with self._cond:
            self._learner_seq = max(self._learner_seq, seq)
            self._learner_stale = False
            if "updates" in f:
                self._learner_updates = float(f["updates"])
            self._cond.notify_all()

    # --- waiting (worker thread) --------------------------------------------------------------
    def _wait(self, pred, timeout: float) -> bool:
        """Wait on the shared condition until ``pred()``; raises Stopped on shutdown."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred():
                if self._stopping.is_set():
                    raise Stopped
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        if self._stopping.is_set():
            raise Stopped
        return True

    def _next_state(self, prev: JointSample | None, min_ns: int = 0) -> JointSample | None:
        """The state after ``prev``: the next one in lockstep, one control period on in realtime."""
        if prev is None:
            gap = min_ns
        elif self.mode == "lockstep":
            gap = prev.time_ns + 1
        else:
            gap = prev.time_ns + int(0.75 * self.control_dt * 1e9)
        ok = self._wait(
            lambda: (
                self._latest is not None
                and self._latest.time_ns >= gap
                and (prev is None or self._latest.index > prev.index)
            ),
            self.state_timeout,
        )
        if not ok:
            self.diag.values["state_timeouts"] = self.diag.values.get("state_timeouts", 0) + 1
            self.get_logger().warning(
                f"no joint state within {self.state_timeout} s", throttle_duration_sec=5.0
            )
            return None
        return self._latest

    def _wait_for_learner(self) -> None:
        """Lockstep UTD parity: act only once the learner has trained on our last transition."""
        if self.mode != "lockstep" or self.wait_for_learner <= 0 or self.seq == 0:
            return
        need = self.seq - 1 - self.max_learner_lag
        if need < 0 or self._learner_stale:
            return
        t0 = time.perf_counter()
        if not self._wait(lambda: self._learner_seq >= need, self.wait_for_learner):
            with self._cond:
                self._learner_stale = True  # until the learner speaks again
            self.diag.values["learner_wait_timeouts"] = (
                self.diag.values.get("learner_wait_timeouts", 0) + 1
            )
            self.get_logger().info(
                f"learner has not reached seq {need} within {self.wait_for_learner} s; "
                "acting without waiting until it reports progress again",
                throttle_duration_sec=10.0,
            )
        self._learner_wait_s += time.perf_counter() - t0

    # --- episodes (worker thread) -------------------------------------------------------------
    def _wait_for_consumers(self) -> None:
        """Hold the first episode until the learner (and co.) can receive transitions."""
        if self.startup_timeout <= 0 or not self.startup_subscribers:
            return
        wanted = set(self.startup_subscribers)

        def ready() -> bool:
            infos = self.get_subscriptions_info_by_topic(TRANSITIONS_TOPIC)
            present = {i.node_name for i in infos}
            return wanted <= present and self.trans_pub.get_subscription_count() >= len(infos)

        t0 = time.monotonic()
        while not ready():
            if self._stopping.is_set():
                raise Stopped
            if time.monotonic() - t0 > self.startup_timeout:
                self.get_logger().warning(
                    f"no {sorted(wanted)} subscribed to {TRANSITIONS_TOPIC} within "
                    f"{self.startup_timeout} s; starting without"
                )
                return
            time.sleep(0.05)
        self.get_logger().info(f"transition consumers ready after {time.monotonic() - t0:.1f} s")

    def _run(self) -> None:
        cfg = self.cfg.train
        self._learner_wait_s = 0.0
        try:
            self._wait_for_consumers()
            while self.episode < cfg.episodes:
                if cfg.max_steps and self.env_steps >= cfg.max_steps:
                    break
                stats = self._episode(train=True)
                if stats is None:
                    continue
                ep = self.episode
                self._publish_metric("tip_distance", stats[1])
                self._publish_metric("episode_return", stats[0])
                self.get_logger().info(
                    f"episode {ep}: return {stats[0]:.2f}, tip {stats[1]:.3f} m, "
                    f"{stats[2]}, {self.env_steps} steps"
                )
                if ep % cfg.eval_every == 0 or ep == cfg.episodes:
                    evals = [self._episode(train=False) for _ in range(cfg.eval_episodes)]
                    evals = [e for e in evals if e is not None]
                    if evals:
                        ret, tip = np.mean([e[0] for e in evals]), np.mean([e[1] for e in evals])
                        self._publish_metric("eval_tip_distance", tip)
                        self._publish_metric("eval_return", ret)
                        self.get_logger().info(
                            f"eval after episode {ep}: return {ret:.2f}, tip {tip:.3f} m "
                            f"({len(evals)} episodes)"
                        )
            self.done = True
            self._send_zero()
            self.get_logger().info(
                f"done: {self.episode} episodes, {self.env_steps} steps, {self.seq} transitions"
            )
            if self.exit_when_done and self.stop_event is not None:
                self.stop_event.set()
        except Stopped:
            pass
        except Exception as exc:  # noqa: BLE001 - a dead worker must not leave effort applied
            self.get_logger().fatal(f"episode worker failed: {type(exc).__name__}: {exc}")
            self._send_zero()
            self.exit_code = 1
            if self.stop_event is not None:
                self.stop_event.set()

    def _publish_metric(self, name: str, value: float) -> None:
        self.metric_pubs[name].publish(Float64(data=float(value)))

    def _begin_episode(self) -> tuple[JointSample, np.ndarray] | None:
        """Bring the arm to an initial state; returns (state, target) or None on failure."""
        if self.reset_mode == "homing":
            return self._home()
        if not self.reset_client.wait_for_service(timeout_sec=0.0):
            if not self._wait(lambda: self.reset_client.service_is_ready(), self.reset_timeout):
                self.get_logger().warning("sim/reset is not available", throttle_duration_sec=5.0)
                return None
        future = self.reset_client.call_async(Trigger.Request())
        done = threading.Event()
        future.add_done_callback(lambda _f: (done.set(), self._notify()))
        resp = None
        if self._wait(done.is_set, self.reset_timeout) and future.exception() is None:
            resp = future.result()
        if resp is None:
            self.get_logger().warning("sim/reset did not answer", throttle_duration_sec=5.0)
            return None
        if not resp.success:
            self.get_logger().warning(
                f"sim/reset failed: {resp.message}", throttle_duration_sec=5.0
            )
            return None
        stamp = 0
        if resp.message.startswith("stamp_ns="):
            try:
                stamp = int(resp.message.split("=", 1)[1])
            except ValueError:
                stamp = 0
        state = self._next_state(None, min_ns=stamp)
        if state is None:
            return None
        # The bridge stamps the target of a reset with the reset's time: wait for that one.
        if not self._wait(lambda: self._target is not None and self._target_ns >= stamp, 1.0):
            if self._target is None:
                return state, self.default_target
        return state, self._target.copy()

    def _notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _home(self) -> tuple[JointSample, np.ndarray] | None:
        """PD to the home pose for ``homing_duration`` s, then zero effort: a real arm's reset."""
        home = np.asarray(self.home_position, dtype=float)
        state = self._next_state(None)
        t_end = time.monotonic() + self.homing_duration
        while state is not None and time.monotonic() < t_end:
            err = np.arctan2(np.sin(home - state.q), np.cos(home - state.q))
            effort = self.homing_kp * err - self.homing_kd * state.qd
            self._publish_effort(effort)
            state = self._next_state(state)
        self._send_zero()
        if state is None:
            return None
        state = self._next_state(state)
        return None if state is None else (state, self.default_target)

    def _publish_effort(self, effort: np.ndarray) -> np.ndarray:
        effort = np.clip(np.nan_to_num(effort, nan=0.0), -self.limits, self.limits)
        self.cmd_pub.publish(Float64MultiArray(data=effort.tolist()))
        return effort

    def _episode(self, train: bool) -> tuple[float, float, str] | None:
        """One episode; returns (return, final tip distance, controller) or None if aborted."""
        begun = self._begin_episode()
        if begun is None:
            time.sleep(0.1)
            self._wait(lambda: False, 0.0)  # raises Stopped when stopping
            return None
        state, target = begun
        controller = None
        p = self.cfg.model_based.ilqg_probability
        with self._cond:
            ilqg = self._ilqg
        if train and ilqg is not None and p > 0 and self.rng.random() < p:
            controller = ilqg
        self.noise.reset()
        episode = self.episode
        if train:
            self.episode += 1
        obs = self.task.observation(state.q, state.qd, target)
        total = 0.0
        for t in range(self.T):
            self._wait_for_learner()  # evaluation too: it must see the trained-on weights
            recv = self._latest_recv
            if controller is not None:
                action = controller.act(t, obs, self.rng)
            else:
                with self._agent_lock:
                    action = self.agent.act(obs, self.noise if train else None)
            action = np.clip(np.nan_to_num(action, nan=0.0), -1.0, 1.0)
            self._publish_effort(self.task.effort_from_action(action))
            if self.mode == "realtime":
                self._latency_s.append(time.perf_counter() - recv)
            nxt = self._next_state(state)
            if nxt is None:
                self.diag.values["aborted_episodes"] = (
                    self.diag.values.get("aborted_episodes", 0) + 1
                )
                if self.mode == "realtime":
                    self._send_zero()  # the arm went silent: do not leave a torque applied
                return None
            next_obs = self.task.observation(nxt.q, nxt.qd, target)
            reward = float(self.task.reward(obs, action))
            if train:
                self.trans_pub.publish(
                    encode_transition(
                        producer=self.arm_index,
                        seq=self.seq,
                        episode=episode,
                        t=t,
                        obs=obs,
                        action=action,
                        reward=reward,
                        next_obs=next_obs,
                        terminal=False,
                        truncated=t == self.T - 1,
                        controller=CONTROLLER_ILQG if controller is not None else CONTROLLER_POLICY,
                    )
                )
                self.seq += 1
                self.env_steps += 1
            total += reward
            obs, state = next_obs, nxt
        if self.mode == "realtime":
            self._send_zero()  # between episodes a real arm must not keep the last torque
        self._update_diag_values()
        tip = float(self.task.tip_distance(obs))
        return total, tip, "ilqg" if controller is not None else "policy"

    def _update_diag_values(self) -> None:
        v = self.diag.values
        v.update(episodes=self.episode, env_steps=self.env_steps, seq=self.seq)
        v["learner_wait_s"] = round(self._learner_wait_s, 3)
        if self._latency_s:
            lat = np.asarray(self._latency_s) * 1e3
            v["state_to_command_ms_p50"] = round(float(np.percentile(lat, 50)), 3)
            v["state_to_command_ms_p99"] = round(float(np.percentile(lat, 99)), 3)


def main(argv: list[str] | None = None) -> int:
    """Console script ``naf_policy``: run the node until SIGINT/SIGTERM or until it is done."""
    return run_node(NafPolicy, argv)


if __name__ == "__main__":
    sys.exit(main())
