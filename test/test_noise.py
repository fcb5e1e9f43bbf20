"""Exploration noise against closed forms: OU statistics and the N(0, c P^-1) precision noise."""

import numpy as np
import pytest

from naf_ros.core.noise import ExplorationNoise, PrecisionNoise, make_noise


def test_ou_stationary_variance_and_autocorrelation():
    theta, scale, n = 0.15, 0.3, 200_000
    noise = ExplorationNoise(2, scale, theta, np.random.default_rng(0))
    xs = np.array([noise.sample() for _ in range(n)])[2000:]
    var_expected = scale**2 / (2 * theta - theta**2)
    assert xs.var(axis=0) == pytest.approx([var_expected] * 2, rel=0.05)
    assert noise.stationary_std() == pytest.approx(np.sqrt(var_expected))
    for lag in (1, 5, 10):
        rho = np.mean([np.corrcoef(xs[:-lag, d], xs[lag:, d])[0, 1] for d in range(2)])
        assert rho == pytest.approx((1 - theta) ** lag, abs=0.02)


def test_gaussian_noise_is_temporally_independent():
    noise = make_noise("gaussian", 1, 0.5, 0.15, np.random.default_rng(1))
    xs = np.array([noise.sample()[0] for _ in range(50_000)])
    assert xs.std() == pytest.approx(0.5, rel=0.03)
    assert abs(np.corrcoef(xs[:-1], xs[1:])[0, 1]) < 0.02


def _random_lower(rng, n):
    lower = np.tril(rng.normal(size=(n, n)))
    lower[np.diag_indices(n)] = np.exp(rng.normal(size=n))
    return lower


def test_precision_innovations_have_covariance_c_p_inverse():
    rng = np.random.default_rng(2)
    lower = _random_lower(rng, 3)
    p = lower @ lower.T
    noise = PrecisionNoise(3, 0.3, 0.15, np.random.default_rng(3))
    samples = np.array([noise.innovation(lower) for _ in range(40_000)])
    cov = np.cov(samples.T)
    expected = noise.c * np.linalg.inv(p)  # inverse only in the test, as the reference
    assert np.allclose(cov, expected, atol=0.04 * np.abs(expected).max())
    # Adaptive scaling: mean per-dimension variance equals scale^2.
    assert np.trace(cov) / 3 == pytest.approx(0.3**2, rel=0.05)


def test_precision_scaling_is_invariant_to_the_scale_of_p():
    rng = np.random.default_rng(4)
    lower = _random_lower(rng, 2)
    stds = []
    for factor in (1.0, 30.0):
        noise = PrecisionNoise(2, 0.2, 0.15, np.random.default_rng(5))
        stds.append(np.array([noise.innovation(factor * lower) for _ in range(20_000)]).std(0))
    assert np.allclose(stds[0], stds[1], rtol=0.05)


def test_precision_noise_follows_ou_dynamics():
    lower = np.eye(2) * 2.0
    noise = PrecisionNoise(2, 0.1, 0.15, np.random.default_rng(6))
    xs = np.array([noise.sample(lower) for _ in range(50_000)])[500:]
    rho = np.corrcoef(xs[:-1, 0], xs[1:, 0])[0, 1]
    assert rho == pytest.approx(0.85, abs=0.02)


def test_precision_noise_requires_l():
    with pytest.raises(ValueError):
        PrecisionNoise(2, 0.1, 0.15, np.random.default_rng(0)).sample(None)
