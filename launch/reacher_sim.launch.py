"""NAF on the simulated reacher: K sim_bridge + naf_policy pairs, learner, fitter, explorer.

    ros2 launch naf_ros reacher_sim.launch.py mode:=realtime arms:=2 exploration:=precision
    ros2 launch naf_ros reacher_sim.launch.py record:=experience   # + rosbag2 experience

Every node reads config/reacher_sim.yaml (shared training config under ``/**``, node blocks
under ``/**/<node>``). Per-arm nodes use relative names, so with ``arms:=1`` they live in
``namespace`` (default: none) and with more arms in ``<namespace or arm><i>``. For a real arm
drop the bridge (``sim:=false``) and point ``controller_name`` at the arm's effort
ForwardCommandController: without a bridge nobody serves ``sim/reset``, so the policy then
resets by homing and the graph runs realtime, unless ``reset_mode`` / ``mode`` say otherwise
(``naf-ros launch --skip sim_bridge`` does the same). ``robot_description:=FILE`` latches
that URDF on ``robot_description`` in every arm's namespace and at the root (what
robot_state_publisher does on a real system) and makes every node take the arm from it
(``arm.model: robot_description``; ``naf-ros launch --robot-description FILE``). With ``record`` (or
``bag.record`` in the YAML) the learner records the transitions it trains on and one
``bag_recorder`` per arm records joint states, commands and targets, as rosbag2 (MCAP) under
``train.run_dir``. E-stop: ``ros2 topic pub --once <ns>/estop std_msgs/msg/Bool
"{data: true}"`` latches zero effort in the policy and the bridge; ``{data: false}``
releases it. ``naf-ros launch`` brings up the same graph where ROS launch tooling is not
installed.
"""

import yaml
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription

PACKAGE = "naf_ros"
MODES = ("lockstep", "realtime")
EXPLORATION = ("ou", "precision", "gaussian", "none")
MODELS = ("linear", "nn", "true")
RESET_MODES = ("service", "homing")


