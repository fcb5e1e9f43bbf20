"""The ``arm`` config section: a user's arm (a real URDF) reaches the in-process trainer's
environment and the nodes' task through one function; every bad arm is one line naming it.

Real arms: example-robot-data's UR5 and Panda, checked against Pinocchio's kinematics of the
same file. Bad input goes through ``naf-ros train`` (exit 2, one line, nothing written).
"""

from __future__ import annotations

import numpy as np
import pytest
from support.robots import robots_dir

from naf_ros.cli import main as cli_main
from naf_ros.config import ConfigError, config_from_dict
from naf_ros.core.envs import make_env
from naf_ros.envs import ARM7_FIXED_ID, ARM7_FIXED_TARGET, ARM7_ID, REACHER_FIXED_ID
from naf_ros.envs.configured import make_kwargs, make_reacher, reacher_env_kwargs, reacher_task

pin = pytest.importorskip("pinocchio")

# (URDF under robots/, tip link, joints) as test_arm_models chooses them
ARMS = {
    "ur5": ("ur_description/urdf/ur5_robot.urdf", "tool0", 6),
    "panda": ("panda_description/urdf/panda.urdf", "panda_hand_tcp", 7),
}


def urdf(name: str) -> str:
    return str(robots_dir() / ARMS[name][0])


def config(env_id: str = ARM7_ID, **arm):
    return config_from_dict({"env": {"id": env_id}, "arm": arm})


def pinocchio_tip(xml: str, joint_names, tip: str, q: np.ndarray) -> np.ndarray:
    """The independent computation: Pinocchio's tip position for our joint positions."""
    model = pin.buildModelFromXML(xml)
    data = model.createData()
    x = pin.neutral(model)
    for name, value in zip(joint_names, q):
        joint = model.joints[model.getJointId(name)]
        if joint.nq == 2:  # continuous: cos/sin
            x[joint.idx_q : joint.idx_q + 2] = np.cos(value), np.sin(value)
        else:
            x[joint.idx_q] = value
    pin.forwardKinematics(model, data, x)
    pin.updateFramePlacements(model, data)
    return data.oMf[model.getFrameId(tip)].translation.copy()


@pytest.mark.parametrize("name", sorted(ARMS))
def test_the_trainers_env_and_the_nodes_task_use_the_configured_urdf(name):
    path, tip, n = ARMS[name]
    cfg = config(ARM7_FIXED_ID, model=urdf(name), tip=tip)
    env = make_env(cfg.env, cfg.arm)  # what the in-process trainer makes
    task = env.unwrapped.task
    assert task.arm.kind == "urdf" and task.arm.n_joints == n and task.arm.tip == tip
    # The shipped arm's limits and workspace are not inherited; its fixed target is.
    assert not task.arm.notes and env.unwrapped.target_box is None
    assert np.allclose(env.unwrapped.fixed_target, ARM7_FIXED_TARGET)
    obs, _ = env.reset(seed=0)
    assert obs.shape == env.observation_space.shape == (task.obs_dim,)
    q = task.arm.sample_joint_positions(np.random.default_rng(0), 5)
    xml = (robots_dir() / path).read_text()
    for qi in q:
        ref = pinocchio_tip(xml, task.arm.joint_names, tip, qi)
        assert np.allclose(task.arm.tip_position(qi), ref, atol=1e-10)
    # The nodes' task, from the file or from the robot_description string: the same arm.
    for node_task in (
        reacher_task(cfg),
        reacher_task(config(ARM7_FIXED_ID, model="robot_description", tip=tip), xml),
    ):
        assert node_task.arm.joint_names == task.arm.joint_names
        assert node_task.obs_dim == task.obs_dim
        assert np.allclose(node_task.arm.tip_position(q), task.arm.tip_position(q))
    env.close()


def test_the_sim_bridges_env_is_the_configured_reacher():
    ur5 = make_reacher(config(model=urdf("ur5"), tip="tool0"))
    assert type(ur5).__name__ == "ArmReachEnv" and ur5.task.arm.n_joints == 6
    planar = make_reacher(config(REACHER_FIXED_ID))
    assert type(planar).__name__ == "Reacher3DOFEnv" and planar.task.dims == 2


