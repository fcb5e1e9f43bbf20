"""Real arms' URDFs (example-robot-data) through ArmModel, checked against Pinocchio and against
finite differences of MuJoCo's tip position; the 3D reaching task on them; bad descriptions."""

from pathlib import Path

import numpy as np
import pytest
from support.robots import robots_dir

from naf_ros.envs.arm import ArmModel, ArmModelError, asset_path
from naf_ros.envs.task import ReacherTask, ReachTask

pin = pytest.importorskip("pinocchio")


# (URDF under robots/, tip link, number of arm joints)
ARMS = {
    "ur5": ("ur_description/urdf/ur5_robot.urdf", "tool0", 6),
    "panda": ("panda_description/urdf/panda.urdf", "panda_hand_tcp", 7),
    "xarm7": ("xarm_description/urdf/xarm7.urdf", "link_eef", 7),
}


def urdf(name: str) -> Path:
    return robots_dir() / ARMS[name][0]


class PinocchioArm:
    """The independent computation: Pinocchio's kinematics of the same URDF string."""

    def __init__(self, xml: str, joint_names, tip: str, base: str | None = None) -> None:
        self.model = pin.buildModelFromXML(xml)
        self.data = self.model.createData()
        self.joints = [self.model.joints[self.model.getJointId(n)] for n in joint_names]
        self.tip = self.model.getFrameId(tip)
        self.base = self.model.getFrameId(base) if base else None

    def configuration(self, q: np.ndarray) -> np.ndarray:
        """Our joint positions -> Pinocchio's q (a continuous joint is stored as cos/sin)."""
        x = pin.neutral(self.model)
        for joint, value in zip(self.joints, q):
            if joint.nq == 2:
                x[joint.idx_q : joint.idx_q + 2] = np.cos(value), np.sin(value)
            else:
                x[joint.idx_q] = value
        return x

    def tip_kinematics(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = self.configuration(q)
        pin.forwardKinematics(self.model, self.data, x)
        pin.updateFramePlacements(self.model, self.data)
        jac = pin.computeFrameJacobian(
            self.model, self.data, x, self.tip, pin.ReferenceFrame.LOCAL_WORLD_ALIGNED
        )[:3, [j.idx_v for j in self.joints]]
        pos = self.data.oMf[self.tip].translation.copy()
        if self.base is not None:
            base = self.data.oMf[self.base]
            pos = base.rotation.T @ (pos - base.translation)
            jac = base.rotation.T @ jac
        return pos, jac


@pytest.mark.parametrize("name", sorted(ARMS))
@pytest.mark.parametrize("given_as", ["path", "robot_description"])
def test_real_urdf_tip_and_jacobian_match_pinocchio(name, given_as):
    path, tip, n = ARMS[name]
    text = urdf(name).read_text()  # meshes are package:// URIs nobody resolves here
    if given_as == "path":
        arm = ArmModel.from_file(urdf(name), tip=tip)
    else:
        arm = ArmModel.load(text, tip=tip)  # the std_msgs/String on robot_description
    assert arm.kind == "urdf" and arm.n_joints == n and set(arm.joint_types) == {"hinge"}
    reference = PinocchioArm(text, arm.joint_names, tip)
    q = arm.sample_joint_positions(np.random.default_rng(0), 25)
    pos, jac = arm.tip_kinematics(q)
    assert pos.shape == (25, 3) and jac.shape == (25, 3, n)
    for k in range(len(q)):
        ref_pos, ref_jac = reference.tip_kinematics(q[k])
        assert np.allclose(pos[k], ref_pos, atol=1e-10)
        assert np.allclose(jac[k], ref_jac, atol=1e-10)
    # Limits come from the description, as Pinocchio reads them.
    idx_q = [j.idx_q for j in reference.joints]
    lower = reference.model.lowerPositionLimit[idx_q]
    assert np.allclose(arm.joint_lower, lower) and np.isfinite(arm.joint_lower).all()
    assert np.allclose(arm.effort_limits, reference.model.effortLimit[idx_q])
    assert np.allclose(arm.velocity_limits, reference.model.velocityLimit[idx_q])
    assert not arm.notes  # nothing had to come from elsewhere


@pytest.mark.parametrize("name", ["ur5", "panda"])
def test_jacobian_is_the_derivative_of_mujocos_tip_position(name):
    arm = ArmModel.from_file(urdf(name), tip=ARMS[name][1])
    rng = np.random.default_rng(1)
    eps = 1e-6
    for q in arm.sample_joint_positions(rng, 5):
        steps = q + eps * np.eye(arm.n_joints)
        numeric = (arm.tip_position(steps) - arm.tip_position(q - eps * np.eye(arm.n_joints))).T
        assert np.allclose(arm.tip_jacobian(q), numeric / (2 * eps), atol=1e-8)


def test_tip_as_a_link_plus_offset_and_a_moving_base_frame():
    """panda_hand_tcp is panda_hand plus 0.1034 m along z; base panda_link1 turns with
    joint 1, so the chain is joints 2-7 and the tip is expressed in link 1's frame."""
    text = urdf("panda").read_text()
    tcp = ArmModel.from_xml(text, tip="panda_hand_tcp")
    offset = ArmModel.from_xml(text, tip="panda_hand", tip_offset=(0, 0, 0.1034))
    q = tcp.sample_joint_positions(np.random.default_rng(2), 10)
    assert np.allclose(tcp.tip_position(q), offset.tip_position(q), atol=1e-12)
    assert np.allclose(tcp.tip_jacobian(q), offset.tip_jacobian(q), atol=1e-12)
    based = ArmModel.from_xml(text, tip="panda_hand_tcp", base="panda_link1")
    assert based.joint_names == tcp.joint_names[1:]
    reference = PinocchioArm(text, based.joint_names, "panda_hand_tcp", base="panda_link1")
    pos, jac = based.tip_kinematics(q[:, 1:])
    for k in range(len(q)):
        ref_pos, ref_jac = reference.tip_kinematics(q[k, 1:])
        assert np.allclose(pos[k], ref_pos, atol=1e-10) and np.allclose(jac[k], ref_jac, atol=1e-10)


def test_shipped_7dof_arm_has_the_panda_kinematics():
    arm = ArmModel.from_file(asset_path("arm7dof.xml"))
    panda = ArmModel.from_file(urdf("panda"), tip="panda_hand_tcp")
    q = panda.sample_joint_positions(np.random.default_rng(3), 50)
    assert np.allclose(arm.tip_position(q), panda.tip_position(q), atol=1e-12)
    assert np.allclose(arm.tip_jacobian(q), panda.tip_jacobian(q), atol=1e-12)
    assert np.allclose(arm.joint_lower, panda.joint_lower)
    assert np.allclose(arm.joint_upper, panda.joint_upper)
    assert np.allclose(arm.effort_limits, panda.effort_limits)
    assert arm.has_gravity and arm.tip == "fingertip"
    # MJCF has no velocity field: reported, and filled from the arguments when given.
    assert any("velocity limits not in the description" in note for note in arm.notes)
    given = ArmModel.from_file(asset_path("arm7dof.xml"), velocity=panda.velocity_limits)
    assert np.allclose(given.velocity_limits, panda.velocity_limits)
    assert "given: joint1=2.175" in given.describe()


def test_gravity_effort_is_the_bias_force_at_rest():
    arm = ArmModel.from_file(urdf("ur5"), tip="tool0")
    q = arm.sample_joint_positions(np.random.default_rng(4), 3)
    g = arm.gravity_effort(q)
    assert g.shape == (3, 6) and np.abs(g[:, 1]).max() > 1.0  # the shoulder carries the arm
    # Independent: Pinocchio's generalized gravity.
    reference = PinocchioArm(urdf("ur5").read_text(), arm.joint_names, "tool0")
    for k in range(3):
        x = reference.configuration(q[k])
        assert np.allclose(g[k], pin.computeGeneralizedGravity(reference.model, reference.data, x))
    assert np.allclose(ArmModel.from_mjcf().gravity_effort(np.ones(3)), 0.0)  # no gravity


def test_reach_task_on_a_real_arm():
    arm = ArmModel.from_file(urdf("panda"), tip="panda_hand_tcp")
    task = ReachTask(arm)
    assert task.obs_dim == 2 * 7 + 7 + 3 + 3 and task.dims == 3
    rng = np.random.default_rng(5)
    q, qd = arm.sample_joint_positions(rng, 8), rng.normal(size=(8, 7))
    target = task.sample_target(rng)
    obs = task.observation(q, qd, target)
    assert obs.shape == (8, task.obs_dim)
    assert np.allclose(obs[:, task.delta_slice], arm.tip_position(q) - target)
    q2, qd2, t2 = task.joint_state_from_observation(obs)
    assert np.allclose(np.cos(q2 - q), 1.0) and np.allclose(qd2, qd) and np.allclose(t2, target)
    assert np.allclose(task.observation(q2, qd2, t2), obs)
    # Targets: reachable (the tip at some configuration within the limits), inside the box.
    box = ((0.3, -0.3, 0.2), (0.6, 0.3, 0.6))
    targets = np.array([task.sample_target(rng, box) for _ in range(20)])
    assert (
        np.all((targets >= box[0]) & (targets <= box[1])) and len(np.unique(targets, axis=0)) == 20
    )
    with pytest.raises(ArmModelError, match="no reachable tip position"):
        task.sample_target(rng, ((5, 5, 5), (6, 6, 6)), max_tries=500)


def test_reach_task_reward_derivatives_match_finite_differences():
    task = ReachTask(ArmModel.from_file(asset_path("arm7dof.xml")))
    rng = np.random.default_rng(6)
    q = task.arm.sample_joint_positions(rng)
    x = task.observation(q, rng.normal(size=7), task.sample_target(rng))
    u = rng.uniform(-1, 1, 7)
    r, r_x, r_u, r_xx, r_uu, r_ux = task.reward_derivatives(x, u)
    assert r == pytest.approx(float(task.reward(x, u)))
    eps = 1e-6
    ex, eu = np.eye(task.obs_dim), np.eye(7)
    num_x = [(task.reward(x + eps * e, u) - task.reward(x - eps * e, u)) / (2 * eps) for e in ex]
    num_u = [(task.reward(x, u + eps * e) - task.reward(x, u - eps * e)) / (2 * eps) for e in eu]
    assert np.allclose(r_x, num_x, atol=1e-7) and np.allclose(r_u, num_u, atol=1e-7)
    h = 1e-5

    def grads(x, u):
        return np.concatenate(task.reward_derivatives(x, u)[1:3])

    xu = np.eye(task.obs_dim + 7) * h
    num = np.array(
        [(grads(x + d[:-7], u + d[-7:]) - grads(x - d[:-7], u - d[-7:])) / (2 * h) for d in xu]
    )
    hess = np.block([[r_xx, r_ux.T], [r_ux, r_uu]])
    assert np.allclose(hess, num, atol=1e-5)
    assert np.all(np.linalg.eigvalsh(hess) <= 1e-9)


def test_slide_joints_are_observed_as_positions():
    """A chain through a prismatic finger joint: its position is observed as it is."""
    arm = ArmModel.from_file(urdf("panda"), tip="panda_leftfinger")
    assert arm.joint_types == ("hinge",) * 7 + ("slide",)
    task = ReachTask(arm)
    assert task.obs_dim == 2 * 7 + 1 + 8 + 6
    q = arm.sample_joint_positions(np.random.default_rng(7))
    obs = task.observation(q, np.zeros(8), np.zeros(3))
    assert obs[14] == q[7]
    assert np.allclose(task.joint_state_from_observation(obs)[0], q)


def test_planar_reacher_rejects_a_spatial_arm():
    with pytest.raises(ArmModelError, match="out of the base's xy-plane"):
        ReacherTask(ArmModel.from_file(asset_path("arm7dof.xml")))


BALL_CHAIN = """<mujoco><worldbody><body name="a"><joint name="ball" type="ball"/>
<geom size="0.1" mass="1"/><body name="b" pos="0 0 1"><joint name="j2" axis="0 1 0"/>
<geom size="0.1" mass="1"/><site name="fingertip"/></body></body></worldbody></mujoco>"""


BAD_GEOM = """<mujoco><worldbody><body name="a"><joint name="j" axis="0 0 1"/>
<geom type="sphere" fromto="0 0 0 1 0 0" size="0.1"/><site name="fingertip"/></body>
</worldbody></mujoco>"""


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda t: ArmModel.from_xml(t, tip="no_such_link"), "tip 'no_such_link' is neither"),
        (lambda t: ArmModel.from_xml(t[: len(t) // 2]), "not XML"),
        (lambda t: ArmModel.from_xml(t, tip="tool0", joints=["elbow_joint", "nope"]), "'nope'"),
        (lambda t: ArmModel.from_xml(t), "no tip given and no single end link"),
        (lambda t: ArmModel.from_xml(t, tip="tool0", joints=["elbow_joint"] * 2), "twice"),
        (lambda t: ArmModel.from_xml(t, tip="tool0", base="nowhere"), "base 'nowhere'"),
        (lambda t: ArmModel.from_xml(t, tip="shoulder_link", base="tool0"), "not on the path"),
        (lambda t: ArmModel.from_xml(BALL_CHAIN), "'ball' on the chain is a mjJNT_BALL"),
        (lambda t: ArmModel.from_xml("<sdf/>"), "neither <robot> (URDF) nor <mujoco>"),
        (lambda t: ArmModel.from_xml("<robot><link/></robot>"), "MuJoCo cannot load it"),
        (lambda t: ArmModel.from_xml(BAD_GEOM), "MuJoCo cannot load it: Error: fromto"),
        (lambda t: ArmModel.from_file("/nonexistent/arm.urdf"), "cannot read the arm model"),
    ],
)
def test_bad_descriptions_fail_in_one_line_naming_the_problem(make, message):
    with pytest.raises(
        ArmModelError, match="^[^\n]*" + message.replace("(", r"\(").replace(")", r"\)")
    ) as err:
        make(urdf("ur5").read_text())
    assert "\n" not in str(err.value)


def test_missing_effort_limit_must_be_given_and_is_reported():
    arm_xml = """<mujoco><worldbody><body name="l1"><joint name="j1" axis="0 0 1"/>
    <geom type="capsule" size="0.05" fromto="0 0 0 0.2 0 0" mass="1"/>
    <site name="fingertip" pos="0.2 0 0"/>
    </body></worldbody></mujoco>"""
    with pytest.raises(ArmModelError, match="'j1' has no effort limit"):
        ArmModel.from_xml(arm_xml)
    arm = ArmModel.from_xml(arm_xml, effort={"j1": 2.0})
    assert arm.effort_limits.tolist() == [2.0]
    assert "effort limits not in the description" in arm.describe()


def test_arm_model_pickles_and_works_from_threads():
    import pickle
    import threading

    arm = ArmModel.from_file(asset_path("arm7dof.xml"))
    copy = pickle.loads(pickle.dumps(arm))
    q = arm.sample_joint_positions(np.random.default_rng(8), 50)
    assert np.array_equal(copy.tip_position(q), arm.tip_position(q))
    results = {}

    def work(k):
        results[k] = arm.tip_position(q)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(r, arm.tip_position(q)) for r in results.values())