def _truthy(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def _yaml_record(params_file: str) -> str:
    """``bag.record`` of the params file's shared block ('' if unset)."""
    try:
        with open(params_file) as fh:
            data = yaml.safe_load(fh) or {}
    except OSError:
        return ""
    shared = (data.get("/**") or {}).get("ros__parameters") or {}
    return str((shared.get("bag") or {}).get("record") or shared.get("bag.record") or "")


def _nodes(context, *args, **kwargs):
    """Expand the arguments into nodes (the arm count needs evaluated arguments)."""
    params_file = LaunchConfiguration("params_file").perform(context)
    mode = LaunchConfiguration("mode").perform(context)
    exploration = LaunchConfiguration("exploration").perform(context)
    model = LaunchConfiguration("model").perform(context)
    namespace = LaunchConfiguration("namespace").perform(context).strip("/")
    controller_name = LaunchConfiguration("controller_name").perform(context)
    arms = int(LaunchConfiguration("arms").perform(context))
    sim = _truthy(LaunchConfiguration("sim").perform(context))
    use_sim_time = _truthy(LaunchConfiguration("use_sim_time").perform(context))
    record = LaunchConfiguration("record").perform(context).strip() or _yaml_record(params_file)
    reset_mode = LaunchConfiguration("reset_mode").perform(context).strip()
    description = LaunchConfiguration("robot_description").perform(context).strip()
    if arms < 1:
        raise ValueError("arms must be >= 1")
    if not sim:  # a real arm: nobody serves sim/reset, and it does not wait for the learner
        reset_mode = reset_mode or "homing"
        mode = mode or "realtime"
    # Empty arguments leave the YAML's values in force.
    shared = {}
    for key, value, allowed in (
        ("mode", mode, MODES),
        ("exploration.kind", exploration, EXPLORATION),
        ("model_based.model", model, MODELS),
        ("reset_mode", reset_mode, RESET_MODES),
    ):
        if value:
            if value not in allowed:
                raise ValueError(f"{key}: {value!r} is not one of {', '.join(allowed)}")
            shared[key] = value
    policy = {"reset_mode": shared.pop("reset_mode")} if reset_mode else {}
    if record:
        shared["bag.record"] = record
    namespaces = [namespace if arms == 1 else f"{namespace or 'arm'}{i}" for i in range(arms)]
    nodes = []
    if description:
        shared["arm.model"] = "robot_description"
        for ns in [*namespaces, *([""] if "" not in namespaces else [])]:
            nodes.append(
                Node(
                    package=PACKAGE,
                    executable="description_publisher",
                    name="description_publisher",
                    namespace=ns,
                    parameters=[params_file, {"file": description}],
                    output="screen",
                )
            )
    for i, ns in enumerate(namespaces):
        arm = {"arm_index": i, "controller_name": controller_name}
        if sim:
            nodes.append(
                Node(
                    package=PACKAGE,
                    executable="sim_bridge",
                    name="sim_bridge",
                    namespace=ns,
                    parameters=[params_file, shared, arm, {"publish_clock": i == 0}],
                    output="screen",
                )
            )
        nodes.append(
            Node(
                package=PACKAGE,
                executable="naf_policy",
                name="naf_policy",
                namespace=ns,
                parameters=[params_file, shared, arm, policy, {"use_sim_time": use_sim_time}],
                output="screen",
            )
        )
        if record:
            nodes.append(
                Node(
                    package=PACKAGE,
                    executable="bag_recorder",
                    name="bag_recorder",
                    namespace=ns,
                    parameters=[params_file, shared, arm],
                    output="screen",
                )
            )
    nodes.append(
        Node(
            package=PACKAGE,
            executable="learner",
            name="learner",
            parameters=[params_file, shared, {"use_sim_time": use_sim_time}],
            output="screen",
        )
    )
    nodes.append(
        Node(
            package=PACKAGE,
            executable="dynamics_fitter",
            name="dynamics_fitter",
            parameters=[params_file, shared],
            output="screen",
        )
    )
    nodes.append(
        Node(
            package=PACKAGE,
            executable="ilqg_explorer",
            name="ilqg_explorer",
            parameters=[params_file, shared],
            output="screen",
        )
    )
    return nodes


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "params_file",
                default_value=PathJoinSubstitution(
                    [FindPackageShare(PACKAGE), "config", "reacher_sim.yaml"]
                ),
                description="YAML with /** and /**/<node> ros__parameters blocks",
            ),
            DeclareLaunchArgument(
                "mode",
                default_value="",
                description="lockstep (one physics period per command) or realtime (like a "
                "robot); empty: the YAML's",
            ),
            DeclareLaunchArgument(
                "exploration",
                default_value="",
                description="exploration.kind: ou, precision, gaussian or none; empty: the YAML's",
            ),
            DeclareLaunchArgument(
                "model",
                default_value="",
                description="model_based.model: linear, nn or true; empty: the YAML's",
            ),
            DeclareLaunchArgument(
                "namespace", default_value="", description="namespace of the arm(s)"
            ),
            DeclareLaunchArgument(
                "controller_name",
                default_value="effort_controller",
                description="effort ForwardCommandController (<name>/commands)",
            ),
            DeclareLaunchArgument(
                "arms", default_value="1", description="number of simulated arms"
            ),
            DeclareLaunchArgument(
                "sim",
                default_value="true",
                description="start the MuJoCo sim bridge(s); false: a real arm (homing resets "
                "and realtime mode unless reset_mode / mode are given)",
            ),
            DeclareLaunchArgument(
                "reset_mode",
                default_value="",
                description="naf_policy.reset_mode: service (sim/reset) or homing (PD to "
                "home_position); empty: homing with sim:=false, else the YAML's",
            ),
            DeclareLaunchArgument(
                "robot_description",
                default_value="",
                description="URDF file to latch on robot_description and take the arm from "
                "(arm.model: robot_description); empty: none",
            ),
            DeclareLaunchArgument(
                "use_sim_time", default_value="false", description="policy/learner on /clock"
            ),
            DeclareLaunchArgument(
                "record",
                default_value="",
                description="record experience as rosbag2 under train.run_dir/<record>; "
                "empty: the YAML's bag.record",
            ),
            OpaqueFunction(function=_nodes),
        ]
    )