def test_without_an_arm_section_nothing_changes():
    cfg = config_from_dict({"env": {"id": ARM7_ID, "kwargs": {"control_dt": 0.01}}})
    assert make_kwargs(cfg) == {"control_dt": 0.01}
    assert "target_box" in reacher_env_kwargs(cfg)  # the registry's, untouched
    assert make_kwargs(config_from_dict({"env": {"id": "Pendulum-v1"}})) == {}


@pytest.mark.parametrize(
    "arm, key",
    [
        ({"model": "arm.urdf"}, "model"),
        ({"tip": "tool0"}, "tip"),
        ({"tip_offset": [0, 0, 0.1]}, "tip_offset"),
        ({"base": "base_link"}, "base"),
        ({"joints": ["j1"]}, "joints"),
        ({"gravity_compensation": False}, "gravity_compensation"),
    ],
)
def test_the_planar_reacher_refuses_every_arm_key(arm, key):
    what = "has no such option" if key == "gravity_compensation" else "has its own arm"
    message = f"arm.{key}: the planar 3-DOF reacher {what}; use an arm environment id"
    with pytest.raises(ConfigError, match="^" + message.replace(".", r"\.")):
        make_kwargs(config(REACHER_FIXED_ID, **arm))
    with pytest.raises(ConfigError, match=f"^arm.{key}: "):
        reacher_task(config(REACHER_FIXED_ID, **arm))


def test_the_command_interface_reaches_both_reachers():
    for env_id in (ARM7_ID, REACHER_FIXED_ID):
        cfg = config(env_id, command_interface="position")
        assert make_kwargs(cfg) == {"command_interface": "position"}
    assert make_kwargs(config(command_interface="effort")) == {}  # the default: left out


def test_other_arm_section_errors():
    with pytest.raises(ConfigError, match="is not a naf_ros arm environment"):
        make_kwargs(config("Pendulum-v1", model="arm.urdf"))
    with pytest.raises(ConfigError, match="is a ROS topic; the in-process trainer needs a file"):
        make_kwargs(config(model="robot_description"))
    both = config_from_dict({"env": {"id": ARM7_ID, "kwargs": {"tip": "a"}}, "arm": {"tip": "b"}})
    with pytest.raises(ConfigError, match="arm.tip: also set in env.kwargs"):
        make_kwargs(both)


# --- naf-ros train: one line, exit 2, nothing written ------------------------------------------
def branching_urdf() -> str:
    """A tree, not a serial chain: two end links and no tip named."""
    inertial = (
        '<inertial><mass value="1"/><inertia ixx="0.01" iyy="0.01" izz="0.01" ixy="0" '
        'ixz="0" iyz="0"/></inertial>'
    )
    links = "".join(f'<link name="{n}">{inertial}</link>' for n in ("base", "a", "b", "c"))
    joints = "".join(
        f'<joint name="{j}" type="revolute"><parent link="{p}"/><child link="{c}"/>'
        '<origin xyz="0 0 0.3"/><axis xyz="0 0 1"/>'
        '<limit lower="-1" upper="1" effort="5" velocity="2"/></joint>'
        for j, p, c in (("j1", "base", "a"), ("j2", "a", "b"), ("j3", "a", "c"))
    )
    return f'<robot name="tree">{links}{joints}</robot>'


