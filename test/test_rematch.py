"""The learner's guard against a transitions reader that never paired with a listed writer.

The rule (MatchWatch) against a hand-made timeline; the graph count against real publishers
that can and cannot match; and the re-creation over real DDS between two participants, with
the fault (a reader that reports no matched writer) injected at the count the node reads,
since a real unpaired reader cannot be produced on demand.
"""

from __future__ import annotations

import time

import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Float64MultiArray, String
from support.ros import RosTestNode, allocate_domain, wait_until

from naf_ros.core.delivery import Producer
from naf_ros.ros import qos
from naf_ros.ros.policy.transitions import TransitionsOut
from naf_ros.ros.rematch import MatchWatch, WatchedSubscription, listed_publishers, type_name

TOPIC = "/naf/transitions"


def test_watch_fires_once_per_timeout_of_unbroken_shortfall():
    w = MatchWatch(5.0)
    assert not w.due(1, 0, 0.0)  # the shortfall starts
    assert not w.due(1, 0, 4.9)
    assert w.due(1, 0, 5.0)  # lasted 5 s
    assert not w.due(1, 0, 9.9)  # the clock started over
    assert w.due(1, 0, 10.0)
    assert not w.due(2, 2, 10.5)  # matched: reset
    assert not w.due(2, 1, 11.0)
    assert not w.due(2, 1, 15.9)  # a new shortfall waits its own full timeout
    assert w.due(2, 1, 16.0)
    assert not w.due(1, 3, 100.0)  # more matched than listed (graph lagging): fine
    off = MatchWatch(0.0)
    assert not any(off.due(1, 0, t) for t in (0.0, 10.0, 1e6))


def test_type_name_is_the_graph_spelling():
    assert type_name(Float64MultiArray) == "std_msgs/msg/Float64MultiArray"


