"""Safety and bad-disk behaviour of real node processes: envelope, e-stop, read-only run dir.

One small lockstep graph (sim_bridge + naf_policy + learner) whose run folder is read-only
and whose safety section is tight: soft position limits at +-0.3 rad, a velocity limit, safe
exploration that never ends (so every training episode runs the iLQG controller the test
publishes, one that drives the joints outwards as hard as it may). Checked on the wire:

- no command ever pushes a joint further past a soft limit or accelerates it past the
  velocity limit, and the transitions record the action the arm actually got;
- ``estop`` true latches zero effort in the policy and in the bridge (which also ignores a
  direct command) until ``estop`` false; then episodes resume;
- nothing can be written (checkpoints, policy state, bags): every node reports it on
  ``/diagnostics``, learning and acting go on, and the folder stays empty; as nothing the
  learner trains on becomes durable, the policy's (small) outbox overflows, and says so.

The read-only folder holds for root too (a read-only bind mount, see ``support.faults``);
where it cannot be set up the read-only test fails rather than skip, and the other two,
which do not depend on it, run as usual.
"""

from __future__ import annotations

import contextlib
import math
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import JointState
from std_msgs.msg import Bool, Float64MultiArray
from support.faults import FaultSetupError, read_only
from support.ros import RosTestNode, allocate_domain, spawn_node, wait_until

from naf_ros.core.lin_gauss_policy import LinearGaussianController
from naf_ros.envs.arm import ArmModel
from naf_ros.envs.task import ReacherTask
from naf_ros.ros import qos
from naf_ros.ros.codec import decode_transition, pack_arrays, unpack_arrays
from naf_ros.ros.names import CONTROLLER_TOPIC, DIAGNOSTICS_TOPIC, PROGRESS_TOPIC, TRANSITIONS_TOPIC

pytestmark = pytest.mark.graph  # starts node processes over DDS

TASK = ReacherTask(ArmModel.from_mjcf())
LIMITS = TASK.arm.effort_limits
T, DT = 20, 0.02
SOFT, VEL = 0.3, 2.0
DEEP = QoSProfile(depth=5000, reliability=ReliabilityPolicy.RELIABLE)
COMMON = {
    "agent.hidden": [16, 16],
    "agent.warmup_steps": 20,
    "agent.batch_size": 16,
    "agent.updates_per_step": 1,
    "env.max_episode_steps": T,
    "train.episodes": 1000,
    "train.eval_every": 1000,
    "train.seed": 4,
    "diagnostics_period": 0.2,
}
POLICY = {
    **COMMON,
    "exploration.kind": "none",
    "safety.soft_lower": [-SOFT] * 3,
    "safety.soft_upper": [SOFT] * 3,
    "safety.velocity": VEL,
    "safety.safe_exploration": True,
    "safety.safe_exploration_return": 1e9,
    "persist": True,
    "wait_for_learner": 2.0,
    "outbox_capacity": 50,  # the learner cannot checkpoint, so nothing becomes durable
}
LEARNER = {**COMMON, "checkpoint_every_s": 0.5, "bag.record": "experience"}


def status_of(collector, node: str) -> DiagnosticStatus | None:
    for msg in reversed(collector.snapshot()):
        for status in msg.status:
            if status.name.endswith(f"/{node}"):
                return status
    return None


