"""The e-stop topic's rules: ``true`` zeroes the effort now and latches; ``false`` releases.

The latch itself is the safety envelope's (:meth:`SafetyEnvelope.engage_estop`), so every
later command is zero until the release; this module adds what the topic promises on top:
the zero command goes out at once (not with the next step), under the command lock so it
can never be overtaken by a command computed just before, and the engagement shows on the
log and on ``/diagnostics`` until the release. The episode worker sees the latch and aborts
the episode; it starts no new one before the release.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from diagnostic_msgs.msg import DiagnosticStatus

from naf_ros.core.safety import SafetyEnvelope
from naf_ros.ros.diagnostics import Diagnostics


class Estop:
    """Handles ``estop`` messages for one arm (owned by the policy node).

    ``publish_zero`` publishes zero effort without taking ``cmd_lock`` (this class holds it);
    ``notify`` wakes the episode worker, which waits on the latch.
    """

    def __init__(
        self,
        envelope: SafetyEnvelope,
        cmd_lock: threading.Lock,
        publish_zero: Callable[[], None],
        diag: Diagnostics,
        logger: Any,
        notify: Callable[[], None],
    ) -> None:
        self.envelope = envelope
        self.cmd_lock = cmd_lock
        self.publish_zero = publish_zero
        self.diag = diag
        self.logger = logger
        self.notify = notify

    def on_message(self, engage: bool) -> None:
        """``True``: zero effort now and latch it; ``False``: release a latched e-stop."""
        if engage:
            with self.cmd_lock:
                engaged = not self.envelope.estopped
                self.envelope.engage_estop("estop topic")
                self.publish_zero()
            if engaged:
                self.logger.warning("e-stop: zero effort; waiting for estop=false")
            self.diag.problem("estop", DiagnosticStatus.WARN, "e-stop engaged")
        elif self.envelope.estopped:
            with self.cmd_lock:
                self.envelope.release_estop()
            self.diag.clear("estop")
            self.logger.info("e-stop released")
        self.diag.values.update(self.envelope.diagnostics())
        self.notify()
