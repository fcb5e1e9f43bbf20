"""``cpu_affinity``: every thread of a node process (DDS ones included) stays on its CPUs.

The parsing of the CPU list is tested without DDS in test_realtime.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from support.ros import allocate_domain, spawn_node, wait_until

pytestmark = pytest.mark.graph  # starts node processes over DDS


def _allowed(pid: int) -> dict[str, str]:
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except OSError:
            continue
        line = next(x for x in status.splitlines() if x.startswith("Cpus_allowed_list:"))
        out[tid] = line.split(":", 1)[1].strip()
    return out


def test_node_threads_are_pinned_and_a_bad_list_is_a_config_error(tmp_path):
    cpu = max(os.sched_getaffinity(0))
    with allocate_domain() as domain:
        node = spawn_node(
            "naf_ros.ros.dynamics_fitter", domain, tmp_path, {"cpu_affinity": str(cpu)}
        )
        try:
            assert wait_until(lambda: "pinned" in node.output(), 60.0), node.output()
            threads = _allowed(node.pid)
            assert len(threads) > 1  # the DDS threads, not only the main one
            assert set(threads.values()) == {str(cpu)}, threads
        finally:
            node.stop()
        bad = spawn_node(
            "naf_ros.ros.dynamics_fitter", domain, tmp_path, {"cpu_affinity": "9999"}, name="bad"
        )
        assert bad.proc.wait(60) == 2
        lines = [x for x in bad.output().splitlines() if "cpu_affinity" in x]
        assert lines and "outside" in lines[0], bad.output()
