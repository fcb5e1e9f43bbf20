"""Joint states in, and the realtime reflex: the command computed inside the state's callback.

Joint states arrive on a side node with its own executor thread (:class:`SideNode`), are
mapped by name, validated (finite, plausible) and kept as the latest :class:`JointSample`.
In lockstep the worker simply waits for the next one. In realtime that hand-off (wake the
worker, let it take the GIL) would sit between state and command, so the worker arms a
:class:`Reflex` for the next step and the joint-state callback itself computes and
publishes that command the moment the state arrives (no thread hand-off, no transition
bookkeeping in the way); the worker then does the bookkeeping for the step while the arm
already has its command. The latencies on that path are measured here for ``/diagnostics``.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

import numpy as np
from rclpy.subscription import MessageInfo
from sensor_msgs.msg import JointState

from naf_ros.ros.messages import stamp_to_ns


class JointSample:
    """One validated joint state for the configured joints, in configured order."""

    __slots__ = ("q", "qd", "time_ns", "index", "recv")

    def __init__(
        self, q: np.ndarray, qd: np.ndarray, time_ns: int, index: int, recv: float = 0.0
    ) -> None:
        self.q, self.qd, self.time_ns, self.index = q, qd, time_ns, index
        self.recv = recv  # monotonic arrival time (the realtime watchdog's input)


class Reflex:
    """One realtime step armed by the worker and taken by the joint-state callback.

    ``act`` False only records the state (the episode's last next-state). The callback
    fills ``state``, ``obs``, ``action``, ``reasons`` (or ``error``) and sets ``done``.
    """

    __slots__ = (
        "gap_ns", "after_index", "t", "target", "controller", "train", "act",
        "taken", "done", "state", "obs", "action", "reasons", "error",
    )  # fmt: skip

    def __init__(
        self, prev: JointSample, gap_ns: int, t: int, target: np.ndarray, controller,
        train: bool, act: bool,
    ) -> None:  # fmt: skip
        self.gap_ns, self.after_index, self.t = gap_ns, prev.index, t
        self.target, self.controller, self.train, self.act = target, controller, train, act
        self.taken = self.done = False
        self.state: JointSample | None = None
        self.obs: np.ndarray | None = None
        self.action: np.ndarray | None = None
        self.reasons: tuple[str, ...] = ()
        self.error: BaseException | None = None

    def wants(self, sample: JointSample) -> bool:
        return sample.time_ns >= self.gap_ns and sample.index > self.after_index


class ReflexPath:
    """Mixin of :class:`~naf_ros.ros.policy.node.NafPolicy`: the joint-state input and reflex.

    Uses from the node: ``params``, ``configured``, ``joint_names``, ``plausibility``,
    ``task``, ``control_dt``, ``diag``, ``_cond``, and from the worker ``_wait`` and
    ``_act_and_command``.
    """

    def _init_reflex(self) -> None:
        self._latest: JointSample | None = None
        self._latest_recv = 0.0
        self._js_count = 0
        self._reflex: Reflex | None = None  # realtime: the step the next joint state takes
        self._latency_s: deque[float] = deque(maxlen=2000)
        self._transit_s: deque[float] = deque(maxlen=2000)
        self._dispatch_s: deque[float] = deque(maxlen=2000)
        self._latency_cpu_s: deque[float] = deque(maxlen=2000)  # CPU share of the above

    def _on_joint_state(self, msg: JointState, info: MessageInfo) -> None:
        """Map by name; drop (and count) anything that cannot give all configured joints."""
        recv = time.perf_counter()  # in-node latency counts the validation below too
        if not self.configured:
            return
        # Where a state's time goes before we see it: DDS transit (publisher's write to
        # reception in this process) and dispatch (reception to this callback).
        received = info.get("received_timestamp") or 0
        source = info.get("source_timestamp") or 0
        if received and source:
            self._transit_s.append((received - source) * 1e-9)
            self._dispatch_s.append((time.time_ns() - received) * 1e-9)
        names = list(msg.name)
        if not names:
            self.diag.reject("joint_state_no_names")
            return
        if len(msg.position) != len(names) or len(msg.velocity) != len(names):
            self.diag.reject(
                "joint_state_length",
                f"{len(names)} names, {len(msg.position)} positions, {len(msg.velocity)} "
                "velocities",
            )
            return
        index = {name: i for i, name in enumerate(names)}
        if len(index) != len(names):
            self.diag.reject("joint_state_duplicate_name")
            return
        missing = [j for j in self.joint_names if j not in index]
        if missing:
            self.diag.reject("joint_state_missing_joint", f"missing {missing}")
            return
        idx = [index[j] for j in self.joint_names]
        q = np.asarray(msg.position, dtype=float)[idx]
        qd = np.asarray(msg.velocity, dtype=float)[idx]
        if not (np.isfinite(q).all() and np.isfinite(qd).all()):
            self.diag.reject("joint_state_non_finite")
            return
        implausible = self.plausibility.check(q, qd)
        if implausible is not None:
            self.diag.reject("joint_state_implausible", implausible)
            return
        stamp = stamp_to_ns(msg.header.stamp)
        reflex = None
        with self._cond:
            self._js_count += 1
            sample = JointSample(
                q, qd, stamp if stamp > 0 else time.monotonic_ns(), self._js_count, time.monotonic()
            )
            self._latest = sample
            self._latest_recv = recv
            if self._reflex is not None and self._reflex.wants(sample):
                reflex, self._reflex = self._reflex, None
                reflex.taken = True
            else:  # when taken, the worker is woken once the command is out, not before:
                self._cond.notify_all()  # a waking worker would compete for the GIL
        if reflex is not None:
            self._take_reflex(reflex, sample, recv)

    def _take_reflex(self, reflex: Reflex, sample: JointSample, recv: float) -> None:
        """Act on ``sample`` right here in the callback; the worker finishes the step."""
        cpu = time.thread_time()
        try:
            reflex.state = sample
            reflex.obs = self.task.observation(sample.q, sample.qd, reflex.target)
            if reflex.act:
                reflex.action, reflex.reasons = self._act_and_command(
                    sample, reflex.obs, reflex.controller, reflex.t, reflex.train
                )
                self._latency_s.append(time.perf_counter() - recv)
                self._latency_cpu_s.append(time.thread_time() - cpu)
        except Exception as exc:  # noqa: BLE001 - handed to the worker, which stops safely
            reflex.error = exc
        with self._cond:
            reflex.done = True
            self._cond.notify_all()

    def _next_reflex(
        self, prev: JointSample, target: np.ndarray, controller, t: int, train: bool, act: bool
    ) -> tuple[JointSample, np.ndarray, np.ndarray | None, tuple[str, ...]] | None:
        """Realtime: arm a :class:`Reflex` for the state after ``prev`` and wait for it.

        Returns (state, obs, action, reasons), or None when no state came in time. A state
        that arrived before the reflex was armed is taken here, in the worker.
        """
        reflex = Reflex(
            prev, prev.time_ns + int(0.75 * self.control_dt * 1e9), t, target, controller, train,
            act,
        )  # fmt: skip
        with self._cond:
            late = self._latest if self._latest is not None and reflex.wants(self._latest) else None
            if late is None:
                self._reflex = reflex
            else:
                reflex.taken = True
        if late is not None:
            self._take_reflex(reflex, late, self._latest_recv)
        try:
            ok = self._wait(lambda: reflex.done, self.params.state_timeout)
            if not ok:
                with self._cond:
                    if not reflex.taken:
                        self._reflex = None
                if reflex.taken:  # taken just now: it finishes within one callback
                    ok = self._wait(lambda: reflex.done, self.params.state_timeout)
        finally:
            with self._cond:
                if self._reflex is reflex:
                    self._reflex = None
        if not ok:
            self._count_state_timeout()
            return None
        if reflex.error is not None:
            raise reflex.error
        return reflex.state, reflex.obs, reflex.action, reflex.reasons

    def _next_state(
        self, prev: JointSample | None, min_ns: int = 0, after_index: int = -1
    ) -> JointSample | None:
        """The state after ``prev``: the next one in lockstep, one control period on in realtime.

        Without ``prev``: the first state received after ``after_index`` stamped at or after
        ``min_ns`` (a restarted arm's clock starts again from zero).
        """
        if prev is None:
            gap = min_ns
        elif self.params.mode == "lockstep":
            gap = prev.time_ns + 1
        else:
            gap = prev.time_ns + int(0.75 * self.control_dt * 1e9)
        ok = self._wait(
            lambda: (
                self._latest is not None
                and self._latest.time_ns >= gap
                and self._latest.index > (after_index if prev is None else prev.index)
            ),
            self.params.state_timeout,
        )
        if not ok:
            self._count_state_timeout()
            return None
        return self._latest

    def _count_state_timeout(self) -> None:
        self.diag.values["state_timeouts"] = self.diag.values.get("state_timeouts", 0) + 1
        self.get_logger().warning(
            f"no joint state within {self.params.state_timeout} s", throttle_duration_sec=5.0
        )

    def _latency_values(self, v: dict[str, Any]) -> None:
        """Percentiles of the state path's latencies into the diagnostics values ``v``."""
        for key, samples in (
            ("state_transit", self._transit_s),
            ("state_dispatch", self._dispatch_s),
        ):
            if samples:
                ms = np.asarray(list(samples)) * 1e3  # list(): one atomic copy
                v[f"{key}_ms_p50"] = round(float(np.percentile(ms, 50)), 3)
                v[f"{key}_ms_p99"] = round(float(np.percentile(ms, 99)), 3)
        if self._latency_s:
            lat = np.asarray(list(self._latency_s)) * 1e3
            v["state_to_command_ms_p50"] = round(float(np.percentile(lat, 50)), 3)
            v["state_to_command_ms_p99"] = round(float(np.percentile(lat, 99)), 3)
        if self._latency_cpu_s:
            cpu = np.asarray(list(self._latency_cpu_s)) * 1e3
            v["state_to_command_cpu_ms_p50"] = round(float(np.percentile(cpu, 50)), 3)
            v["state_to_command_cpu_ms_p99"] = round(float(np.percentile(cpu, 99)), 3)
