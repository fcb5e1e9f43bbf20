"""The acting side of NAF on one arm: joint states in, effort commands and transitions out.

A thin adapter around the pure code: :class:`~naf_ros.envs.task.ReacherTask` turns joint
states (mapped by name) and the target into observations and rewards, :class:`NAFAgent`
acts (μ plus the configured exploration noise, or μ alone in evaluation episodes), and an
iLQG controller from ``/naf/ilqg_controller`` takes the episodes Algorithm 2 gives it.

Episodes run in a worker thread as plain sequential code (reset, then T steps of
state -> action -> command -> next state -> transition) while the executor thread only
fills in the latest inputs; that keeps the episode logic readable and the callbacks short.
One exception, for latency: in realtime mode the worker arms a :class:`Reflex` for the next
step and the joint-state callback itself computes and publishes that command the moment the
state arrives (no thread hand-off, no transition bookkeeping in the way); the worker then
does the bookkeeping for the step while the arm already has its command.

Safety: nothing is commanded before activation; every command passes a
:class:`~naf_ros.core.safety.SafetyEnvelope` configured from the ``safety`` section and the
arm model (per-joint effort limits, soft joint-position limits, velocity limit, and in
realtime mode a watchdog on the joint state the command was computed from); zero effort is
sent on deactivation, at the end of the run and on SIGINT/SIGTERM (a ForwardCommandController
holds the last command forever). Transitions record the action the arm actually got.
E-stop: ``estop`` (``std_msgs/Bool``, in the arm's namespace); ``true`` sends zero effort at
once and latches it: the episode is aborted and no episode starts until ``false`` is
published on the same topic (the release; the bridge has its own latch and needs it too).
``safety.safe_exploration`` runs training episodes only with the iLQG controller (a zero-mean
Gaussian one before the first arrives) until an evaluation of the policy reaches
``safety.safe_exploration_return``.

No transition lost: every published transition stays in an
:class:`~naf_ros.ros.delivery.Outbox` until the learner reports it durable
(``durable_seq`` on ``/naf/learner_progress``); a learner with a new ``learner_id`` (a
restart) gets what it lacks re-sent, as does one that has acknowledged nothing for
``resend_timeout`` s; on shutdown the node waits up to ``drain_timeout`` s for the learner to
have trained on everything sent. With ``persist`` the episode count (and safe-exploration
status) survive restarts in ``<train.run_dir>/naf_policy_<arm_index>_state.pt``; transition
episode numbers always increase across restarts, which is how the learner tells a restarted
producer (new sequence from 0) from a re-sent one.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from geometry_msgs.msg import PointStamped
from rclpy.duration import Duration
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.subscription import MessageInfo
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float32MultiArray, Float64, Float64MultiArray
from std_srvs.srv import Trigger

from naf_ros.config import ConfigError
from naf_ros.core.actor import NumpyActor
from naf_ros.core.safety import (
    ESTOP,
    WATCHDOG,
    SafetyEnvelope,
    SafetyLimits,
    StatePlausibility,
)
from naf_ros.envs.configured import episode_steps, reacher_env_kwargs
from naf_ros.ros import qos
from naf_ros.ros.codec import (
    CONTROLLER_ILQG,
    CONTROLLER_POLICY,
    CodecError,
    encode_transition,
    unpack_arrays,
)
from naf_ros.ros.delivery import Outbox
from naf_ros.ros.diagnostics import Diagnostics
from naf_ros.ros.messages import stamp_to_ns
from naf_ros.ros.names import (
    CONTROLLER_TOPIC,
    ESTOP_TOPIC,
    JOINT_STATES_TOPIC,
    POLICY_METRICS,
    PROGRESS_TOPIC,
    RESET_SERVICE,
    TARGET_TOPIC,
    TRANSITIONS_TOPIC,
    WEIGHTS_TOPIC,
    commands_topic,
    metric_topic,
)
from naf_ros.ros.params import declare, declare_config
from naf_ros.ros.persist import CheckpointFile
from naf_ros.ros.realtime import LatestOnly, SideNode, raise_priority
from naf_ros.ros.runtime import autostart, guarded, run_node

MODES = ("lockstep", "realtime")
RESET_MODES = ("service", "homing")
STATE_KIND = "naf_ros-policy-state"
RESEND_PERIOD_S = 0.2


class Stopped(Exception):
    """The worker was asked to stop (deactivation or shutdown)."""


class JointSample:
    """One validated joint state for the configured joints, in configured order."""

    __slots__ = ("q", "qd", "time_ns", "index", "recv")

    def __init__(
        self, q: np.ndarray, qd: np.ndarray, time_ns: int, index: int, recv: float = 0.0
    ) -> None:
        self.q, self.qd, self.time_ns, self.index = q, qd, time_ns, index
        self.recv = recv  # monotonic arrival time (the realtime watchdog's input)


class Reflex:
    """One realtime step armed by the worker and taken by the joint-state callback.

    ``act`` False only records the state (the episode's last next-state). The callback
    fills ``state``, ``obs``, ``action``, ``reasons`` (or ``error``) and sets ``done``.
    """

    __slots__ = (
        "gap_ns", "after_index", "t", "target", "controller", "train", "act",
        "taken", "done", "state", "obs", "action", "reasons", "error",
    )  # fmt: skip

    def __init__(
        self, prev: JointSample, gap_ns: int, t: int, target: np.ndarray, controller,
        train: bool, act: bool,
    ) -> None:  # fmt: skip
        self.gap_ns, self.after_index, self.t = gap_ns, prev.index, t
        self.target, self.controller, self.train, self.act = target, controller, train, act
        self.taken = self.done = False
        self.state: JointSample | None = None
        self.obs: np.ndarray | None = None
        self.action: np.ndarray | None = None
        self.reasons: tuple[str, ...] = ()
        self.error: BaseException | None = None

    def wants(self, sample: JointSample) -> bool:
        return sample.time_ns >= self.gap_ns and sample.index > self.after_index


class NafPolicy(LifecycleNode):
    """Lifecycle node running NAF episodes on one arm (simulated or real)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("naf_policy", **kwargs)
        self.cfg = declare_config(self)
        self.mode = declare(self, "mode", "lockstep")
        if self.mode not in MODES:
            raise ConfigError(f"mode: {self.mode!r} is not one of {', '.join(MODES)}")
        switch_ms = float(declare(self, "gil_switch_interval_ms", 0.5))
        if not 0.0 < switch_ms <= 5.0:
            raise ConfigError(f"gil_switch_interval_ms: {switch_ms} is not in (0, 5]")
        self.reset_mode = declare(self, "reset_mode", "service")
        if self.reset_mode not in RESET_MODES:
            raise ConfigError(f"reset_mode: {self.reset_mode!r} not in {RESET_MODES}")
        if self.reset_mode == "homing" and self.mode == "lockstep":
            raise ConfigError("reset_mode: homing needs mode realtime (a real arm does not wait)")
        self.controller_name = declare(self, "controller_name", "effort_controller")
        self.arm_index = int(declare(self, "arm_index", 0))
        self.wait_for_learner = float(declare(self, "wait_for_learner", 2.0))
        self.max_learner_lag = int(declare(self, "max_learner_lag", 2))
        self.state_timeout = float(declare(self, "state_timeout", 5.0))
        # Finite but absurd joint states (a broken driver) are refused like NaN ones: a
        # position this far (rad) outside the joint's hard range, or a speed above this.
        self.plausible_position_slack = float(declare(self, "plausible_position_slack", 0.5))
        self.plausible_velocity = float(declare(self, "plausible_velocity", 100.0))
        self.reset_timeout = float(declare(self, "reset_timeout", 10.0))
        self.exit_when_done = bool(declare(self, "exit_when_done", True))
        # At start, wait (up to startup_timeout s) until these nodes subscribe to
        # /naf/transitions: the first transitions then need no re-send, and in lockstep the
        # first steps are paced by the learner. (Without it they reach the learner later,
        # from the outbox, once it reports progress.)
        self.startup_subscribers = list(declare(self, "startup_subscribers", ["learner"]))
        self.startup_timeout = float(declare(self, "startup_timeout", 30.0))
        self.home_position = list(declare(self, "home_position", [0.0, 0.0, 0.0]))
        self.homing_kp = float(declare(self, "homing_kp", 2.0))
        self.homing_kd = float(declare(self, "homing_kd", 0.3))
        self.homing_duration = float(declare(self, "homing_duration", 2.0))
        # Target when no bridge publishes one (homing / real arm); empty = the env's target.
        self.config_target = list(declare(self, "target", [0.0]))
        self.persist = bool(declare(self, "persist", False))
        self.outbox_capacity = int(declare(self, "outbox_capacity", 100_000))
        self.resend_timeout = float(declare(self, "resend_timeout", 5.0))
        self.resend_batch = int(declare(self, "resend_batch", 500))
        self.drain_timeout = float(declare(self, "drain_timeout", 5.0))
        self.safe_initial_action_var = float(declare(self, "safe_initial_action_var", 0.01))
        if self.outbox_capacity < 1 or self.resend_batch < 1:
            raise ConfigError("outbox_capacity and resend_batch must be integers >= 1")
        if self.safe_initial_action_var <= 0:
            raise ConfigError("safe_initial_action_var: must be > 0")
        start = bool(declare(self, "autostart", True))
        self.diag = Diagnostics(self, float(declare(self, "diagnostics_period", 1.0)))
        if self.mode == "realtime":
            # A joint state wakes its executor thread while another thread may hold the GIL;
            # Python's default 5 ms switch interval would then be the latency floor.
            sys.setswitchinterval(switch_ms / 1000.0)
            self.diag.values["gil_switch_interval_ms"] = round(sys.getswitchinterval() * 1e3, 4)
            raise_priority(self, int(declare(self, "realtime_priority", 0)))
        self.exit_code = 0
        self.stop_event: threading.Event | None = None
        self.transition_error: str | None = None
        self._cond = threading.Condition()
        self._agent_lock = threading.Lock()
        self._weights_loader: LatestOnly | None = None
        self._state_io: SideNode | None = None
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
        self._transit_s: deque[float] = deque(maxlen=2000)
        self._dispatch_s: deque[float] = deque(maxlen=2000)
        self._latency_cpu_s: deque[float] = deque(maxlen=2000)  # CPU share of the above
        self._reflex: Reflex | None = None  # realtime: the step the next joint state takes
        self._cmd_lock = threading.Lock()  # a command and the e-stop's zero never interleave
        self._out_lock = threading.Lock()  # outbox + transition publisher
        self.outbox = Outbox(self.outbox_capacity)
        self._layout = None  # every transition message shares one layout
        self._learner_id: float | None = None
        self._learner_durable = -1
        self._resend_from: int | None = None
        self._last_ack_change = time.monotonic()
        self._last_progress = 0.0  # monotonic time of the last progress message
        self._last_resend = 0.0
        self._first_episode: int | None = None  # episode field of our first transition
        self._episode_offset = 0
        self._progress_episode_hint: int | None = None
        self._safe_passed = False
        self._safe_controller = None
        self.envelope: SafetyEnvelope | None = None
        self.state_file: CheckpointFile | None = None
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
        self.envelope = SafetyEnvelope(self._safety_limits())
        try:
            self.plausibility = StatePlausibility.from_arm(
                self.arm,
                position_slack=self.plausible_position_slack,
                max_velocity=self.plausible_velocity,
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        torch.set_num_threads(cfg.train.torch_threads)
        seed = cfg.train.seed + self.arm_index
        self.rng = np.random.default_rng(seed)
        self.agent = NAFAgent(self.task.obs_dim, self.task.act_dim, cfg.agent, seed=seed)
        self.actor = NumpyActor(self.agent.net)  # acting path; rebuilt on every new weight set
        ex = cfg.exploration
        self.noise = make_noise(
            ex.kind, self.task.act_dim, ex.scale, ex.ou_theta, self.rng, ex.precision_ema
        )
        self.cmd_pub = self.create_publisher(
            Float64MultiArray, commands_topic(self.controller_name), qos.COMMANDS
        )
        self.trans_pub = self.create_publisher(
            Float64MultiArray, TRANSITIONS_TOPIC, qos.TRANSITIONS
        )
        self.metric_pubs = {
            m: self.create_publisher(Float64, metric_topic(m), qos.METRICS) for m in POLICY_METRICS
        }
        # The control loop's input on a node and thread of its own (SideNode's docstring).
        if self._state_io is None:
            self._state_io = SideNode(self, "state_io")
            self._state_io.node.create_subscription(
                JointState, JOINT_STATES_TOPIC, self._on_joint_state, qos.JOINT_STATES_SUB
            )
        self.create_subscription(PointStamped, TARGET_TOPIC, self._on_target, qos.LATCHED)
        self.create_subscription(Float32MultiArray, WEIGHTS_TOPIC, self._on_weights, qos.LATCHED)
        self.create_subscription(
            Float64MultiArray, CONTROLLER_TOPIC, self._on_controller, qos.LATCHED
        )
        # Latched, so a (re)started policy hears where the learner is at once.
        self.create_subscription(Float64MultiArray, PROGRESS_TOPIC, self._on_progress, qos.LATCHED)
        self.create_subscription(Bool, ESTOP_TOPIC, self._on_estop, qos.ESTOP)
        self.reset_client = self.create_client(Trigger, RESET_SERVICE)
        self.create_timer(RESEND_PERIOD_S, self._on_resend_timer)
        if self.persist:
            self.state_file = CheckpointFile(
                Path(cfg.train.run_dir) / f"naf_policy_{self.arm_index}_state.pt",
                self.get_logger().error,
            )
            self.state_file.load(self._apply_state)
            if self.state_file.loaded_from is not None:
                self.get_logger().info(
                    f"resumed at episode {self.episode} ({self.env_steps} steps) from "
                    f"{self.state_file.loaded_from}"
                )
        self.diag.values.update(self.envelope.diagnostics())
        if self.mode == "realtime" and self._weights_loader is None:
            self._weights_loader = LatestOnly("weights", self._load_weights)
        self.configured = True
        self.get_logger().info(
            f"configured: arm {self.arm_index}, joints {self.joint_names}, mode {self.mode}, "
            f"reset {self.reset_mode}, T={self.T}, commands on "
            f"{self.resolve_topic_name(commands_topic(self.controller_name))}"
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
        if self._weights_loader is not None:
            self._weights_loader.close()
            self._weights_loader = None
        if self._state_io is not None:
            self._state_io.close()
            self._state_io = None
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
            with self._cmd_lock:
                self.cmd_pub.publish(Float64MultiArray(data=[0.0] * self.n))

    # --- safety -------------------------------------------------------------------------------
    def _safety_limits(self) -> SafetyLimits:
        """The ``safety`` section on top of the arm model; one-line ConfigError if invalid."""
        s = self.cfg.safety
        overrides = {
            key: getattr(s, key)
            for key in ("effort", "soft_lower", "soft_upper")
            if getattr(s, key) is not None
        }
        try:
            return SafetyLimits.from_arm(
                self.arm,
                position_margin=s.position_margin,
                velocity=float("inf") if s.velocity is None else s.velocity,
                restoring_gain=s.restoring_gain,
                # Lockstep: the sim waits for us, a state is never stale; realtime: it is.
                command_timeout=s.command_timeout if self.mode == "realtime" else None,
                **overrides,
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def _on_estop(self, msg: Bool) -> None:
        """``true``: zero effort now and latch it; ``false``: release (see module docstring)."""
        if not self.configured:
            return
        if msg.data:
            with self._cmd_lock:
                engaged = not self.envelope.estopped
                self.envelope.engage_estop("estop topic")
                self.cmd_pub.publish(Float64MultiArray(data=[0.0] * self.n))
            if engaged:
                self.get_logger().warning("e-stop: zero effort; waiting for estop=false")
            self.diag.problem("estop", DiagnosticStatus.WARN, "e-stop engaged")
        elif self.envelope.estopped:
            with self._cmd_lock:
                self.envelope.release_estop()
            self.diag.clear("estop")
            self.get_logger().info("e-stop released")
        self.diag.values.update(self.envelope.diagnostics())
        self._notify()

    def _wait_while_estopped(self) -> None:
        """Start nothing while the e-stop is latched (raises Stopped on shutdown)."""
        while self.envelope.estopped:
            self._wait(lambda: not self.envelope.estopped, 1.0)

    # --- persistence --------------------------------------------------------------------------
    def _apply_state(self, p: dict) -> None:
        if p.get("kind") != STATE_KIND or int(p["arm_index"]) != self.arm_index:
            raise ValueError(f"not this arm's policy state ({p.get('kind')!r})")
        episode, steps, passed = int(p["episode"]), int(p["env_steps"]), bool(p["safe_passed"])
        self.episode, self.env_steps, self._safe_passed = episode, steps, passed

    def _save_state(self) -> None:
        if self.state_file is None:
            return
        ok = self.state_file.save(
            {
                "kind": STATE_KIND,
                "arm_index": self.arm_index,
                "episode": self.episode,
                "env_steps": self.env_steps,
                "safe_passed": self._safe_passed,
            }
        )
        if ok:
            self.diag.clear("state")
        else:
            self.diag.problem(
                "state", DiagnosticStatus.WARN, f"state not saved: {self.state_file.last_error}"
            )
            self.get_logger().warning(
                f"state not saved: {self.state_file.last_error}", throttle_duration_sec=30.0
            )
        self.diag.values.update(self.state_file.diagnostics("state"))

    # --- outbox -------------------------------------------------------------------------------
    def _publish_transition(self, msg: Float64MultiArray, seq: int) -> None:
        with self._out_lock:
            if self._layout is None:
                self._layout = msg.layout
            if not self.outbox.add(seq, np.asarray(msg.data, dtype=np.float64)):
                self.diag.problem(
                    "outbox",
                    DiagnosticStatus.WARN,
                    f"outbox full: {self.outbox.overflow} unacknowledged transitions dropped",
                )
                self.get_logger().warning(
                    f"outbox full ({self.outbox.capacity}): dropped the oldest unacknowledged "
                    f"transition [{self.outbox.overflow} so far]; is the learner checkpointing?",
                    throttle_duration_sec=10.0,
                )
            self.trans_pub.publish(msg)

    def _learner_subscribed(self) -> bool:
        """A learner subscribes to /naf/transitions and our publisher has matched it."""
        infos = self.get_subscriptions_info_by_topic(TRANSITIONS_TOPIC)
        wanted = set(self.startup_subscribers) or {i.node_name for i in infos}
        present = {i.node_name for i in infos}
        return bool(wanted & present) and self.trans_pub.get_subscription_count() >= len(infos)

    def _on_resend_timer(self) -> None:
        """Re-send what a (re)started or silent learner lacks, in bounded batches."""
        if not self.configured:
            return
        now = time.monotonic()
        with self._cond:
            ack, lid, start = self._learner_seq, self._learner_id, self._resend_from
        with self._out_lock:
            # Fallback: the learner is alive (heartbeats arrive) but acknowledges nothing
            # new of what we sent; a silent learner is dead, and its successor's new id
            # triggers the re-send instead.
            alive = now - self._last_progress < self.resend_timeout
            if start is None and lid is not None and alive:
                oldest = self.outbox.oldest_after(ack)
                quiet = now - max(self._last_ack_change, self._last_resend)
                if oldest is not None and now - oldest.sent > self.resend_timeout:
                    if quiet > self.resend_timeout:
                        start = ack + 1
                        self.get_logger().warning(
                            f"learner acknowledged nothing after seq {ack} for "
                            f"{quiet:.1f} s; re-sending"
                        )
            if start is None or self._layout is None or not self._learner_subscribed():
                return
            batch = self.outbox.after(start - 1, self.resend_batch)
            for entry in batch:
                msg = Float64MultiArray(layout=self._layout, data=entry.data)
                self.trans_pub.publish(msg)
                entry.sent = now
            self.outbox.resent += len(batch)
            self._last_resend = now
            more = batch[-1].seq + 1 if len(batch) == self.resend_batch else None
        with self._cond:
            if self._resend_from == start or self._resend_from is None:
                self._resend_from = more
        self.diag.values["outbox_resent"] = self.outbox.resent

    def drained(self) -> bool:
        """True once the learner has trained on everything sent (or there is no learner)."""
        if not self.configured or self.seq == 0:
            return True
        with self._out_lock:
            unacked = self.outbox.oldest_after(self._learner_seq) is not None
        if not unacked:
            return True
        infos = self.get_subscriptions_info_by_topic(TRANSITIONS_TOPIC)
        return not (set(self.startup_subscribers) & {i.node_name for i in infos})

    # --- inputs (executor thread) -------------------------------------------------------------
    def _on_joint_state(self, msg: JointState, info: MessageInfo) -> None:
        """Map by name; drop (and count) anything that cannot give all configured joints."""
        recv = time.perf_counter()  # in-node latency counts the validation below too
        if not self.configured:
            return
        # Where a state's time goes before we see it: DDS transit (publisher's write to
        # reception in this process) and dispatch (reception to this callback).
        received = info.get("received_timestamp") or 0
        source = info.get("source_timestamp") or 0
        if received and source:
            self._transit_s.append((received - source) * 1e-9)
            self._dispatch_s.append((time.time_ns() - received) * 1e-9)
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
        implausible = self.plausibility.check(q, qd)
        if implausible is not None:
            self.diag.reject("joint_state_implausible", implausible)
            return
        stamp = stamp_to_ns(msg.header.stamp)
        reflex = None
        with self._cond:
            self._js_count += 1
            sample = JointSample(
                q, qd, stamp if stamp > 0 else time.monotonic_ns(), self._js_count, time.monotonic()
            )
            self._latest = sample
            self._latest_recv = recv
            if self._reflex is not None and self._reflex.wants(sample):
                reflex, self._reflex = self._reflex, None
                reflex.taken = True
            else:  # when taken, the worker is woken once the command is out, not before:
                self._cond.notify_all()  # a waking worker would compete for the GIL
        if reflex is not None:
            self._take_reflex(reflex, sample, recv)

    def _take_reflex(self, reflex: Reflex, sample: JointSample, recv: float) -> None:
        """Act on ``sample`` right here in the callback; the worker finishes the step."""
        cpu = time.thread_time()
        try:
            reflex.state = sample
            reflex.obs = self.task.observation(sample.q, sample.qd, reflex.target)
            if reflex.act:
                reflex.action, reflex.reasons = self._act_and_command(
                    sample, reflex.obs, reflex.controller, reflex.t, reflex.train
                )
                self._latency_s.append(time.perf_counter() - recv)
                self._latency_cpu_s.append(time.thread_time() - cpu)
        except Exception as exc:  # noqa: BLE001 - handed to the worker, which stops safely
            reflex.error = exc
        with self._cond:
            reflex.done = True
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
        """New μ/L/V weights from the learner; anything malformed keeps the old weights.

        Realtime: loaded by a helper thread, so the joint-state callback never waits behind
        milliseconds of decoding; the actor is swapped in one assignment."""
        if not self.configured:
            return
        if self._weights_loader is not None:
            self._weights_loader.submit(msg)
            return
        self._load_weights(msg)

    def _load_weights(self, msg: Float32MultiArray) -> None:
        try:
            arrays = unpack_arrays(msg)
            version = arrays.pop("version", None)
            with self._agent_lock:  # one loader at a time; acting never takes this lock
                self.agent.load_weight_arrays(arrays)
                actor = NumpyActor(self.agent.net)
            self.actor = actor  # a finished snapshot, swapped in one assignment
        except (CodecError, ValueError) as exc:
            self.diag.reject("weights", str(exc)[:200])
            return
        self._weights_version = None if version is None else float(version)
        self.diag.values["weights_version"] = self._weights_version

    def _on_controller(self, msg: Float64MultiArray) -> None:
        if not self.configured:
            return
        from naf_ros.core.lin_gauss_policy import LinearGaussianController

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
        """Acknowledgements: trained-on (lockstep pacing) and durable (outbox) per producer.

        An entry for our producer from before this process started (its ``last_episode``
        is older than our first transition's) acknowledges nothing of ours. A new
        ``learner_id`` is a restarted learner: it may be behind, and gets re-sent what it
        lacks.
        """
        try:
            f = unpack_arrays(msg, {"producers": None, "last_seq": None})
            producers = np.atleast_1d(f["producers"])
            columns = {"last_seq": np.atleast_1d(f["last_seq"])}
            for key in ("durable_seq", "last_episode"):
                if key in f:
                    columns[key] = np.atleast_1d(f[key])
            if producers.ndim != 1 or any(c.shape != producers.shape for c in columns.values()):
                raise CodecError("producers and per-producer columns differ in shape")
            lid = f.get("learner_id")
            lid = None if lid is None or lid.shape != () else float(lid)
            if "updates" in f and f["updates"].shape != ():
                raise CodecError(f"updates: shape {f['updates'].shape}, expected a scalar")
        except CodecError as exc:
            self.diag.reject("learner_progress", str(exc)[:200])
            return
        hits = np.nonzero(producers == self.arm_index)[0]
        ack = durable = -1
        if hits.size:
            i = hits[0]
            stale = False
            if "last_episode" in columns:
                episode = int(columns["last_episode"][i])
                self._progress_episode_hint = max(self._progress_episode_hint or -1, episode)
                stale = self._first_episode is None or episode < self._first_episode
            if not stale:
                ack = int(columns["last_seq"][i])
                durable = int(columns.get("durable_seq", columns["last_seq"])[i])
        now = time.monotonic()
        self._last_progress = now
        with self._cond:
            if lid is not None and lid != self._learner_id:
                restarted = self._learner_id is not None
                self._learner_id = lid
                self._learner_seq = ack  # a restarted learner may be behind the old one
                self._last_ack_change = now
                if self.seq and self.seq - 1 > ack:
                    self._resend_from = ack + 1
                    self.get_logger().warning(
                        f"learner {'restarted' if restarted else 'appeared'} at seq {ack}: "
                        f"re-sending {self.seq - 1 - ack} transitions"
                    )
                self._learner_stale = False
            elif ack > self._learner_seq:
                self._learner_seq = ack
                self._last_ack_change = now
                self._learner_stale = False
            elif lid is None:  # a learner without heartbeats: any message is a sign of life
                self._learner_stale = False
            if "updates" in f:
                self._learner_updates = float(f["updates"])
            self._cond.notify_all()
        if durable >= 0:
            with self._out_lock:
                self.outbox.ack(durable)
                self._learner_durable = durable

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

    def _next_state(
        self, prev: JointSample | None, min_ns: int = 0, after_index: int = -1
    ) -> JointSample | None:
        """The state after ``prev``: the next one in lockstep, one control period on in realtime.

        Without ``prev``: the first state received after ``after_index`` stamped at or after
        ``min_ns`` (a restarted arm's clock starts again from zero).
        """
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
                and self._latest.index > (after_index if prev is None else prev.index)
            ),
            self.state_timeout,
        )
        if not ok:
            self._count_state_timeout()
            return None
        return self._latest

    def _count_state_timeout(self) -> None:
        self.diag.values["state_timeouts"] = self.diag.values.get("state_timeouts", 0) + 1
        self.get_logger().warning(
            f"no joint state within {self.state_timeout} s", throttle_duration_sec=5.0
        )

    def _wait_for_learner(self) -> None:
        """Lockstep UTD parity: act only once the learner has trained on our last transition."""
        if self.mode != "lockstep" or self.wait_for_learner <= 0 or self.seq == 0:
            return
        need = self.seq - 1 - self.max_learner_lag
        if need < 0 or self._learner_stale:
            return
        t0 = time.perf_counter()
        # A learner that is catching up (a backlog after its restart) keeps being waited
        # for; one that acknowledged nothing new for wait_for_learner s is not.
        while not self._wait(lambda: self._learner_seq >= need, self.wait_for_learner):
            if time.monotonic() - self._last_ack_change < self.wait_for_learner:
                continue
            with self._cond:
                self._learner_stale = True  # until the learner acknowledges something new
            self.diag.values["learner_wait_timeouts"] = (
                self.diag.values.get("learner_wait_timeouts", 0) + 1
            )
            self.get_logger().info(
                f"learner has not reached seq {need} within {self.wait_for_learner} s; "
                "acting without waiting until it reports progress again",
                throttle_duration_sec=10.0,
            )
            break
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

    def _start_numbering(self) -> None:
        """Our transitions' episode numbers must be newer than any the learner has from us.

        With ``persist`` the saved count already is; otherwise (or if the run folder is
        unwritable) the learner's latched progress says where a previous run of this arm
        got to, and episode numbers on the wire continue after it.
        """
        if self.persist:  # give the learner's latched progress a moment to arrive
            self._wait(lambda: self._last_progress > 0, 2.0)
        hint = self._progress_episode_hint
        if hint is not None and hint >= self.episode:
            self._episode_offset = hint + 1 - self.episode
            self.get_logger().info(
                f"learner has episodes up to {hint} from arm {self.arm_index}; numbering "
                f"transitions from episode {hint + 1}"
            )

    def _run(self) -> None:
        cfg = self.cfg.train
        self._learner_wait_s = 0.0
        try:
            self._wait_for_consumers()
            self._start_numbering()
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
                        self._check_safe_exploration(float(ret))
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

    # --- safe exploration ---------------------------------------------------------------------
    @property
    def safe_exploration_active(self) -> bool:
        return self.cfg.safety.safe_exploration and not self._safe_passed

    def _check_safe_exploration(self, eval_return: float) -> None:
        if not self.safe_exploration_active:
            return
        target = self.cfg.safety.safe_exploration_return
        if eval_return >= target:
            self._safe_passed = True
            self.get_logger().info(
                f"safe exploration done: evaluation return {eval_return:.2f} >= {target}; "
                "the policy explores from now on"
            )
            self._save_state()
        self.diag.values["safe_exploration"] = (
            "active" if self.safe_exploration_active else "passed"
        )

    def _choose_controller(self, train: bool):
        """The iLQG controller for this episode, or None for the NAF policy."""
        if not train:
            return None
        with self._cond:
            ilqg = self._ilqg
        if self.safe_exploration_active:
            if ilqg is not None:
                return ilqg
            if self._safe_controller is None:  # before the first iLQG step: N(0, var I)
                from naf_ros.core.lin_gauss_policy import LinearGaussianController

                self._safe_controller = LinearGaussianController.initial(
                    self.T, self.task.obs_dim, self.task.act_dim, self.safe_initial_action_var
                )
            return self._safe_controller
        p = self.cfg.model_based.ilqg_probability
        if ilqg is not None and p > 0 and self.rng.random() < p:
            return ilqg
        return None

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
        with self._cond:
            before = self._js_count  # the reset's state is one received after this
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
        state = self._next_state(None, min_ns=stamp, after_index=before)
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
            self._publish_effort(effort, state)
            state = self._next_state(state)
        self._send_zero()
        if state is None:
            return None
        state = self._next_state(state)
        return None if state is None else (state, self.default_target)

    def _publish_effort(
        self, effort: np.ndarray, state: JointSample
    ) -> tuple[np.ndarray, tuple[str, ...]]:
        """Through the safety envelope onto the wire; returns (sent effort, envelope reasons)."""
        with self._cmd_lock:
            now = time.monotonic()
            # Realtime watchdog: the command is as fresh as the joint state it came from.
            self.envelope.command_received(state.recv if state.recv > 0 else now)
            safe, reasons = self.envelope.filter(effort, state.q, state.qd, now)
            self.cmd_pub.publish(Float64MultiArray(data=safe.tolist()))
        if reasons:
            self.diag.values.update(self.envelope.diagnostics())
        return safe, reasons

    def _abort(self, why: str) -> None:
        key = f"aborted_episodes/{why}"
        self.diag.values[key] = self.diag.values.get(key, 0) + 1
        self.diag.values["aborted_episodes"] = self.diag.values.get("aborted_episodes", 0) + 1
        if self.mode == "realtime":
            self._send_zero()  # do not leave a torque applied

    def _episode(self, train: bool) -> tuple[float, float, str] | None:
        """One episode; returns (return, final tip distance, controller) or None if aborted."""
        self._wait_while_estopped()
        begun = self._begin_episode()
        if begun is None:
            time.sleep(0.1)
            self._wait(lambda: False, 0.0)  # raises Stopped when stopping
            return None
        state, target = begun
        controller = self._choose_controller(train)
        self.noise.reset()
        episode = self.episode + self._episode_offset
        if train:
            self.episode += 1
            self._save_state()  # before any transition: a restart continues after this one
        obs = self.task.observation(state.q, state.qd, target)
        total = 0.0
        self._wait_for_learner()  # evaluation too: it must see the trained-on weights
        if self.mode == "realtime":
            # The reset's state has aged through the bookkeeping above; like every later
            # step, the first one acts inside the callback of a fresh state.
            with self._cond:
                newest = self._latest if self._latest is not None else state
            first = self._next_reflex(newest, target, controller, 0, train, act=True)
            if first is None:
                self._abort("no_state")
                return None
            state, obs, action, reasons = first
        else:
            action, reasons = self._act_and_command(state, obs, controller, 0, train)
        for t in range(self.T):
            if ESTOP in reasons or WATCHDOG in reasons:
                self._abort("estop" if ESTOP in reasons else "watchdog")
                return None
            last = t == self.T - 1
            if self.mode == "realtime":  # the callback acts on the next state itself
                step = self._next_reflex(state, target, controller, t + 1, train, act=not last)
                if step is None:
                    self._abort("no_state")
                    return None
                nxt, next_obs, next_action, next_reasons = step
            else:
                nxt = self._next_state(state)
                if nxt is None:
                    self._abort("no_state")
                    return None
                next_obs = self.task.observation(nxt.q, nxt.qd, target)
            if self.envelope.estopped:  # engaged during the step: this one is not clean
                self._abort("estop")
                return None
            reward = float(self.task.reward(obs, action))
            if train:
                if self._first_episode is None:
                    self._first_episode = episode
                self._publish_transition(
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
                        truncated=last,
                        controller=CONTROLLER_ILQG if controller is not None else CONTROLLER_POLICY,
                    ),
                    self.seq,
                )
                self.seq += 1
                self.env_steps += 1
            total += reward
            if not last and self.mode != "realtime":
                self._wait_for_learner()
                next_action, next_reasons = self._act_and_command(
                    nxt, next_obs, controller, t + 1, train
                )
            obs, state = next_obs, nxt
            if not last:
                action, reasons = next_action, next_reasons
        if self.mode == "realtime":
            self._send_zero()  # between episodes a real arm must not keep the last torque
        self._update_diag_values()
        tip = float(self.task.tip_distance(obs))
        return total, tip, "ilqg" if controller is not None else "policy"

    def _act_and_command(
        self, state: JointSample, obs: np.ndarray, controller, t: int, train: bool
    ) -> tuple[np.ndarray, tuple[str, ...]]:
        """Policy (or iLQG) action through the envelope onto the wire.

        Returns the action to learn from (what the arm actually got when limited) and the
        envelope's reasons.
        """
        if controller is not None:
            action = controller.act(t, obs, self.rng)
        else:
            action = self.actor.act(obs, self.noise if train else None)
        action = np.clip(np.nan_to_num(action, nan=0.0), -1.0, 1.0)
        sent, reasons = self._publish_effort(self.task.effort_from_action(action), state)
        if reasons and not (ESTOP in reasons or WATCHDOG in reasons):
            action = self.task.action_from_effort(sent)
        return action, reasons

    def _next_reflex(
        self, prev: JointSample, target: np.ndarray, controller, t: int, train: bool, act: bool
    ) -> tuple[JointSample, np.ndarray, np.ndarray | None, tuple[str, ...]] | None:
        """Realtime: arm a :class:`Reflex` for the state after ``prev`` and wait for it.

        Returns (state, obs, action, reasons), or None when no state came in time. A state
        that arrived before the reflex was armed is taken here, in the worker.
        """
        reflex = Reflex(
            prev, prev.time_ns + int(0.75 * self.control_dt * 1e9), t, target, controller, train,
            act,
        )  # fmt: skip
        with self._cond:
            late = self._latest if self._latest is not None and reflex.wants(self._latest) else None
            if late is None:
                self._reflex = reflex
            else:
                reflex.taken = True
        if late is not None:
            self._take_reflex(reflex, late, self._latest_recv)
        try:
            ok = self._wait(lambda: reflex.done, self.state_timeout)
            if not ok:
                with self._cond:
                    if not reflex.taken:
                        self._reflex = None
                if reflex.taken:  # taken just now: it finishes within one callback
                    ok = self._wait(lambda: reflex.done, self.state_timeout)
        finally:
            with self._cond:
                if self._reflex is reflex:
                    self._reflex = None
        if not ok:
            self._count_state_timeout()
            return None
        if reflex.error is not None:
            raise reflex.error
        return reflex.state, reflex.obs, reflex.action, reflex.reasons

    def _update_diag_values(self) -> None:
        v = self.diag.values
        v.update(episodes=self.episode, env_steps=self.env_steps, seq=self.seq)
        v["learner_wait_s"] = round(self._learner_wait_s, 3)
        with self._out_lock:
            v.update(
                outbox_size=len(self.outbox),
                outbox_overflow=self.outbox.overflow,
                outbox_resent=self.outbox.resent,
                acked_seq=self._learner_seq,
                durable_seq=self._learner_durable,
            )
        if self.cfg.safety.safe_exploration:
            v["safe_exploration"] = "active" if self.safe_exploration_active else "passed"
        for key, samples in (
            ("state_transit", self._transit_s),
            ("state_dispatch", self._dispatch_s),
        ):
            if samples:
                ms = np.asarray(list(samples)) * 1e3  # list(): one atomic copy
                v[f"{key}_ms_p50"] = round(float(np.percentile(ms, 50)), 3)
                v[f"{key}_ms_p99"] = round(float(np.percentile(ms, 99)), 3)
        if self._latency_s:
            lat = np.asarray(list(self._latency_s)) * 1e3
            v["state_to_command_ms_p50"] = round(float(np.percentile(lat, 50)), 3)
            v["state_to_command_ms_p99"] = round(float(np.percentile(lat, 99)), 3)
        if self._latency_cpu_s:
            cpu = np.asarray(list(self._latency_cpu_s)) * 1e3
            v["state_to_command_cpu_ms_p50"] = round(float(np.percentile(cpu, 50)), 3)
            v["state_to_command_cpu_ms_p99"] = round(float(np.percentile(cpu, 99)), 3)


def main(argv: list[str] | None = None) -> int:
    """Console script ``naf_policy``: run the node until SIGINT/SIGTERM or until it is done."""
    return run_node(NafPolicy, argv)


if __name__ == "__main__":
    sys.exit(main())