def values_of(collector, node: str) -> dict[str, str]:
    status = status_of(collector, node)
    return {kv.key: kv.value for kv in status.values} if status else {}


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("read_only_run")
    logs = tmp_path_factory.mktemp("safety_logs")
    lease = allocate_domain()
    probe = RosTestNode(lease.domain_id, name="safety_probe")
    g = {
        "run_dir": run_dir,
        "probe": probe,
        "trans": probe.collect(Float64MultiArray, TRANSITIONS_TOPIC, DEEP),
        "cmds": probe.collect(Float64MultiArray, "/effort_controller/commands", DEEP),
        "js": probe.collect(JointState, "/joint_states", DEEP),
        "progress": probe.collect(Float64MultiArray, PROGRESS_TOPIC, qos.LATCHED),
        "diag": probe.collect(DiagnosticArray, DIAGNOSTICS_TOPIC, 500),
        "estop": probe.publisher(Bool, "/estop", qos.ESTOP),
        "cmd_pub": probe.publisher(Float64MultiArray, "/effort_controller/commands", qos.COMMANDS),
    }
    # An iLQG controller that pushes every joint outwards (joint3 the other way).
    ctrl = LinearGaussianController.initial(T, 13, 3, 1e-6, u_hat=[0.9, 0.9, -0.9])
    ctrl_pub = probe.publisher(Float64MultiArray, CONTROLLER_TOPIC, qos.LATCHED)
    ctrl_pub.publish(pack_arrays({**ctrl.to_arrays(), "version": 1.0}))
    with contextlib.ExitStack() as fault:
        # The disk fault concerns only the read-only test: if it cannot be set up, that test
        # fails (never skips) and the envelope and e-stop tests still run, on a writable run
        # folder; neither depends on it.
        try:
            g["read_only"] = fault.enter_context(read_only(run_dir))
        except FaultSetupError as exc:
            g["read_only"], g["fault_error"] = None, str(exc)
        params = {"train.run_dir": str(run_dir)}
        procs = {
            "bridge": spawn_node(
                "naf_ros.ros.sim_bridge", lease.domain_id, logs,
                {"train.seed": 4, "command_timeout": 0.5, "diagnostics_period": 0.2},
            ),
            "learner": spawn_node(
                "naf_ros.ros.learner", lease.domain_id, logs, {**LEARNER, **params}
            ),
            "policy": spawn_node(
                "naf_ros.ros.policy.node", lease.domain_id, logs, {**POLICY, **params}
            ),
        }  # fmt: skip
        g["procs"] = procs
        try:
            yield g
        finally:
            codes = {name: p.stop(30) for name, p in procs.items()}
            probe.close()
            lease.release()
            g["codes"] = codes
            g["left_behind"] = sorted(p.name for p in run_dir.iterdir())
    assert codes == {"bridge": 0, "learner": 0, "policy": 0}, {
        n: p.output()[-2000:] for n, p in procs.items()
    }


def joint_angles(obs: np.ndarray) -> np.ndarray:
    return np.arctan2(obs[3:6], obs[0:3])


def test_soft_limits_velocity_limit_and_safe_exploration_on_the_wire(graph):
    g = graph
    assert g["trans"].wait_for(6 * T, 90), g["procs"]["policy"].output()[-3000:]
    tr = [decode_transition(m, 13, 3) for m in g["trans"].snapshot()]
    assert all(t["controller"] == 1.0 for t in tr), "safe exploration must run iLQG only"
    beyond = 0
    for t in tr:
        q, qd, a = joint_angles(t["obs"]), t["obs"][6:9], t["action"]
        for j in range(3):
            if q[j] >= SOFT:
                beyond += 1
                assert a[j] <= 0.0, (q, a)
            if q[j] <= -SOFT:
                beyond += 1
                assert a[j] >= 0.0, (q, a)
            if qd[j] >= VEL:
                assert a[j] <= 0.0, (qd, a)
            if qd[j] <= -VEL:
                assert a[j] >= 0.0, (qd, a)
    assert beyond > 3 * T, "the controller never drove a joint past a soft limit"
    # The same on the bridge's side: the effort applied over a step (reported with the
    # state it led to) never pushes further out from where the previous state was.
    states = g["js"].snapshot()
    checked = 0
    for prev, nxt in zip(states, states[1:]):
        dt = (nxt.header.stamp.sec - prev.header.stamp.sec) + 1e-9 * (
            nxt.header.stamp.nanosec - prev.header.stamp.nanosec
        )
        if not math.isclose(dt, DT, abs_tol=1e-9):
            continue  # a reset, or the watchdog's report
        q, e = np.asarray(prev.position), np.asarray(nxt.effort)
        assert np.all(e[q >= SOFT] <= 0.0) and np.all(e[q <= -SOFT] >= 0.0), (q, e)
        checked += 1
    assert checked > 4 * T
    for m in g["cmds"].snapshot():
        assert np.all(np.abs(np.asarray(m.data)) <= LIMITS + 1e-12)
    vals = values_of(g["diag"], "naf_policy")
    assert int(vals["limited_position_limit"]) > 0, vals


