"""A subscription that is re-created when the graph lists a publisher it never matched.

Why: a learner that hears nothing from an arm is the worst silent failure this system can
have (no updates, no error), and DDS can produce it. Endpoint discovery is two-sided: the
writer must know the reader and the reader must know the writer, and each side learns of the
other separately. Seen once in the test suite: for 95 s the learner received nothing from
the policy while it did receive the fitter's models, the fitter did receive the policy's
transitions, and the policy kept re-sending. Re-sending cannot cure a reader that never
paired with the writer; a new reader can, since DDS pairs a new endpoint afresh with every
writer its participant knows.

The watch compares two counts the node can read at any time: the compatible publishers the
ROS graph lists on the topic (same type, QoS that can match ours; any other publisher would
never match and must not trigger anything) and the publishers the subscription is matched
with. Matching normally follows discovery within milliseconds; a shortfall that lasts
``timeout_s`` is re-created, at most once per ``timeout_s``. Whatever the old reader held
and had not handed over is lost with it; the sequencer's gap holding and the producers'
re-sends make up for that.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rclpy.node import Node
from rclpy.qos import QoSCompatibility, QoSProfile, qos_check_compatible
from rclpy.subscription import Subscription


class MatchWatch:
    """When a subscription has been matched with fewer publishers than listed for too long.

    Pure bookkeeping (no ROS), so the rule is tested on its own: ``due`` is True once the
    shortfall has lasted ``timeout_s`` without a break; the clock then starts over, so a
    shortfall that re-creating does not cure is retried once per ``timeout_s``, not in a
    tight loop. ``timeout_s <= 0`` turns the watch off.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = float(timeout_s)
        self._since: float | None = None

    def due(self, listed: int, matched: int, now: float) -> bool:
        if self.timeout_s <= 0 or matched >= listed:
            self._since = None
            return False
        if self._since is None:
            self._since = now
            return False
        if now - self._since < self.timeout_s:
            return False
        self._since = now
        return True


def type_name(msg_type: Any) -> str:
    """``std_msgs/msg/Float64MultiArray`` for the class (the graph's spelling)."""
    module = msg_type.__module__.split(".")
    return f"{module[0]}/{module[1]}/{msg_type.__name__}"


def listed_publishers(node: Node, topic: str, msg_type: Any, qos_profile: QoSProfile) -> int:
    """Publishers on ``topic`` in ``node``'s graph that a subscription of ours would match."""
    wanted = type_name(msg_type)
    n = 0
    for info in node.get_publishers_info_by_topic(topic):
        if info.topic_type != wanted:
            continue
        compatibility, _ = qos_check_compatible(info.qos_profile, qos_profile)
        if compatibility != QoSCompatibility.ERROR:
            n += 1
    return n


class WatchedSubscription:
    """``node.create_subscription(...)``, re-created by :meth:`check` when the watch says so.

    ``on_recreate(listed, matched)`` is called after each re-creation (the node logs and
    counts it).
    """

    def __init__(
        self,
        node: Node,
        msg_type: Any,
        topic: str,
        callback: Callable[[Any], None],
        qos_profile: QoSProfile,
        timeout_s: float,
        on_recreate: Callable[[int, int], None],
    ) -> None:
        self.node, self.msg_type, self.topic = node, msg_type, topic
        self.callback, self.qos_profile = callback, qos_profile
        self.watch = MatchWatch(timeout_s)
        self.on_recreate = on_recreate
        self.recreated = 0
        self.listed = self.matched = 0
        self.sub: Subscription = self._create()

    def _create(self) -> Subscription:
        return self.node.create_subscription(
            self.msg_type, self.topic, self.callback, self.qos_profile
        )

    def check(self, now: float) -> bool:
        """Compare the counts (kept in :attr:`listed` / :attr:`matched`); re-create if due."""
        self.listed = listed_publishers(self.node, self.topic, self.msg_type, self.qos_profile)
        self.matched = self.sub.get_publisher_count()
        if not self.watch.due(self.listed, self.matched, now):
            return False
        self.node.destroy_subscription(self.sub)
        self.sub = self._create()
        self.recreated += 1
        self.on_recreate(self.listed, self.matched)
        return True
