"""A real arm's reset (``reset_mode: homing``): towards ``home_position`` until it is there.

The rule for "there" is :class:`~naf_ros.core.homing.Homing` (within ``homing_tolerance``
rad and slower than ``homing_velocity_tolerance`` rad/s, every joint, and a homing command
acknowledged by a subscribed driver); this module drives it with joint states and commands.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.duration import Duration
from rclpy.publisher import Publisher

from naf_ros.core.homing import HOME, TIMEOUT, Homing
from naf_ros.core.safety import SafetyEnvelope
from naf_ros.ros.diagnostics import Diagnostics
from naf_ros.ros.policy.reflex import JointSample

HOMING_RETRY_PAUSE_S = 1.0  # zero effort between a failed homing and the next attempt
NO_WAIT = Duration(seconds=0)


class HomingReset:
    """Homing as the episode reset, owned by :class:`~naf_ros.ros.policy.node.NafPolicy`.

    It drives ``rule`` with what the node passes: the command publisher (is a driver
    subscribed, has it acknowledged?), the envelope (e-stop), ``publish_effort`` (a command
    through the envelope), ``send_zero``, and the worker's ``wait`` (raises Stopped on
    shutdown) and ``next_state`` (the joint state after a given one). ``hold`` (effort with
    gravity compensation: the model's G(q)) is added to the PD effort: without it a
    gravity-loaded arm sags until the PD's error carries its weight and never gets home.
    """

    def __init__(
        self,
        rule: Homing,
        cmd_pub: Publisher,
        envelope: SafetyEnvelope,
        diag: Diagnostics,
        logger: Any,
        publish_effort: Callable[[np.ndarray, JointSample], Any],
        send_zero: Callable[[], None],
        wait: Callable[[Callable[[], bool], float], bool],
        next_state: Callable[[JointSample | None], JointSample | None],
        hold: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        self.rule = rule
        self.hold = hold
        self.cmd_pub = cmd_pub
        self.envelope = envelope
        self.diag = diag
        self.logger = logger
        self.publish_effort = publish_effort
        self.send_zero = send_zero
        self.wait = wait
        self.next_state = next_state

    def home(self) -> JointSample | None:
        """Drive the arm home; returns the first state after arriving, else None.

        No episode starts before homing succeeded: it needs a driver subscribed to the
        commands (else it waits up to ``homing_timeout`` s and returns None) and one of its
        commands acknowledged. After ``homing_timeout`` s without arriving it fails: zero
        effort, an error on the log and on ``/diagnostics`` (level ERROR, until a later
        homing succeeds), ``homing_failures`` counted; the arm then rests at zero effort for
        ``HOMING_RETRY_PAUSE_S`` and the worker **retries the homing** (it never starts the
        episode from wherever the arm is). An e-stop during homing ends it with zero effort
        (the e-stop latch then holds the next episode).
        """
        rule, timeout = self.rule, self.rule.timeout
        if not self.wait(lambda: self.cmd_pub.get_subscription_count() > 0, timeout):
            self.logger.warning(
                f"homing: no driver subscribes to {self.cmd_pub.topic_name} within {timeout} s",
                throttle_duration_sec=10.0,
            )
            return None
        t0 = time.monotonic()
        state = self.next_state(None)
        sent = delivered = False
        while state is not None:
            if self.envelope.estopped:
                self.send_zero()
                return None
            # The previous command had a control period to arrive: has the driver got it?
            delivered = delivered or (
                sent
                and self.cmd_pub.get_subscription_count() > 0
                and self.cmd_pub.wait_for_all_acked(NO_WAIT)
            )
            verdict = rule.verdict(state.q, state.qd, time.monotonic() - t0, delivered)
            if verdict == HOME:
                break
            if verdict == TIMEOUT:
                self._failed(state, delivered)
                return None
            command = rule.command(state.q, state.qd)
            if self.hold is not None:
                command = command + self.hold(state.q)
            self.publish_effort(command, state)
            sent = True
            state = self.next_state(state)
        self.send_zero()
        if state is None:
            return None
        self.diag.clear("homing")
        self.diag.values["homing_s"] = round(time.monotonic() - t0, 3)
        return self.next_state(state)

    def _failed(self, state: JointSample, delivered: bool) -> None:
        """Zero effort, report, and rest before the worker retries (raises Stopped on stop)."""
        self.send_zero()
        error = float(np.max(np.abs(self.rule.error(state.q))))
        speed = float(np.max(np.abs(state.qd)))
        message = (
            f"homing failed: not at home_position within {self.rule.timeout} s "
            f"(max joint error {error:.3f} rad, speed {speed:.3f} rad/s"
            f"{'' if delivered else ', no command acknowledged by a driver'}); zero effort, "
            f"retrying in {HOMING_RETRY_PAUSE_S} s"
        )
        self.logger.error(message)
        self.diag.problem("homing", DiagnosticStatus.ERROR, message)
        self.diag.values["homing_failures"] = self.diag.values.get("homing_failures", 0) + 1
        self.wait(lambda: False, HOMING_RETRY_PAUSE_S)
