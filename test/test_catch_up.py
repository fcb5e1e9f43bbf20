"""The realtime catch-up rule (``catch_up_ratio``), ROS-free: when a policy may start its next
training episode, the learner's run-long updates per transition that it reads, and how that
figure reaches the policy in ``/naf/learner_progress``."""

from __future__ import annotations

import numpy as np
import pytest

from naf_ros.core.accounting import UpdateRatio
from naf_ros.core.catch_up import CatchUp
from naf_ros.core.delivery import Producer
from naf_ros.ros.codec import pack_arrays
from naf_ros.ros.policy.parameters import POLICY_PARAMS
from naf_ros.ros.policy.transitions import TransitionsOut


def test_off_never_holds_an_episode():
    rule = CatchUp(0.0, 10.0)
    assert not rule.enabled
    assert rule.caught_up(0.0, 5.0)


def test_holds_until_the_learner_reaches_the_fraction_of_its_target():
    rule = CatchUp(0.9, 10.0)
    assert not rule.caught_up(4.49, 5.0)
    assert rule.caught_up(4.5, 5.0)
    assert rule.caught_up(6.0, 5.0)
    # a figure from before the learner had our last transitions does not count
    assert not rule.caught_up(6.0, 5.0, unseen=3) and rule.caught_up(6.0, 5.0, unseen=0)
    # imagination raises the target the learner reports (I + I*l): the rule follows it
    assert not rule.caught_up(12.0, 15.0) and rule.caught_up(13.5, 15.0)


def test_nothing_to_catch_up_with_before_the_learner_reports_this_arm():
    rule = CatchUp(1.0, 10.0)
    assert rule.caught_up(None, None)  # not warm yet (no update due) or never heard of us
    assert rule.caught_up(0.0, 0.0)


@pytest.mark.parametrize("ratio, wait", [(-0.1, 1.0), (1.5, 1.0), (0.5, 0.0)])
def test_bad_settings_are_refused(ratio, wait):
    with pytest.raises(ValueError):
        CatchUp(ratio, wait)


def test_parameters_are_declared_once_with_their_checks():
    params = {p.name: p for p in POLICY_PARAMS}
    ratio, timeout = params["catch_up_ratio"], params["catch_up_timeout"]
    assert ratio.default == 0.0  # off unless asked for
    for p in (ratio, timeout):
        assert p.check.ok(p.default)
    assert ratio.check.ok(1.0) and not ratio.check.ok(1.01) and not ratio.check.ok(-0.1)


def test_run_totals_rise_while_the_arm_rests():
    """The figure the policy waits on moves without new transitions (take()'s does not)."""
    r = UpdateRatio()
    r.record({0: 10}, updates=20, target=5)
    assert r.run_totals() == {0: (2.0, 5.0), UpdateRatio.ALL: (2.0, 5.0)}
    r.take()
    for _ in range(5):  # the arm waits; the realtime learner keeps updating
        r.record({}, updates=5, target=5)
    assert r.run_totals()[0] == (4.5, 5.0)
    assert CatchUp(0.9, 10.0).caught_up(*r.run_totals()[0])
    # transitions added but not learned from yet lower the figure at once
    ratio, _ = r.run_totals({0: 5})[0]
    assert ratio == pytest.approx(45 / 15) and r.run_totals({0: 5})[UpdateRatio.ALL][0] == ratio


class _Diag:
    def __init__(self) -> None:
        self.rejected: list[str] = []

    def reject(self, reason: str, detail: str = "") -> None:
        self.rejected.append(reason)


def _out(arm: int) -> tuple[TransitionsOut, _Diag]:
    diag = _Diag()
    out = TransitionsOut(
        Producer(100, 5.0, 10, lambda _m: None), arm, ["learner"], list, diag, None
    )
    return out, diag


def _progress(**extra) -> object:
    fields = {
        "producers": np.array([0.0, 1.0]),
        "last_seq": np.array([3.0, 7.0]),
        "durable_seq": np.array([-1.0, -1.0]),
        "last_episode": np.array([0.0, 0.0]),
        "updates": 40.0,
        "transitions": 12.0,
        "learner_id": 123.0,
        **extra,
    }
    return pack_arrays(fields)


def test_progress_carries_this_arms_run_figure():
    out, diag = _out(arm=1)
    assert out.learner_ratio == (None, None, -1)
    msg = _progress(run_ratio=np.array([4.0, 2.5]), run_target=np.array([5.0, 5.0]))
    assert out.on_progress(msg) and not diag.rejected
    assert out.learner_ratio == (2.5, 5.0, 7)
    # -1: the learner has no figure for the arm yet (not warm)
    out.on_progress(_progress(run_ratio=np.array([4.0, -1.0]), run_target=np.array([5.0, -1.0])))
    assert out.learner_ratio[:2] == (None, None)


def test_progress_of_an_older_learner_without_the_figure_still_acknowledges():
    out, diag = _out(arm=0)
    assert out.on_progress(_progress()) and not diag.rejected
    assert out.learner_ratio[:2] == (None, None)
