"""The realtime helpers of :mod:`naf_ros.ros.realtime` without DDS.

``LatestOnly``: the weights loader of the realtime policy hands on the newest item only.
``parse_cpu_list``: the ``cpu_affinity`` parameter's syntax (pinning itself, which needs a
node process, is tested in test_cpu_affinity.py).
"""

from __future__ import annotations

import threading
import time

import pytest

from naf_ros.config import ConfigError
from naf_ros.ros.realtime import LatestOnly, parse_cpu_list


def test_newest_item_wins_and_older_ones_are_counted_as_superseded():
    gate = threading.Event()
    seen: list[int] = []

    def handle(item: int) -> None:
        gate.wait(10.0)  # the first item blocks the thread while more arrive
        seen.append(item)

    worker = LatestOnly("test", handle)
    try:
        worker.submit(0)
        deadline = time.monotonic() + 5.0
        while worker._pending and time.monotonic() < deadline:  # 0 taken by the thread
            time.sleep(0.01)
        for i in range(1, 6):
            worker.submit(i)
        gate.set()
        deadline = time.monotonic() + 5.0
        while worker.handled < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen == [0, 5]
        assert worker.superseded == 4 and worker.handled == 2
    finally:
        worker.close()
    assert not worker._thread.is_alive()


@pytest.mark.parametrize(
    "text, cpus",
    [("", set()), ("1", {1}), ("0,2", {0, 2}), ("0-3", {0, 1, 2, 3}), (" 1 , 3-4 ", {1, 3, 4})],
)
def test_parse_cpu_list(text, cpus):
    assert parse_cpu_list(text) == cpus


@pytest.mark.parametrize("text", ["a", "1-", "3-1", "-1", "1.5", "0;1"])
def test_parse_cpu_list_refuses_junk(text):
    with pytest.raises(ConfigError, match="cpu_affinity"):
        parse_cpu_list(text)