@pytest.mark.parametrize(
    "case, message",
    [
        ("no_tip", "tip 'no_such_link' is neither a site nor a body/link"),
        ("branching", "no tip given and no single end link"),
        ("joint", "joint 'no_such_joint' is not in the description"),
        ("off_chain", "joint 'wrist_1_joint' is not on the chain"),
        ("not_xml", "not XML"),
        ("unknown_key", "arm.nope"),
        ("topic", "'robot_description' is a ROS topic"),
        ("planar", "arm.model: the planar 3-DOF reacher has its own arm"),
    ],
)
def test_naf_ros_train_bad_arm_is_one_line_and_writes_nothing(case, message, tmp_path, capsys):
    ur5 = urdf("ur5")
    (tmp_path / "tree.urdf").write_text(branching_urdf())
    (tmp_path / "broken.urdf").write_text(open(ur5).read()[:500])
    sets = {
        "no_tip": [f"arm.model={ur5}", "arm.tip=no_such_link"],
        "branching": [f"arm.model={tmp_path / 'tree.urdf'}"],
        "joint": [f"arm.model={ur5}", "arm.tip=tool0", "arm.joints=[elbow_joint, no_such_joint]"],
        "off_chain": [
            f"arm.model={ur5}",
            "arm.tip=forearm_link",
            "arm.joints=[elbow_joint, wrist_1_joint]",
        ],
        "not_xml": [f"arm.model={tmp_path / 'broken.urdf'}"],
        "unknown_key": ["arm.nope=1"],
        "topic": ["arm.model=robot_description"],
        "planar": [f"env.id={REACHER_FIXED_ID}", f"arm.model={ur5}"],
    }[case]
    run_dir = tmp_path / "run"
    argv = ["train", "--run-dir", str(run_dir), "-s", f"env.id={ARM7_ID}"]
    for item in sets:
        argv += ["-s", item]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert err.startswith("naf-ros: config error: arm"), err
    assert not run_dir.exists()


# --- in-process nodes (own context, no peers): the bridge's targets, the description wait ----
@pytest.fixture
def ros_context():
    import rclpy
    from rclpy.context import Context
    from support.ros import allocate_domain

    lease, ctx = allocate_domain(), Context()
    rclpy.init(context=ctx, domain_id=lease.domain_id)
    yield ctx
    rclpy.shutdown(context=ctx)
    lease.release()


def make_bridge(ctx, **params):
    from rclpy.parameter import Parameter

    from naf_ros.ros.sim_bridge import SimBridge

    overrides = [Parameter(k, value=v) for k, v in params.items()]
    return SimBridge(context=ctx, parameter_overrides=overrides)


def test_sim_bridge_targets_in_3d(ros_context):
    fixed = make_bridge(
        ros_context, **{"env.id": ARM7_ID, "target_mode": "fixed", "fixed_target": [0.4, 0.1, 0.5]}
    )
    try:
        assert fixed.dims == 3 and np.allclose(fixed.sim.target, [0.4, 0.1, 0.5])
        fixed._reset()
        assert np.allclose(fixed.sim.target, [0.4, 0.1, 0.5])
    finally:
        fixed.destroy_node()
    rand = make_bridge(ros_context, **{"env.id": ARM7_FIXED_ID, "target_mode": "random"})
    try:
        targets = [rand.sim.target.copy()]
        for _ in range(3):
            rand._reset()
            targets.append(rand.sim.target.copy())
        assert np.array(targets).shape == (4, 3) and len(np.unique(targets, axis=0)) == 4
    finally:
        rand.destroy_node()
    with pytest.raises(ConfigError, match=r"^fixed_target: \[0.1, 0.2\] has 2 values; the task's"):
        make_bridge(ros_context, **{"env.id": ARM7_ID, "target_mode": "fixed"})


def test_description_wait_gets_the_latched_string_or_names_topic_and_timeout(ros_context):
    from rclpy.node import Node
    from std_msgs.msg import String

    from naf_ros.ros import qos
    from naf_ros.ros.description import wait_for_description
    from naf_ros.ros.names import ROBOT_DESCRIPTION_TOPIC

    xml = open(urdf("ur5")).read()
    publisher = Node("publisher", namespace="arm0", context=ros_context)
    reader = Node("reader", namespace="arm0", context=ros_context)
    lonely = Node("lonely", namespace="arm9", context=ros_context)
    try:
        pub = publisher.create_publisher(String, ROBOT_DESCRIPTION_TOPIC, qos.ROBOT_DESCRIPTION)
        pub.publish(String(data=xml))  # before anyone listens: latched
        assert wait_for_description(reader, 10.0) == xml
        with pytest.raises(
            ConfigError,
            match=r"^arm.model: no robot_description on /arm9/robot_description "
            r"within 0.2 s \(arm.description_timeout\)",
        ):
            wait_for_description(lonely, 0.2)
    finally:
        for node in (publisher, reader, lonely):
            node.destroy_node()
