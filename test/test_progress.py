"""The launcher's progress lines: one per episode, each with its own arm's tip distance.

The episode's return and tip distance travel on two topics, so with several arms (or a
reader that matches a policy late and then gets its kept history at once) the two arrive in
any order. Counting them per topic once merged two episodes into one line (seen in CI: 7 of
8 episodes reported). The oracle here is what was published: every (return, tip) pair, once.
"""

from __future__ import annotations

import csv
import math
import time

from support.ros import allocate_domain

from naf_ros.bringup.progress import EpisodePairs, Progress
from naf_ros.ros import qos
from naf_ros.ros.names import metric_topic

MS = 1_000_000  # stamps are in ns


def test_returns_ahead_of_their_tips_are_each_paired_with_their_own():
    pairs = EpisodePairs(wait_s=2.0)
    # Arm A's returns of episodes 1 and 2 arrive before either tip; arm B's tip arrives
    # between them. Each tip was stamped just before its own return.
    pairs.episode_return("A", 101 * MS, -1.0, now=0.0)
    pairs.tip("B", 150 * MS, 0.5)
    pairs.episode_return("A", 201 * MS, -2.0, now=0.0)
    assert pairs.ready(now=0.1) == []  # A's tips not here yet; B has no return yet
    pairs.tip("A", 100 * MS, 0.1)
    assert pairs.ready(now=0.1) == [(-1.0, 0.1)]  # episode 2 still waits for its tip
    pairs.tip("A", 200 * MS, 0.2)
    pairs.episode_return("B", 151 * MS, -5.0, now=0.1)
    assert sorted(pairs.ready(now=0.1)) == [(-5.0, 0.5), (-2.0, 0.2)]
    assert pairs.ready(now=10.0) == []  # nothing written twice


def test_a_lost_tip_costs_only_its_own_episode():
    pairs = EpisodePairs(wait_s=2.0)
    pairs.episode_return("A", 101 * MS, -1.0, now=0.0)
    assert pairs.ready(now=1.9) == []
    (written,) = pairs.ready(now=2.0)  # waited long enough: written without a tip
    assert written[0] == -1.0 and math.isnan(written[1])
    pairs.tip("A", 100 * MS, 0.1)  # that tip after all: older than what was written, dropped
    pairs.tip("A", 200 * MS, 0.2)
    pairs.episode_return("A", 201 * MS, -2.0, now=2.1)
    assert pairs.ready(now=2.1) == [(-2.0, 0.2)]


def test_waiting_returns_are_written_on_close():
    pairs = EpisodePairs(wait_s=2.0)
    pairs.episode_return("A", 1, -1.0, now=0.0)
    pairs.episode_return("A", 2, -2.0, now=0.0)
    assert [r for r, _ in pairs.ready(now=math.inf)] == [-1.0, -2.0]


def test_progress_node_reports_every_episode_of_two_arms_joined_late(tmp_path, monkeypatch):
    """Real DDS: two policies publish their episodes before the display starts; on matching,
    it gets both arms' kept histories of both topics at once, in whatever order DDS delivers
    them, and must still write each episode once with its own tip."""
    import rclpy
    from rclpy.context import Context
    from rclpy.node import Node
    from std_msgs.msg import Float64

    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    lease = allocate_domain()
    ctx = Context()
    rclpy.init(context=ctx, domain_id=lease.domain_id)
    progress = None
    try:
        published = set()
        nodes = [Node("naf_policy", namespace=f"arm{i}", context=ctx) for i in range(2)]
        for i, node in enumerate(nodes):
            tip = node.create_publisher(Float64, metric_topic("tip_distance"), qos.METRICS)
            ret = node.create_publisher(Float64, metric_topic("episode_return"), qos.METRICS)
            for ep in range(4):
                pair = (-10.0 * i - ep - 1.0, 0.01 * (10 * i + ep + 1))
                tip.publish(Float64(data=pair[1]))  # the policy's order: tip, then return
                ret.publish(Float64(data=pair[0]))
                published.add(pair)
        csv_path = tmp_path / "progress.csv"
        progress = Progress(lease.domain_id, 8, csv_path, quiet=True)
        deadline = time.monotonic() + 30.0
        while progress.episodes < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # anything more would be a line too many
        progress.close()
        progress = None
        with open(csv_path) as f:
            rows = list(csv.DictReader(f))
        written = [(float(r["return"]), float(r["tip_distance"])) for r in rows]
        assert sorted(written) == sorted(published), written
    finally:
        if progress is not None:
            progress.close()
        rclpy.shutdown(context=ctx)
        lease.release()
