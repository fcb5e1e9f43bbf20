"""The graph benchmark's ``scaling`` part without a graph: the window it times and the
figures it takes from the learner's progress messages."""

from __future__ import annotations

import numpy as np
import pytest

from naf_ros.bench.graph.harness import build_parser, complete
from naf_ros.bench.graph.scaling import CONFIGS, progress_row, window_figures
from naf_ros.ros.codec import pack_arrays


def _row(transitions: float, updates: float, per_arm=None) -> dict:
    return {"transitions": transitions, "updates": updates, "per_arm": per_arm or {}}


def test_window_starts_when_warm_and_lasts_the_given_seconds():
    s = 1_000_000_000
    rows = [
        (0 * s, _row(100, 0)),
        (1 * s, _row(500, 100)),  # warm here
        (5 * s, _row(700, 900)),
        (11 * s, _row(800, 1500, {0: (4.0, 5.0), 1: (3.0, 5.0)})),
    ]
    assert window_figures(rows, warm=500, seconds=30) is None  # not over yet
    f = window_figures(rows, warm=500, seconds=10)
    assert f["seconds"] == 10 and f["transitions"] == 300 and f["updates"] == 1400
    assert f["updates_per_transition"] == pytest.approx(1400 / 300)
    assert f["target"] == 5.0
    assert f["per_arm_run"]["1"] == {"updates_per_transition": 3.0, "target": 5.0}
    assert window_figures(rows, warm=10_000, seconds=1) is None


def test_progress_row_reads_the_learner_run_figures():
    msg = pack_arrays(
        {
            "producers": np.array([0.0, 1.0]),
            "last_seq": np.array([9.0, 9.0]),
            "run_ratio": np.array([4.5, -1.0]),  # arm 1: no figure yet
            "run_target": np.array([5.0, -1.0]),
            "updates": 50.0,
            "transitions": 20.0,
        }
    )
    row = progress_row(msg)
    assert row == {"transitions": 20.0, "updates": 50.0, "per_arm": {0: (4.5, 5.0)}}


def test_options_and_configs():
    args = complete(build_parser().parse_args(["--parts", "scaling"]))
    assert args.scaling_arms == [1, 2, 4, 8] and set(args.scaling_configs) == set(CONFIGS)
    assert CONFIGS["imagination"]["model_based.enabled"] is True
