"""LatestOnly: the weights loader of the realtime policy hands on the newest item only."""

from __future__ import annotations

import threading
import time

from naf_ros.ros.realtime import LatestOnly


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
