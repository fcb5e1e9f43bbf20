"""The learner on another machine: the arm side (sim bridge + policy) and the learner side
(learner + dynamics fitter) in two network namespaces joined only by a veth pair, each
started by ``naf-ros launch`` with ``--discovery-range SUBNET`` on the same leased domain.

DDS discovery crosses the link (the policy waits for the learner to subscribe), transitions
go one way and weights and acknowledgements the other, and the learner's own accounts show
every transition arrived with no gap and nothing lost. Fast DDS is held to UDP, so nothing
takes the shared-memory shortcut the two "hosts" would otherwise find on one kernel; the
link's byte counters show the traffic went over it.
"""

from __future__ import annotations

import re
import signal

import pytest
from support.netns import HostPair
from support.ros import allocate_domain, launch_args

from naf_ros.bringup.proc_group import ros_child_env, spawn_group, stop_group
from naf_ros.core.checkpoint import load_checkpoint
from naf_ros.ros.learner import CHECKPOINT_NAME

pytestmark = pytest.mark.graph  # starts node processes over DDS

T = 10
EPISODES = 6
SHARED = [
    "agent.hidden=[16, 16]",
    f"env.max_episode_steps={T}",
    "agent.warmup_steps=20",
    "agent.batch_size=16",
    "train.eval_every=1000",
    "train.eval_episodes=1",
    "model_based.enabled=true",
    "model_based.episodes_per_fit=2",
    "model_based.prior_episodes=2",
    "model_based.rollout_length=3",
    "learner.weights_every_updates=10",
    "learner.checkpoint_every_s=1000",
]
LEARNING = ("learner", "dynamics_fitter")
ARM = ("sim_bridge", "naf_policy")
OTHERS = ("ilqg_explorer",)


@pytest.fixture
def hosts(request):
    pair = HostPair()
    request.addfinalizer(pair.close)
    return pair


@pytest.fixture
def domain(request):
    lease = allocate_domain()
    request.addfinalizer(lease.release)
    return lease.domain_id


def launch_cmd(hosts: HostPair, host: int, domain: int, run_dir, skip, *extra: str) -> list[str]:
    """``naf-ros launch`` on one host; ``extra`` are more ``--set`` items."""
    skips = [arg for node in skip for arg in ("--skip", node)]
    args = ["--discovery-range", "SUBNET", "--mode", "realtime", "--quiet", *skips]
    return [*hosts.exec_prefix(host), *launch_args(domain, run_dir, *args, sets=[*SHARED, *extra])]


def test_arms_and_learner_on_two_hosts(tmp_path, hosts, domain, request):
    env = ros_child_env(domain, "SUBNET")
    env["FASTDDS_BUILTIN_TRANSPORTS"] = "UDPv4"  # no shared memory between the "hosts"
    learner_dir, arm_dir = tmp_path / "learner_host", tmp_path / "arm_host"
    learner_dir.mkdir()
    arm_dir.mkdir()
    learner_log = open(learner_dir / "launch.out", "wb")
    arm_log = open(arm_dir / "launch.out", "wb")
    learner = spawn_group(
        launch_cmd(hosts, 1, domain, learner_dir, (*ARM, *OTHERS)), env, learner_log
    )
    request.addfinalizer(lambda: stop_group(learner, 30.0))
    arm = spawn_group(
        launch_cmd(
            hosts, 0, domain, arm_dir, (*LEARNING, *OTHERS),
            f"train.episodes={EPISODES}",
            # The launcher starts a policy without a local learner at once; across the link
            # it must wait for the remote consumers to subscribe (discovery over the veth
            # pair). The fitter too: nobody re-sends to it, and one found only after the
            # first episodes of so short a run would never have two whole ones to fit.
            "naf_policy.startup_timeout=60.0",
            "naf_policy.startup_subscribers=[learner, dynamics_fitter]",
        ),
        env, arm_log,
    )  # fmt: skip
    request.addfinalizer(lambda: stop_group(arm, 30.0))
    try:
        arm_code = arm.wait(240)
    finally:
        learner_code = stop_group(learner, 60.0)
        stop_group(arm, 30.0)
        learner_log.close()
        arm_log.close()
    policy_log = (arm_dir / "logs" / "naf_policy.log").read_text(errors="replace")
    learner_text = (learner_dir / "logs" / "learner.log").read_text(errors="replace")
    arm_out = (arm_dir / "launch.out").read_text(errors="replace")
    assert arm_code == 0, arm_out + policy_log[-3000:]
    assert learner_code in (130, -signal.SIGINT), learner_text[-3000:]
    assert "transition consumers ready" in policy_log, policy_log[-3000:]
    assert sorted(p.name for p in (learner_dir / "logs").iterdir()) == [
        "dynamics_fitter.log",
        "learner.log",
    ]

    # Weights crossed to the arm: the policy finished on weights the learner trained.
    done = re.search(r"done: (\d+) episodes, \d+ steps, (\d+) transitions, weights version (\S+)",
                     policy_log)  # fmt: skip
    assert done, policy_log[-3000:]
    assert int(done.group(1)) == EPISODES and int(done.group(2)) == EPISODES * T
    assert done.group(3) != "None" and float(done.group(3)) > 0, done.group(0)

    # Every transition reached the learner, in order, none lost; models flowed to it.
    state = load_checkpoint(learner_dir / CHECKPOINT_NAME)
    counters = state["learner"]["counters"]
    assert {int(k): int(v) for k, v in state["processed"].items()} == {0: EPISODES * T - 1}
    assert counters["transitions"] == EPISODES * T, counters
    assert counters["extra"].get("lost", 0) == 0 and counters["extra"].get("gaps", 0) == 0
    fitter_text = (learner_dir / "logs" / "dynamics_fitter.log").read_text(errors="replace")
    report = learner_text[-3000:] + fitter_text[-3000:] + policy_log[-3000:]
    assert "model v" in learner_text, report

    # ... over the link: each side sent the other far more than discovery alone would.
    received, sent = hosts.link_bytes(0)
    print(f"\narm host link: {sent} bytes out, {received} bytes in")
    assert sent > 50_000 and received > 50_000
