"""The embedded launcher's progress printer: one line per finished episode.

Why a module of its own: it is an rclpy node (a ``BackgroundNode``) with its own threading
and CSV output, while the launcher itself only manages processes.
"""

from __future__ import annotations

import csv
import math
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from pathlib import Path

from naf_ros.ros.background import BackgroundNode
from naf_ros.ros.names import POLICY_METRICS, metric_topic

METRIC_NAMES = POLICY_METRICS + ("updates_per_s", "q_loss")  # what a progress line shows
TIP_WAIT_S = 2.0  # a return waits this long for its tip distance, then is written without


@dataclass
class _Source:
    """One policy's episode reports not yet written out (stamps in ns, the sender's clock)."""

    tips: list[tuple[int, float]] = field(default_factory=list)
    returns: list[tuple[int, float, float]] = field(default_factory=list)  # + arrival time
    last: int = -1  # stamp of the last return written


class EpisodePairs:
    """One entry per episode: each policy's ``episode_return`` with its own ``tip_distance``.

    Why not count per topic: the two metrics are separate topics, so with several arms, or a
    reader matched late that then gets a writer's kept history at once, messages of the two
    topics arrive in any order. Counting "a return once the tips caught up" then merged two
    episodes into one line. A policy publishes an episode's tip, then its return, from one
    thread, so a return's tip is the one its sender stamped after the previous return and not
    after this one. A return whose tip has not come within ``wait_s`` is written with none
    (the tip was lost); its tip, if it comes later, is then older than ``last`` and dropped.
    """

    def __init__(self, wait_s: float) -> None:
        self.wait_s = wait_s
        self._sources: dict[Hashable, _Source] = {}

    def tip(self, source: Hashable, stamp: int, value: float) -> None:
        s = self._sources.setdefault(source, _Source())
        if stamp > s.last:
            s.tips.append((stamp, value))

    def episode_return(self, source: Hashable, stamp: int, value: float, now: float) -> None:
        self._sources.setdefault(source, _Source()).returns.append((stamp, value, now))

    def ready(self, now: float) -> list[tuple[float, float]]:
        """(return, tip) of every episode that can be written now, each sender in order."""
        out = []
        for s in self._sources.values():
            while s.returns:
                stamp, value, arrived = s.returns[0]
                mine = [v for t, v in s.tips if s.last < t <= stamp]
                if not mine and now - arrived < self.wait_s:
                    break
                out.append((value, mine[-1] if mine else math.nan))
                s.tips = [(t, v) for t, v in s.tips if t > stamp]
                s.last = stamp
                s.returns.pop(0)
        return out


class Progress(BackgroundNode):
    """Subscribes to /naf/metrics/* and prints one line per finished episode."""

    def __init__(
        self, domain_id: int | None, total: int, csv_path: Path | None, quiet: bool = False
    ) -> None:
        from std_msgs.msg import Float64

        from naf_ros.ros import qos

        self.total, self.quiet = total, quiet
        self.latest: dict[str, float] = {m: math.nan for m in METRIC_NAMES}
        self.episodes = 0
        self.pairs = EpisodePairs(wait_s=TIP_WAIT_S)
        self._senders: dict[bytes, tuple[str, str]] = {}  # writer gid -> (namespace, node)
        self._lock = threading.Lock()
        self._csv = open(csv_path, "w", newline="") if csv_path else None
        self._writer = None
        if self._csv is not None:
            self._writer = csv.writer(self._csv)
            self._writer.writerow(
                [
                    "episode",
                    "return",
                    "tip_distance",
                    "eval_return",
                    "eval_tip_distance",
                    "updates_per_s",
                    "wall_s",
                ]
            )
        self._t0 = time.monotonic()
        # The launcher has set the graph's discovery range: with SUBNET it sees a learner elsewhere.
        super().__init__("naf_launch_progress", domain_id, localhost_only=False, spin_timeout=0.1)
        for name in METRIC_NAMES:
            self.node.create_subscription(
                Float64,
                metric_topic(name),
                lambda msg, info, name=name: self._on_metric(name, msg.data, info),
                qos.METRICS,
            )
        self.node.create_timer(0.25, self._write_ready)

    def _sender(self, name: str, info: dict) -> Hashable:
        """The node that published a message: its tip and return writers share it."""
        gid = bytes((info.get("publisher_gid") or {}).get("data", b""))
        if gid not in self._senders:
            for e in self.node.get_publishers_info_by_topic(metric_topic(name)):
                self._senders[bytes(e.endpoint_gid)] = (e.node_namespace, e.node_name)
        return self._senders.get(gid, gid)  # not in the graph (yet): the writer alone

    def _on_metric(self, name: str, value: float, info: dict) -> None:
        with self._lock:
            self.latest[name] = value
            if name == "eval_return" and not self.quiet:
                print(f"      eval after episode {self.episodes}: return {value:8.2f}", flush=True)
            if name == "tip_distance":
                self.pairs.tip(self._sender(name, info), info["source_timestamp"], value)
            elif name == "episode_return":
                sender = self._sender(name, info)
                self.pairs.episode_return(sender, info["source_timestamp"], value, time.monotonic())
            else:
                return
            self._write(self.pairs.ready(time.monotonic()))

    def _write(self, episodes: list[tuple[float, float]]) -> None:
        for value, tip in episodes:
            self.episodes += 1
            row = [
                self.episodes,
                value,
                tip,
                self.latest["eval_return"],
                self.latest["eval_tip_distance"],
                self.latest["updates_per_s"],
                round(time.monotonic() - self._t0, 3),
            ]
            if self._writer is not None:
                self._writer.writerow(row)
                self._csv.flush()
            if not self.quiet:
                print(
                    f"ep {self.episodes:4d}/{self.total} | return {value:8.2f} | "
                    f"tip {tip:.3f} m | eval {self.latest['eval_return']:8.2f} | "
                    f"learner {self.latest['updates_per_s']:6.0f} upd/s",
                    flush=True,
                )

    def _write_ready(self) -> None:
        with self._lock:
            self._write(self.pairs.ready(time.monotonic()))

    def close(self) -> None:
        super().close()
        with self._lock:
            self._write(self.pairs.ready(math.inf))  # what is still waiting for its tip
        if self._csv is not None:
            self._csv.close()
