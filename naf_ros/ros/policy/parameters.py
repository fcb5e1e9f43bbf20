"""Every parameter of the policy node, declared once: name, default, type, check, meaning.

The config schema (``env.*``, ``agent.*``, ...) comes on top through
:func:`~naf_ros.ros.params.declare_config`; ``cpu_affinity`` is declared by
:func:`~naf_ros.ros.runtime.run_node` for every node. Names and defaults are what
``config/reacher_sim.yaml`` and the launch file set.
"""

from __future__ import annotations

from naf_ros.ros.names import RESET_MODES
from naf_ros.ros.params import Check, Param, at_least, in_range, one_of, positive

MODES = ("lockstep", "realtime")

POLICY_PARAMS: tuple[Param, ...] = (
    Param("mode", "lockstep", str, one_of(*MODES),
          "lockstep: one command per simulator step, paced by the learner; realtime: a "
          "wall-clock arm that does not wait"),
    Param("gil_switch_interval_ms", 0.5, float, in_range(0.0, 5.0),
          "realtime: Python's thread switch interval; the default 5 ms would be the latency "
          "floor of a joint state waking the executor while another thread holds the GIL"),
    Param("reset_mode", "service", str, one_of(*RESET_MODES),
          "service: reset through sim/reset; homing: PD to home_position (a real arm)"),
    Param("controller_name", "", str, None,
          "the ForwardCommandController of arm.command_interface; commands go to "
          "<controller_name>/commands ('': <command_interface>_controller)"),
    Param("arm_index", 0, int, at_least(0),
          "producer id of this arm's transitions (one per arm in a graph)"),
    Param("wait_for_learner", 2.0, float, None,
          "lockstep: wait up to this long (s) for the learner to train on our last transition "
          "before acting (<= 0: never wait)"),
    Param("max_learner_lag", 2, int, at_least(0),
          "lockstep: transitions the learner may be behind before the policy waits"),
    Param("state_timeout", 5.0, float, positive(),
          "s without the expected joint state before the episode is aborted"),
    Param("plausible_position_slack", 0.5, float, at_least(0.0),
          "a joint state further than this (rad) outside a joint's hard range is refused like "
          "a NaN one (a broken driver)"),
    Param("plausible_velocity", 100.0, float, positive(),
          "a joint state faster than this (rad/s) is refused like a NaN one"),
    Param("reset_timeout", 10.0, float, positive(), "s to wait for sim/reset to answer"),
    Param("exit_when_done", True, bool, None, "end the process after the last episode"),
    Param("catch_up_ratio", 0.0, float, Check(lambda v: 0.0 <= v <= 1.0, "in [0.0, 1.0]"),
          "realtime: hold each training episode's start (never the control loop) until the "
          "learner reports this fraction of its planned updates per transition for our "
          "transitions over the run (0: off; see naf_ros.core.catch_up)"),
    Param("catch_up_timeout", 60.0, float, positive(),
          "realtime: s to hold an episode for catch_up_ratio at most; then it starts anyway "
          "(logged, counted on /naf/metrics/catch_up_timeouts)"),
    Param("startup_subscribers", ["learner"], list, None,
          "at start, wait (up to startup_timeout s) until these nodes subscribe to the "
          "transitions: the first ones then need no re-send, and in lockstep the first steps "
          "are paced by the learner"),
    Param("startup_timeout", 30.0, float, None,
          "s to wait for startup_subscribers (<= 0: do not wait)"),
    Param("home_position", [0.0, 0.0, 0.0], list, None,
          "homing: joint angles (rad) of the home pose, one per joint"),
    Param("homing_kp", 2.0, float, at_least(0.0),
          "homing: position gain (effort: N m / rad; velocity and position: 1/s, the speed "
          "towards home per rad of error, capped at the velocity limit)"),
    Param("homing_kd", 0.3, float, at_least(0.0),
          "homing: PD velocity gain (N m s / rad; effort only)"),
    Param("homing_tolerance", 0.05, float, positive(),
          "homing ends when every joint is this close (rad) to home_position ..."),
    Param("homing_velocity_tolerance", 0.05, float, positive(),
          "... and slower than this (rad/s)"),
    Param("homing_timeout", 10.0, float, positive(),
          "s after which a homing that did not arrive fails (error on the log and "
          "/diagnostics, zero effort, then homing is retried)"),
    Param("target", [0.0], list, None,
          "target (x, y), or (x, y, z) for an arm, when no bridge publishes one (homing / "
          "real arm); any other length: the env's target"),
    Param("persist", False, bool, None,
          "keep the episode count and safe-exploration status in the run folder"),
    Param("outbox_capacity", 100_000, int, at_least(1),
          "published transitions kept until the learner reports them durable"),
    Param("resend_timeout", 5.0, float, positive(),
          "s a live learner may acknowledge nothing before it is re-sent what it lacks"),
    Param("resend_batch", 500, int, at_least(1), "transitions re-sent per 0.2 s"),
    Param("renew_writer_after", 3, int, at_least(0),
          "re-sends in a row a live learner does not acknowledge before the transitions "
          "writer is replaced, so DDS pairs it afresh (0 = never)"),
    Param("drain_timeout", 5.0, float, at_least(0.0),
          "on shutdown, s to wait for the learner to train on everything sent"),
    Param("safe_initial_action_var", 0.01, float, positive(),
          "safe exploration: action variance of the zero-mean controller used before the "
          "first iLQG controller arrives"),
    Param("autostart", True, bool, None, "configure and activate at start"),
    Param("diagnostics_period", 1.0, float, positive(), "s between /diagnostics messages"),
    Param("realtime_priority", 0, int, None,
          "realtime: SCHED_FIFO priority for this process (<= 0: normal scheduling)"),
)  # fmt: skip
