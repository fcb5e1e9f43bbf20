"""Every topic, service and metric name of the graph, defined once.

Nodes, the bag code, the launchers, the benchmarks and the tests import these, so a rename is
one edit. Graph-wide names are absolute (one learner, fitter and explorer serve all arms);
per-arm names are relative, so ``--arms 2`` puts them under ``/arm0/...`` and ``/arm1/...``
and a real arm is a remap away.
"""

from __future__ import annotations

# --- graph-wide (absolute) -------------------------------------------------------------------
TRANSITIONS_TOPIC = "/naf/transitions"
WEIGHTS_TOPIC = "/naf/weights"
MODEL_TOPIC = "/naf/dynamics_model"
CONTROLLER_TOPIC = "/naf/ilqg_controller"
PROGRESS_TOPIC = "/naf/learner_progress"
DIAGNOSTICS_TOPIC = "/diagnostics"
CLOCK_TOPIC = "/clock"
METRICS_PREFIX = "/naf/metrics/"

# --- per arm (relative) ----------------------------------------------------------------------
JOINT_STATES_TOPIC = "joint_states"
TARGET_TOPIC = "target"
TARGET_MARKER_TOPIC = "target_marker"
ESTOP_TOPIC = "estop"
# The arm's URDF (std_msgs/String, latched), as robot_state_publisher publishes it.
ROBOT_DESCRIPTION_TOPIC = "robot_description"
RESET_SERVICE = "sim/reset"
PAUSE_SERVICE = "sim/pause"
DEFAULT_CONTROLLER = "effort_controller"
# How a policy starts an episode: the simulator's reset service, or homing a real arm.
RESET_MODES = ("service", "homing")


def controller_for(interface: str, name: str = "") -> str:
    """The controller's name: ``name`` when given, else ``<interface>_controller`` (the
    ForwardCommandController claiming that command interface, e.g. ``velocity_controller``)."""
    return name or f"{interface}_controller"


def commands_topic(controller: str = DEFAULT_CONTROLLER) -> str:
    """A ForwardCommandController's input, ``<controller>/commands`` (relative)."""
    return f"{controller.strip('/')}/commands"


# --- metrics (std_msgs/Float64 on METRICS_PREFIX + name, for rqt_plot) ----------------------
POLICY_METRICS = ("episode_return", "tip_distance", "eval_return", "eval_tip_distance")
# Counters the policy publishes when something happens (not per episode, so not on the
# launcher's progress lines): training episodes started without the learner caught up.
POLICY_EVENT_METRICS = ("catch_up_timeouts",)
LEARNER_METRICS = (
    "q_loss",
    "updates_per_s",
    "replay_size",
    "imagination_transitions",
    "transitions_lost",
    # achieved updates per real transition (target: I, or I + I·l while imagining)
    "updates_per_transition",
)
FITTER_METRICS = ("model_fits", "model_rmse")
EXPLORER_METRICS = ("ilqg_kl", "ilqg_expected_return")


def metric_topic(name: str) -> str:
    return METRICS_PREFIX + name


def producer_metric_topic(name: str, producer: int) -> str:
    """One producer's (arm's) share of a learner metric: ``<metric>/producer_<id>``."""
    return f"{metric_topic(name)}/producer_{int(producer)}"