def test_estop_latches_zero_effort_until_released(graph):
    g = graph
    probe = g["probe"]
    # Policy and bridge; run alone, this test meets the nodes still starting (as the first
    # test does: same bound).
    assert probe.wait_for_subscribers(g["estop"], 2, 90), {
        n: p.stacks() for n, p in g["procs"].items()
    }
    n_trans = len(g["trans"])
    assert g["trans"].wait_for(n_trans + 5, 30), g["procs"]["policy"].stacks()
    g["estop"].publish(Bool(data=True))
    try:
        time.sleep(0.5)  # whatever was in flight has landed
        n_trans, n_cmds, n_js = len(g["trans"]), len(g["cmds"]), len(g["js"])
        assert list(g["cmds"].last.data) == [0.0, 0.0, 0.0]
        # The bridge ignores a direct command too: lockstep steps it, with zero effort.
        g["cmd_pub"].publish(Float64MultiArray(data=[0.2, 0.2, 0.2]))
        assert g["js"].wait_for(n_js + 1, 5)
        time.sleep(1.5)  # latched: no timeout releases it
        assert len(g["trans"]) == n_trans, "no transitions while e-stopped"
        new_cmds = g["cmds"].snapshot()[n_cmds:]
        assert all(list(m.data) in ([0.0] * 3, [0.2] * 3) for m in new_cmds)
        assert [list(m.data) for m in new_cmds].count([0.2] * 3) == 1  # only the probe's
        assert all(not np.any(m.effort) for m in g["js"].snapshot()[n_js:])
        assert wait_until(lambda: values_of(g["diag"], "naf_policy").get("estop") == "True", 5)
        assert wait_until(lambda: values_of(g["diag"], "sim_bridge").get("estop") == "True", 5)
        status = status_of(g["diag"], "naf_policy")
        assert status.level >= DiagnosticStatus.WARN and "e-stop" in status.message
    finally:  # released also when a check failed: the later tests need the graph running
        g["estop"].publish(Bool(data=False))
    assert g["trans"].wait_for(n_trans + T, 30), "episodes must resume after the release"
    resumed = g["cmds"].snapshot()[n_cmds:]
    assert any(np.any(np.asarray(m.data) != 0.0) and list(m.data) != [0.2] * 3 for m in resumed)
    assert wait_until(lambda: values_of(g["diag"], "sim_bridge").get("estop") == "False", 5)


def test_read_only_run_dir_is_reported_and_nothing_stops(graph):
    g = graph
    if g["read_only"] is None:
        pytest.fail(f"the fault was not set up: {g['fault_error']}")

    def learner_updates() -> int:
        msg = g["progress"].last
        return int(unpack_arrays(msg)["updates"]) if msg is not None else 0

    assert wait_until(lambda: learner_updates() > 0, 60)
    u0 = learner_updates()
    assert wait_until(lambda: learner_updates() > u0 + 20, 60), "learning must go on"
    assert wait_until(
        lambda: int(values_of(g["diag"], "learner").get("checkpoint_failures", 0)) >= 2, 20
    )
    learner = status_of(g["diag"], "learner")
    assert learner.level == DiagnosticStatus.ERROR and "checkpoint failed" in learner.message
    vals = {kv.key: kv.value for kv in learner.values}
    assert int(vals["bag_errors"]) >= 1 and int(vals["bag_not_recorded"]) > 0, vals
    policy = values_of(g["diag"], "naf_policy")
    assert int(policy["state_failures"]) >= 1, policy
    assert "cannot write" in policy["state_error"]
    assert int(policy["outbox_overflow"]) > 0 and int(policy["outbox_size"]) == 50, policy
    assert "outbox full" in status_of(g["diag"], "naf_policy").message
    assert g["procs"]["policy"].alive() and g["procs"]["learner"].alive()
    assert not list(g["run_dir"].iterdir()), "nothing may be written into a read-only folder"
    print(
        f"\nread-only run dir ({g['read_only']}): {vals['checkpoint_failures']} checkpoint "
        f"failures, {vals['bag_not_recorded']} transitions not recorded, "
        f"{policy['state_failures']} policy state saves failed, "
        f"{policy['outbox_overflow']} outbox overflows; learner at "
        f"{learner_updates()} updates, policy at {len(g['trans'])} transitions, all reported "
        "on /diagnostics"
    )