@pytest.mark.graph
def test_only_publishers_that_could_match_are_counted():
    lease = allocate_domain()
    with (
        RosTestNode(lease.domain_id, "pubs") as pubs,
        RosTestNode(lease.domain_id, "other") as other,
        RosTestNode(lease.domain_id, "obs") as obs,
    ):
        best_effort = QoSProfile(depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
        pubs.publisher(Float64MultiArray, TOPIC, best_effort)  # a reliable reader never matches
        other.publisher(String, TOPIC, qos.TRANSITIONS)  # another type: never matches
        seen = wait_until(lambda: len(obs.node.get_publishers_info_by_topic(TOPIC)) == 2, 20)
        assert seen
        assert listed_publishers(obs.node, TOPIC, Float64MultiArray, qos.TRANSITIONS) == 0
        pubs.publisher(Float64MultiArray, TOPIC, qos.TRANSITIONS)
        assert wait_until(
            lambda: listed_publishers(obs.node, TOPIC, Float64MultiArray, qos.TRANSITIONS) == 1,
            20,
        )
    lease.release()


def _watched(node: RosTestNode, received: list, calls: list) -> WatchedSubscription:
    return WatchedSubscription(
        node.node,
        Float64MultiArray,
        TOPIC,
        received.append,
        qos.TRANSITIONS,
        timeout_s=5.0,
        on_recreate=lambda listed, matched: calls.append((listed, matched)),
    )


@pytest.mark.graph
def test_an_unpaired_reader_is_recreated_and_the_new_one_receives():
    lease = allocate_domain()
    with RosTestNode(lease.domain_id, "arm") as arm, RosTestNode(lease.domain_id, "lrn") as lrn:
        pub = arm.publisher(Float64MultiArray, TOPIC, qos.TRANSITIONS)
        received: list = []
        calls: list = []
        watched = _watched(lrn, received, calls)
        assert arm.wait_for_subscribers(pub, 1)
        assert wait_until(lambda: watched.sub.get_publisher_count() == 1, 20)

        # Healthy: paired, so no timeline ever re-creates it.
        for t in (0.0, 5.0, 10.0, 60.0):
            assert not watched.check(t)
        assert (watched.listed, watched.matched, watched.recreated) == (1, 1, 0)

        # The fault: this reader reports no matched writer (as an unpaired one would).
        old = watched.sub
        old.get_publisher_count = lambda: 0
        assert not watched.check(100.0)
        assert not watched.check(104.9)
        assert watched.check(105.0)
        assert calls == [(1, 0)] and watched.recreated == 1 and watched.sub is not old
        subs = list(lrn.node.subscriptions)
        assert old not in subs and watched.sub in subs

        # The new reader pairs with the writer and gets what is published from now on.
        assert wait_until(lambda: watched.sub.get_publisher_count() == 1, 20)
        assert wait_until(lambda: pub.get_subscription_count() == 1, 20)  # the old one left
        pub.publish(Float64MultiArray(data=[1.0, 2.0]))
        assert wait_until(lambda: len(received) == 1, 20)
        assert list(received[0].data) == [1.0, 2.0]
        assert not watched.check(200.0)  # paired again: nothing more to do
    lease.release()


# Generous, since each round needs the report and the re-send within this of each other.
RESEND_S = 2.0


class _Diag:
    def __init__(self) -> None:
        self.values: dict = {}

    def problem(self, *args) -> None:
        pass


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def warning(self, text: str, **_kw) -> None:
        self.lines.append(text)


@pytest.mark.graph
def test_the_policy_replaces_a_writer_whose_resends_a_live_learner_never_takes():
    """The producer's half: a learner alive (reports come) that acknowledges none of
    ``renew_writer_after`` re-sends gets a new writer, and the next re-send reaches it
    through the new one. The learner here is a plain reader that never acknowledges."""
    lease = allocate_domain()
    with RosTestNode(lease.domain_id, "arm") as arm, RosTestNode(lease.domain_id, "lrn") as lrn:
        got = lrn.collect(Float64MultiArray, TOPIC, qos.TRANSITIONS)
        log = _Log()
        producer = Producer(100, resend_timeout=RESEND_S, resend_batch=500, warn=log.warning)
        out = TransitionsOut(
            producer, 0, ["lrn"], arm.node.get_subscriptions_info_by_topic, _Diag(), log,
            renew_writer_after=3,
        )  # fmt: skip
        out.attach(
            lambda: arm.node.create_publisher(Float64MultiArray, TOPIC, qos.TRANSITIONS),
            arm.node.destroy_publisher,
        )
        first = out.pub
        assert arm.wait_for_subscribers(first, 1)
        producer.on_progress(7.0, last_seq=None)  # the learner is there before we send
        for i in range(3):
            out.publish(Float64MultiArray(data=[float(i)]), episode=0)
        assert got.wait_for(3, 20)

        def silent_round() -> list:
            """One fallback round: the learner reports (alive) but acknowledges nothing."""
            time.sleep(RESEND_S + 0.05)  # quiet for longer than resend_timeout
            producer.on_progress(7.0, last_seq=None, now=time.monotonic())
            out.resend()
            return out.pub

        for _ in range(3):
            assert silent_round() is first
        assert producer.fruitless == 3 and got.wait_for(3 + 3 * 3, 20)  # each round went out
        pub = silent_round()  # the fourth: the writer is replaced first
        assert pub is not first and out.writers_renewed == 1 and producer.fruitless == 0
        assert first not in list(arm.node.publishers) and pub in list(arm.node.publishers)
        assert any("replaced the /naf/transitions writer" in line for line in log.lines)
        assert wait_until(lambda: pub.get_subscription_count() == 1, 20)
        n = len(got)
        silent_round()  # the next re-send goes through the new writer and arrives
        assert got.wait_for(n + 3, 20)
        assert [m.data[0] for m in got.snapshot()[-3:]] == [0.0, 1.0, 2.0]
    lease.release()
