"""The embedded launcher's run loop (``naf_ros.bringup.launcher.Launch.run``).

Over DDS because ``run`` always starts its progress printer, an rclpy node; the children here
are stand-in processes, so no learning node starts. What the launcher builds (and how it
agrees with the launch file) is tested statically in test_launch_static.py.
"""

from __future__ import annotations

import sys

import pytest
from support.ros import allocate_domain

from naf_ros.bringup import launcher

pytestmark = pytest.mark.graph  # starts an rclpy participant (the progress printer)


def test_respawn_restarts_a_crashing_node_up_to_the_limit(tmp_path, capsys):
    """--respawn: a node that keeps dying is restarted --max-restarts times, then reported."""
    with allocate_domain() as domain:
        args = launcher.build_parser().parse_args(
            ["--run-dir", str(tmp_path), "--domain-id", str(domain), "--respawn",
             "--max-restarts", "2", "--quiet"]
        )  # fmt: skip
        launch = launcher.Launch(args)
        crash = [sys.executable, "-c", "import sys; sys.exit(3)"]
        finish = [sys.executable, "-c", "import time; time.sleep(3.0)"]
        for child in launch.children:
            child.args = finish if child.node == "naf_policy" else crash
        launch.children = [c for c in launch.children if c.node in ("naf_policy", "sim_bridge")]
        code = launch.run()
    out = capsys.readouterr()
    bridge = next(c for c in launch.children if c.node == "sim_bridge")
    assert bridge.restarts == 2
    assert "restart 2/2" in out.out
    assert code == 1 and "sim_bridge exited with 3" in out.err
