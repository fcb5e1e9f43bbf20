"""The benchmark's version of the paper's Table 1 measure (episodes to within 5% of best)."""

from __future__ import annotations

import numpy as np

from naf_ros.bench.common import aggregate, mark_threshold


def _run(label: str, seed: int, curve: list[float]) -> dict:
    return {
        "label": label, "seed": seed,
        "eval_curve": {"episode": [10 * (i + 1) for i in range(len(curve))], "return": curve},
        "final_eval_return": curve[-1], "best_eval_return": max(curve),
        "final_eval_tip_distance": 0.01, "episodes_to_within_5pct": None, "env_steps": 500,
        "updates_per_s": 100.0, "wall_s": 1.0,
    }  # fmt: skip


def test_threshold_comes_from_the_best_seed_averaged_curve():
    # Seeds peak at different evaluations: the mean of per-seed bests (-2.0) is a level the
    # averaged curve never reaches; the best averaged return is -2.5 (A, at episode 30).
    results = [
        _run("A", 0, [-10.0, -4.0, -3.0, -2.0]),
        _run("A", 1, [-10.0, -4.0, -2.0, -3.0]),
        _run("B", 0, [-10.0, -8.0, -6.0, -4.0]),
        _run("B", 1, [-10.0, -6.0, -4.0, -2.8]),
    ]
    variants = aggregate(results)
    assert variants["A"]["best_eval_return"] == -2.0
    assert variants["A"]["best_mean_eval_return"] == -2.5
    mark_threshold(variants)
    assert np.isclose(variants["A"]["threshold"], -2.5 - 0.125)
    assert variants["A"]["episodes_to_threshold"] == 30
    assert variants["B"]["episodes_to_threshold"] is None  # B's best mean is -3.4


def test_episodes_to_tip_tolerance_counts_only_a_lasting_arrival():
    # Seed-mean tip distances 0.05, 0.015, 0.03, 0.018, 0.01: the first dip below 2 cm (at
    # episode 20) does not last; from episode 40 on the mean stays below, so 40 is the answer.
    results = []
    for seed, tips in enumerate(([0.06, 0.01, 0.04, 0.016, 0.01], [0.04, 0.02, 0.02, 0.02, 0.01])):
        run = _run("A", seed, [-5.0, -4.0, -3.0, -2.5, -2.4])
        run["eval_curve"]["tip_distance"] = tips
        results.append(run)
    variants = aggregate(results)
    assert np.allclose(variants["A"]["mean_eval_tip_distance_m"], [0.05, 0.015, 0.03, 0.018, 0.01])
    assert variants["A"]["episodes_to_tip_tolerance"] == 40
    # Without tip distances (Gymnasium tasks) there is no such episode.
    assert aggregate([_run("B", 0, [-3.0, -2.0])])["B"]["episodes_to_tip_tolerance"] is None
