"""The policy's sim/reset call without DDS: lost requests are re-sent, only the newest answer
counts, and without any answer the call gives up after reset_timeout.

Why these rules: scripts/stress_bridge_respawn.py (issue #15) showed that after a bridge
respawn about one reset request in three is lost without an error; waiting out
reset_timeout for it stalled the graph. The graph side is test_fault_injection.py.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
from rclpy.task import Future
from std_srvs.srv import Trigger

from naf_ros.ros.policy import episodes
from naf_ros.ros.policy.episodes import EpisodeWorker


class FakeClient:
    """A client whose requests the test answers (or loses) by index."""

    def __init__(self) -> None:
        self.futures: list[Future] = []
        self.removed: list[Future] = []

    def call_async(self, request: Trigger.Request) -> Future:
        future = Future()
        self.futures.append(future)
        return future

    def remove_pending_request(self, future: Future) -> None:
        self.removed.append(future)


class Worker(EpisodeWorker):
    """Just what ``_call_reset`` uses from the node."""

    def __init__(self, reset_timeout: float) -> None:
        self._init_worker()
        self._cond = threading.Condition()
        self.params = SimpleNamespace(reset_timeout=reset_timeout)
        self.reset_client = FakeClient()


def answer(future: Future, message: str) -> None:
    resp = Trigger.Response()
    resp.success, resp.message = True, message
    future.set_result(resp)


@pytest.fixture(autouse=True)
def fast_resend(monkeypatch):
    monkeypatch.setattr(episodes, "RESET_RESEND_S", 0.05)


def test_a_lost_request_is_sent_again_and_the_newest_answer_counts():
    w = Worker(reset_timeout=5.0)
    client = w.reset_client

    def bridge() -> None:  # loses the first request, answers the next ones late, in order
        while len(client.futures) < 3:
            time.sleep(0.005)
        answer(client.futures[1], "stamp_ns=1")  # an older request's answer: ignored
        answer(client.futures[2], "stamp_ns=2")

    thread = threading.Thread(target=bridge)
    thread.start()
    t0 = time.monotonic()
    resp = w._call_reset()
    thread.join()
    assert resp is not None and resp.message == "stamp_ns=2"
    assert time.monotonic() - t0 < 1.0  # not reset_timeout
    assert client.removed == client.futures[:2]  # the superseded requests


def test_no_answer_at_all_returns_none_after_reset_timeout():
    w = Worker(reset_timeout=0.3)
    t0 = time.monotonic()
    assert w._call_reset() is None
    assert 0.3 <= time.monotonic() - t0 < 1.0
    assert len(w.reset_client.futures) >= 3  # re-sent meanwhile
    assert w.reset_client.removed == w.reset_client.futures  # none left pending
