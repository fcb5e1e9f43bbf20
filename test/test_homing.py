"""Homing's completion rule without ROS: at home, still, commands delivered, else a timeout."""

from __future__ import annotations

import math

import numpy as np

from naf_ros.core.homing import HOME, TIMEOUT, Homing

RULE = Homing(np.zeros(3), kp=2.0, kd=0.3, tolerance=0.05, velocity_tolerance=0.05, timeout=5.0)
STILL = np.zeros(3)


def test_done_only_at_home_still_and_delivered():
    near = np.array([0.04, -0.04, 0.0])
    assert RULE.verdict(near, STILL, 1.0, delivered=True) == HOME
    assert RULE.verdict(near, STILL, 1.0, delivered=False) is None  # nobody may be listening
    assert RULE.verdict(near, np.array([0.0, 0.1, 0.0]), 1.0, True) is None  # passing through
    assert RULE.verdict(np.array([0.0, 0.0, 0.06]), STILL, 1.0, True) is None  # one joint off


def test_timeout_unless_home_at_that_moment():
    far = np.array([0.5, 0.0, 0.0])
    assert RULE.verdict(far, STILL, 4.99, True) is None
    assert RULE.verdict(far, STILL, 5.0, True) == TIMEOUT
    assert RULE.verdict(STILL, STILL, 5.0, False) == TIMEOUT  # never delivered: fails too
    assert RULE.verdict(STILL, STILL, 9.0, True) == HOME


def test_error_wraps_and_pd_pushes_home():
    q = np.array([math.pi - 0.1, -(math.pi - 0.1), 0.2])
    home = Homing(np.array([-(math.pi - 0.1), math.pi - 0.1, 0.0]), 2.0, 0.3, 0.05, 0.05, 5.0)
    assert np.allclose(home.error(q), [0.2, -0.2, -0.2])  # the short way round
    assert home.at_home(np.array([math.pi - 0.08, -(math.pi - 0.08), 0.0]) * -1, STILL)
    effort = RULE.effort(np.array([0.3, -0.3, 0.0]), np.array([0.0, 0.0, 1.0]))
    assert np.allclose(effort, [-0.6, 0.6, -0.3])


def test_pd_brings_a_damped_joint_home_before_the_timeout():
    """The fake arm of test_real_arm.py: qdd = (u - b qd) / I, 100 Hz, commands at 50 Hz."""
    q, qd, u = np.array([0.6, -0.5, 0.4]), np.zeros(3), np.zeros(3)
    t, verdict = 0.0, None
    for k in range(1000):
        if k % 2 == 0:
            verdict = RULE.verdict(q, qd, t, delivered=k > 0)
            if verdict is not None:
                break
            u = RULE.effort(q, qd)
        qd = qd + (u - 0.05 * qd) / 0.02 * 0.01
        q = q + qd * 0.01
        t += 0.01
    assert verdict == HOME and t < 2.0, (verdict, t)
