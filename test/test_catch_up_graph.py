"""Realtime learning keeps the algorithm: with ``catch_up_ratio`` the policy holds each training
episode's start until a (deliberately slow) learner has caught up.

The learner gets a network far too big for 50 Hz x I = 5 (a few hundred updates per second
would be needed, it manages well under one hundred on one core), so without the option its
updates per transition fall far below I. Figures are the learner's own: ``run_ratio`` /
``run_target`` for the arm in ``/naf/learner_progress``, read at each episode boundary (the
messages the learner sends between the last transition of one episode and the first of the
next, which are what the policy waits on). No wall-clock figure is asserted.
"""

from __future__ import annotations

import numpy as np
import pytest
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Float64MultiArray
from support.ros import RosTestNode, allocate_domain, finish_launch, launch_graph

from naf_ros.ros.codec import unpack_arrays
from naf_ros.ros.names import PROGRESS_TOPIC

pytestmark = pytest.mark.graph  # starts node processes over DDS

T = 20
EPISODES = 10
UPDATES = 5
CATCH_UP = 0.8
# Every progress report counts here (the best one per boundary), so the probe's reader keeps
# them all: with the latched depth-1 reader the policy uses, a probe whose executor lags
# behind (a 512x512 learner takes a whole core) lost a boundary's last report to the next
# one once in CI and saw the learner lower than the policy had seen it.
PROGRESS_ALL = QoSProfile(
    depth=10000,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
SLOW_LEARNER = [
    "agent.hidden=[512, 512]",  # ~80 updates/s on one core here; 50 Hz x I=5 needs 250
    "agent.batch_size=64",
    f"agent.updates_per_step={UPDATES}",
    "agent.warmup_steps=64",
    f"env.max_episode_steps={T}",
    "train.eval_every=1000",  # no evaluation episodes between the training ones
    "train.eval_episodes=1",
    "learner.weights_every_updates=50",
    "learner.checkpoint_every_s=1000",
]


def run_graph(tmp_path, name: str, *extra: str) -> dict[int, float]:
    """One realtime run; per episode boundary k (after episode k), the learner's best run
    figure for arm 0 as a fraction of its target before episode k+1's transitions came."""
    lease = allocate_domain()
    probe = RosTestNode(lease.domain_id)
    progress = probe.collect(Float64MultiArray, PROGRESS_TOPIC, PROGRESS_ALL)
    proc = launch_graph(
        lease.domain_id, tmp_path / name, "--mode", "realtime", "--quiet",
        "--episodes", str(EPISODES), "--skip", "dynamics_fitter", "--skip", "ilqg_explorer",
        sets=[*SLOW_LEARNER, *extra],
    )  # fmt: skip
    try:
        out = finish_launch(proc, 240)
    finally:
        msgs = progress.snapshot()
        probe.close()
        lease.release()
    assert proc.returncode == 0, out
    best: dict[int, float] = {}
    for msg in msgs:
        f = unpack_arrays(msg)
        if "run_ratio" not in f:
            continue
        row = dict(zip(np.atleast_1d(f["producers"]).astype(int), range(10**6)))
        if 0 not in row:
            continue
        i = row[0]
        last, ratio = int(np.atleast_1d(f["last_seq"])[i]), float(np.atleast_1d(f["run_ratio"])[i])
        target = float(np.atleast_1d(f["run_target"])[i])
        if ratio < 0 or (last + 1) % T:
            continue  # no figure yet (learner not warm), or mid-episode
        k = (last + 1) // T
        best[k] = max(best.get(k, 0.0), ratio / target)
    log = (tmp_path / name / "logs" / "naf_policy.log").read_text(errors="replace")
    assert "has not caught up" not in log or "catch_up" not in " ".join(extra), log[-3000:]
    print(f"\n{name}: learner updates per transition / target at episode starts {best}")
    return best


def test_catch_up_keeps_the_configured_ratio_and_without_it_the_learner_falls_behind(tmp_path):
    off = run_graph(tmp_path, "off")
    on = run_graph(
        tmp_path, "on", f"naf_policy.catch_up_ratio={CATCH_UP}", "naf_policy.catch_up_timeout=60.0"
    )
    # Every episode after the learner got warm started only once it had caught up ...
    boundaries = [k for k in on if k < EPISODES]
    assert len(boundaries) >= 3, on
    assert all(on[k] >= CATCH_UP for k in boundaries), on
    # ... while without the option the slow learner is well behind by the end.
    last = max(k for k in off if k < EPISODES)
    assert off[last] < CATCH_UP, off
