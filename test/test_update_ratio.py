"""Updates per real transition as the learner node reports them (``UpdateRatio``): lockstep
gives the configured I exactly; realtime shares each learn() call's updates among the
transitions it followed, per producer, so a learner falling behind the arms shows."""

from __future__ import annotations

import pytest

from naf_ros.core.accounting import UpdateRatio
from naf_ros.ros.names import LEARNER_METRICS, metric_topic, producer_metric_topic

ALL = UpdateRatio.ALL


def test_metric_names():
    assert "updates_per_transition" in LEARNER_METRICS
    assert metric_topic("updates_per_transition") == "/naf/metrics/updates_per_transition"
    assert (
        producer_metric_topic("updates_per_transition", 3)
        == "/naf/metrics/updates_per_transition/producer_3"
    )


def test_lockstep_gives_the_target_per_producer_and_overall():
    r = UpdateRatio()
    for i in range(10):
        r.record({i % 2: 1}, updates=5, target=5)
    ratios, target = r.take()
    assert ratios == {0: 5.0, 1: 5.0, ALL: 5.0} and target == 5.0
    assert r.take() == ({}, None)  # nothing new


def test_realtime_batches_share_updates_and_a_slow_learner_shows():
    r = UpdateRatio()
    # the learner fell behind: 8 transitions (6 from arm 0, 2 from arm 1) per 15+5 updates
    r.record({0: 6, 1: 2}, updates=20, target=20)
    ratios, target = r.take()
    assert ratios[ALL] == pytest.approx(2.5) and target == 20
    assert ratios[0] == pytest.approx(2.5) and ratios[1] == pytest.approx(2.5)


def test_updates_without_new_transitions_credit_the_last_producers():
    r = UpdateRatio()
    r.record({1: 2}, updates=5, target=5)
    r.record({}, updates=5, target=5)  # realtime: the learner is ahead, keeps updating
    r.record({}, updates=5, target=5)
    ratios, _ = r.take()
    assert ratios == {1: 7.5, ALL: 7.5}
    # credit without transitions waits for the next window that has some
    r.record({}, updates=4, target=5)
    assert r.take() == ({}, None)
    r.record({1: 1, 0: 1}, updates=6, target=5)
    ratios, target = r.take()
    assert ratios[ALL] == pytest.approx(5.0) and ratios[1] == pytest.approx(7.0)
    assert ratios[0] == pytest.approx(3.0) and target == 5.0


def test_imagination_raises_the_target():
    r = UpdateRatio()
    r.record({0: 1}, updates=5, target=5)
    r.record({0: 1}, updates=55, target=55)  # I + I·l once a model and R_f are there
    ratios, target = r.take()
    assert ratios[ALL] == pytest.approx(30.0) and target == pytest.approx(30.0)


def test_nothing_recorded_before_any_transition():
    r = UpdateRatio()
    r.record({}, updates=5, target=5)  # resumed warm R, no producer yet
    assert r.take() == ({}, None)
