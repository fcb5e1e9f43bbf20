"""The embedded launcher's progress printer: one line per finished episode.

Why a module of its own: it is an rclpy node (a ``BackgroundNode``) with its own threading
and CSV output, while the launcher itself only manages processes.
"""

from __future__ import annotations

import csv
import math
import threading
import time
from pathlib import Path

from naf_ros.ros.background import BackgroundNode
from naf_ros.ros.names import POLICY_METRICS, metric_topic

METRIC_NAMES = POLICY_METRICS + ("updates_per_s", "q_loss")  # what a progress line shows


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
        self.counts: dict[str, int] = {}
        self._pending: float | None = None
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
        super().__init__("naf_launch_progress", domain_id, spin_timeout=0.1)
        for name in METRIC_NAMES:
            self.node.create_subscription(
                Float64,
                metric_topic(name),
                lambda msg, name=name: self._on_metric(name, msg.data),
                qos.METRICS,
            )
        self.node.create_timer(0.25, self._check_pending)

    def _on_metric(self, name: str, value: float) -> None:
        """Keep the newest value per metric; an episode's line waits for its tip distance."""
        with self._lock:
            self.latest[name] = value
            self.counts[name] = self.counts.get(name, 0) + 1
            if name == "eval_return" and not self.quiet:
                print(f"      eval after episode {self.episodes}: return {value:8.2f}", flush=True)
            if name == "episode_return":
                self._pending = time.monotonic()
            if self._pending is not None and (
                self.counts.get("tip_distance", 0) >= self.counts.get("episode_return", 0)
            ):
                self._flush()

    def _flush(self) -> None:
        self._pending = None
        self.episodes += 1
        value = self.latest["episode_return"]
        row = [
            self.episodes,
            value,
            self.latest["tip_distance"],
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
                f"tip {self.latest['tip_distance']:.3f} m | "
                f"eval {self.latest['eval_return']:8.2f} | "
                f"learner {self.latest['updates_per_s']:6.0f} upd/s",
                flush=True,
            )

    def _check_pending(self) -> None:
        with self._lock:
            if self._pending is not None and time.monotonic() - self._pending > 1.0:
                self._flush()  # the tip distance of this episode was lost: print anyway

    def close(self) -> None:
        super().close()
        with self._lock:
            if self._pending is not None:
                self._flush()
        if self._csv is not None:
            self._csv.close()
