"""The policy node: lifecycle and wiring around the acting code, on one arm.

A thin adapter around the pure code: the configured :class:`~naf_ros.envs.task.ReachTask`
(the arm of the ``env``/``arm`` sections) turns joint states (mapped by name) and the target
into observations and rewards, :class:`NAFAgent`
acts (μ plus the configured exploration noise, or μ alone in evaluation episodes), and an
iLQG controller from ``/naf/ilqg_controller`` takes the episodes Algorithm 2 gives it. This
module holds the lifecycle, the parameters (:mod:`.parameters`), and the wiring: topics in
(target, weights, iLQG controller, learner progress, e-stop) -> the core objects -> topics out
(effort commands, transitions, metrics, ``/diagnostics``). The rest of the node lives by job:

- :mod:`.episodes` — the episode worker thread (reset, T steps, transitions, evaluation,
  safe exploration, lockstep pacing);
- :mod:`.reflex` — joint states in, and the realtime reflex that commands inside the
  joint-state callback;
- :mod:`.transitions` — transitions out through a :class:`~naf_ros.core.delivery.Producer`
  until the learner reports them durable, re-sends, and the drain on shutdown (parameters
  ``resend_timeout``, ``drain_timeout``): no transition lost;
- :mod:`.estop` — ``estop`` (``std_msgs/Bool``, in the arm's namespace): ``true`` sends zero
  effort at once and latches it until ``false`` (the bridge has its own latch);
- :mod:`.homing` — a real arm's reset (``reset_mode: homing``);
- :mod:`.state_file` — with ``persist``, the episode count and safe-exploration status
  across restarts.

Safety: nothing is commanded before activation; every command passes a
:class:`~naf_ros.core.safety.SafetyEnvelope` configured from the ``safety`` section and the
arm model (per-joint effort limits, soft joint-position limits, velocity limit, and in
realtime mode a watchdog on the joint state the command was computed from); zero effort is
sent on deactivation, at the end of the run and on SIGINT/SIGTERM (a ForwardCommandController
holds the last command forever). Transitions record the action the arm actually got.
``safety.safe_exploration`` runs training episodes only with the iLQG controller (a zero-mean
Gaussian one before the first arrives) until an evaluation of the policy reaches
``safety.safe_exploration_return``.
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
from geometry_msgs.msg import PointStamped
from rclpy.duration import Duration
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float32MultiArray, Float64, Float64MultiArray
from std_srvs.srv import Trigger

from naf_ros.config import POSITION, ConfigError
from naf_ros.core.actor import NumpyActor
from naf_ros.core.delivery import Producer
from naf_ros.core.homing import Homing
from naf_ros.core.plausibility import StatePlausibility
from naf_ros.core.safety import SafetyEnvelope, SafetyLimits
from naf_ros.envs.configured import episode_steps, reacher_env_kwargs, reacher_task
from naf_ros.ros import qos
from naf_ros.ros.codec import CodecError, unpack_arrays
from naf_ros.ros.description import arm_description
from naf_ros.ros.diagnostics import Diagnostics
from naf_ros.ros.messages import stamp_to_ns
from naf_ros.ros.names import (
    CONTROLLER_TOPIC,
    ESTOP_TOPIC,
    JOINT_STATES_TOPIC,
    POLICY_EVENT_METRICS,
    POLICY_METRICS,
    PROGRESS_TOPIC,
    RESET_SERVICE,
    TARGET_TOPIC,
    TRANSITIONS_TOPIC,
    WEIGHTS_TOPIC,
    commands_topic,
    controller_for,
    metric_topic,
)
from naf_ros.ros.params import declare_config, declare_params
from naf_ros.ros.policy.episodes import EpisodeWorker
from naf_ros.ros.policy.estop import Estop
from naf_ros.ros.policy.homing import HomingReset
from naf_ros.ros.policy.parameters import POLICY_PARAMS
from naf_ros.ros.policy.reflex import JointSample, ReflexPath
from naf_ros.ros.policy.state_file import PolicyStateFile
from naf_ros.ros.policy.transitions import TransitionsOut
from naf_ros.ros.realtime import LatestOnly, SideNode, raise_priority
from naf_ros.ros.runtime import autostart, exit_process, guarded, run_node

NODE_NAME = "naf_policy"
RESEND_PERIOD_S = 0.2


class NafPolicy(EpisodeWorker, ReflexPath, LifecycleNode):
    """Lifecycle node running NAF episodes on one arm (simulated or real).

    The two mixins are the episode loop and its joint-state input (module docstring); each
    one's ``_init_*`` sets up the state it owns, and they share what this class sets up:
    ``params``, ``cfg``, ``diag``, the task/agent/envelope from configuration, the condition
    ``_cond`` (inputs and the worker's waits) and the locks below. The smaller jobs are
    objects the node owns and hands what they need: ``transitions`` (out, with their
    acknowledgements), ``estop``, ``homing`` and ``state_file``.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.cfg = declare_config(self)
        self.params = p = declare_params(self, POLICY_PARAMS)
        if p.reset_mode == "homing" and p.mode == "lockstep":
            raise ConfigError("reset_mode: homing needs mode realtime (a real arm does not wait)")
        self.drain_timeout = p.drain_timeout  # run_node's shutdown reads it here
        self.diag = Diagnostics(self, p.diagnostics_period)
        if p.mode == "realtime":
            # A joint state wakes its executor thread while another thread may hold the GIL;
            # Python's default 5 ms switch interval would then be the latency floor.
            sys.setswitchinterval(p.gil_switch_interval_ms / 1000.0)
            self.diag.values["gil_switch_interval_ms"] = round(sys.getswitchinterval() * 1e3, 4)
            raise_priority(self, p.realtime_priority)
        self.exit_code = 0
        self.stop_event: threading.Event | None = None
        self.transition_error: str | None = None
        self._cond = threading.Condition()
        self._agent_lock = threading.Lock()
        self._cmd_lock = threading.Lock()  # a command and the e-stop's zero never interleave
        self._weights_loader: LatestOnly | None = None
        self._state_io: SideNode | None = None
        self._target: np.ndarray | None = None
        self._target_ns = -1
        self._ilqg = None
        self._ilqg_version = None
        self._weights_version = None
        self.producer = Producer(
            p.outbox_capacity, p.resend_timeout, p.resend_batch, self.get_logger().warning
        )
        self.transitions = TransitionsOut(
            self.producer, p.arm_index, p.startup_subscribers,
            self.get_subscriptions_info_by_topic, self.diag, self.get_logger(),
            p.renew_writer_after,
        )  # fmt: skip
        self.envelope: SafetyEnvelope | None = None
        self.estop: Estop | None = None
        self.state_file: PolicyStateFile | None = None
        self.homing: HomingReset | None = None
        self.configured = False
        self._init_worker()
        self._init_reflex()
        if p.autostart:
            autostart(self)

    # --- lifecycle ----------------------------------------------------------------------------
    @guarded
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        import torch

        from naf_ros.core.agents import make_agent
        from naf_ros.core.noise import make_noise
        from naf_ros.envs.command import ArmCommand

        cfg, p = self.cfg, self.params
        # The arm the config names (a file, robot_description, or the env's own), as the sim
        # bridge and the learner build it.
        description = arm_description(self, cfg)
        kwargs = reacher_env_kwargs(cfg, description)
        self.task = reacher_task(cfg, description)
        self.arm = self.task.arm
        self.get_logger().info(self.arm.describe())
        self.joint_names = list(self.arm.joint_names)
        self.n = self.arm.n_joints
        self.control_dt = float(kwargs.get("control_dt", 0.02))
        self.T = episode_steps(cfg.env)
        try:  # what an action commands: the arm's command interface
            self.command = ArmCommand(
                self.arm, cfg.arm.command_interface, self.control_dt,
                cfg.arm.gravity_compensation, cfg.safety.velocity,
            )  # fmt: skip
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        self.controller_name = controller_for(cfg.arm.command_interface, p.controller_name)
        home = np.asarray(p.home_position, dtype=float)
        if len(home) != self.n:
            if p.reset_mode == "homing":
                raise ConfigError(f"home_position: needs {self.n} values, got {p.home_position}")
            home = np.zeros(self.n)  # unused without homing; the default is the reacher's
        homing_rule = Homing(
            home, p.homing_kp, p.homing_kd,
            p.homing_tolerance, p.homing_velocity_tolerance, p.homing_timeout,
            self.command.interface, self.command.velocity_limits, self.control_dt,
        )  # fmt: skip
        self.default_target = self._default_target(kwargs.get("fixed_target"))
        try:
            self.envelope = SafetyEnvelope(
                self._safety_limits(),
                self.command.interface,
                self.control_dt,
                hold_effort=self.command.hold_effort,
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        try:
            self.plausibility = StatePlausibility.from_arm(
                self.arm,
                position_slack=p.plausible_position_slack,
                max_velocity=p.plausible_velocity,
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        torch.set_num_threads(cfg.train.torch_threads)
        seed = cfg.train.seed + p.arm_index
        self.rng = np.random.default_rng(seed)
        self.agent = make_agent(cfg.agent, self.task.obs_dim, self.task.act_dim, seed=seed)
        self.actor = NumpyActor(self.agent.net)  # acting path; rebuilt on every new weight set
        ex = cfg.exploration
        self.noise = make_noise(
            ex.kind, self.task.act_dim, ex.scale, ex.ou_theta, self.rng, ex.precision_ema
        )
        self.cmd_pub = self.create_publisher(
            Float64MultiArray, commands_topic(self.controller_name), qos.COMMANDS
        )
        self.transitions.attach(
            lambda: self.create_publisher(Float64MultiArray, TRANSITIONS_TOPIC, qos.TRANSITIONS),
            self.destroy_publisher,
        )
        self.homing = HomingReset(
            homing_rule, self.cmd_pub, self.envelope, self.diag, self.get_logger(),
            self._publish_effort, self._send_zero, self._wait, self._next_state,
            self.command.hold_effort,
        )  # fmt: skip
        self.estop = Estop(
            self.envelope, self._cmd_lock, self._publish_zero, self.diag, self.get_logger(),
            self._notify,
        )  # fmt: skip
        self.metric_pubs = {
            m: self.create_publisher(Float64, metric_topic(m), qos.METRICS)
            for m in (*POLICY_METRICS, *POLICY_EVENT_METRICS)
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
        if p.persist:
            self.state_file = PolicyStateFile(
                cfg.train.run_dir, p.arm_index, self.diag, self.get_logger()
            )
            saved = self.state_file.load()
            if saved is not None:
                self.episode, self.env_steps = saved.episode, saved.env_steps
                self._safe_passed = saved.safe_passed
                self.get_logger().info(
                    f"resumed at episode {self.episode} ({self.env_steps} steps) from "
                    f"{self.state_file.loaded_from}"
                )
        self.diag.values.update(self.envelope.diagnostics())
        if p.mode == "realtime" and self._weights_loader is None:
            self._weights_loader = LatestOnly("weights", self._load_weights)
        self.configured = True
        self.get_logger().info(
            f"configured: arm {p.arm_index}, joints {self.joint_names}, mode {p.mode}, "
            f"reset {p.reset_mode}, T={self.T}, commands on "
            f"{self.resolve_topic_name(commands_topic(self.controller_name))} "
            f"({self.command.interface})"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._start_worker()
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
            for pub in (self.transitions.pub, *self.metric_pubs.values()):
                pub.wait_for_all_acked(Duration(seconds=1.0))

    def _default_target(self, env_target) -> np.ndarray:
        """The target when no bridge publishes one: the ``target`` parameter (one value per
        task coordinate), else the environment's fixed target, else the reacher's (planar)
        or the tip at the zero pose clipped into the limits (an arm: set ``target``)."""
        dims = self.task.dims
        if len(self.params.target) == dims:
            return np.asarray(self.params.target, dtype=float)
        if env_target is not None:
            return np.asarray(env_target, dtype=float)
        if dims == 2:
            from naf_ros.envs import FIXED_TARGET

            return np.asarray(FIXED_TARGET, dtype=float)
        q0 = np.clip(np.zeros(self.n), self.arm.joint_lower, self.arm.joint_upper)
        return np.asarray(self.task.tip(q0), dtype=float)

    def _send_zero(self) -> None:
        if self.configured:
            with self._cmd_lock:
                self._publish_zero()

    def _publish_zero(self) -> None:
        """The interface's rest command onto the wire (zero effort or velocity; position:
        hold where the arm last was, or nothing before any joint state - the controller then
        keeps its own last target); the caller holds ``_cmd_lock``."""
        latest = self._latest
        rest = self.envelope.rest(None if latest is None else latest.q)
        if self.command.interface == POSITION and latest is None and not self.envelope.holding:
            return
        self.cmd_pub.publish(Float64MultiArray(data=rest.tolist()))

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
                velocity=self.command.envelope_velocity(s.velocity).tolist(),
                restoring_gain=s.restoring_gain,
                # Lockstep: the sim waits for us, a state is never stale; realtime: it is.
                command_timeout=s.command_timeout if self.params.mode == "realtime" else None,
                **overrides,
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None

    def _on_estop(self, msg: Bool) -> None:
        """``true``: zero effort now and latch it; ``false``: release (see module docstring)."""
        if self.configured:
            self.estop.on_message(msg.data)

    def _on_resend_timer(self) -> None:
        if self.configured:
            self.transitions.resend()

    def drained(self) -> bool:
        """True once the learner has trained on everything sent (or there is no learner)."""
        return not self.configured or self.transitions.drained()

    # --- inputs (executor thread) -------------------------------------------------------------
    def _on_target(self, msg: PointStamped) -> None:
        p = np.array([msg.point.x, msg.point.y, msg.point.z], dtype=float)[: self.task.dims]
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
        """Acknowledgements from the learner (:meth:`TransitionsOut.on_progress`)."""
        if self.transitions.on_progress(msg):
            self._notify()  # lockstep pacing waits for the acknowledgement

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

    def _publish_metric(self, name: str, value: float) -> None:
        self.metric_pubs[name].publish(Float64(data=float(value)))

    def _update_diag_values(self) -> None:
        v = self.diag.values
        v.update(episodes=self.episode, env_steps=self.env_steps, seq=self.producer.seq)
        v["learner_wait_s"] = round(self._learner_wait_s, 3)
        if self.params.catch_up_ratio > 0:
            v["catch_up_wait_s"] = round(self._catch_up_wait_s, 3)
            v["catch_up_timeouts"] = self._catch_up_timeouts
        v.update(self.transitions.diagnostics())
        if self.cfg.safety.safe_exploration:
            v["safe_exploration"] = "active" if self.safe_exploration_active else "passed"
        self._latency_values(v)


def main(argv: list[str] | None = None) -> None:
    """Console script ``naf_policy``: run the node until SIGINT/SIGTERM or until it is done."""
    exit_process(run_node(NafPolicy, argv))


if __name__ == "__main__":
    main()
