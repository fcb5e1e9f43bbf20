"""Algorithm 2's configurable choices, each against an independent oracle.

- ``model_based.imagination_noise: exploration``: imagined actions follow the configured
  exploration process per rollout (OU: the closed-form variance and lag-1 correlation of
  n_{k+1} = (1 - theta) n_k + e_k; precision: covariance c P^-1 with P = L L^T inverted here
  by numpy), while the default stays i.i.d. Gaussian;
- ``model_based.imagination_model_age``: R_f keeps only the rollouts of the last k models;
- ``model_based.prior``: the per-step-centred prior is selectable;
- a failed fit leaves B_old with the model it was fitted around.
"""

from __future__ import annotations

import numpy as np
import pytest

from naf_ros.config import config_from_dict
from naf_ros.core.dynamics import LinearGaussianDynamics
from naf_ros.core.imagination import RolloutNoise, imagine
from naf_ros.core.learner import Learner

B, STEPS = 20_000, 6


class Still:
    """x' = x: the rollout's actions are exactly the noise (policy 0)."""

    def predict(self, t, x, u):
        return np.array(x, copy=True)


def rollout_actions(noise, act_dim=1, seed=0):
    rng = np.random.default_rng(seed)
    batch = imagine(
        Still(),
        lambda x: np.zeros((len(x), act_dim)),
        lambda x, u: np.zeros(len(x)),
        np.zeros((B, 1)),
        np.zeros(B, np.int64),
        STEPS,
        None,
        noise,
        rng,
    )
    return batch["action"].reshape(STEPS, B, act_dim)  # step-major, every rollout alive


def test_ou_rollout_noise_matches_the_closed_form_per_rollout():
    scale, theta = 0.1, 0.15
    rng = np.random.default_rng(1)
    a = rollout_actions(RolloutNoise("ou", B, 1, scale, theta, rng))[..., 0]
    rho = 1.0 - theta
    var = [scale**2 * (1 - rho ** (2 * (k + 1))) / (1 - rho**2) for k in range(STEPS)]
    for k in range(STEPS):
        assert a[k].var() == pytest.approx(var[k], rel=0.05)
    for k in range(STEPS - 1):
        corr = np.corrcoef(a[k], a[k + 1])[0, 1]
        assert corr == pytest.approx(rho * np.sqrt(var[k] / var[k + 1]), abs=0.03)
    iid = rollout_actions(scale)[..., 0]  # the default: independent steps
    assert abs(np.corrcoef(iid[2], iid[3])[0, 1]) < 0.03
    assert iid[4].var() == pytest.approx(scale**2, rel=0.05)


def test_precision_rollout_noise_has_covariance_c_p_inverse():
    lower = np.array([[2.0, 0.0], [1.5, 0.5]])
    scale = 0.05
    rng = np.random.default_rng(2)
    noise = RolloutNoise(
        "precision", B, 2, scale, 1.0, rng, lower=lambda x: np.broadcast_to(lower, (len(x), 2, 2))
    )
    first = rollout_actions(noise, act_dim=2)[0]
    p_inv = np.linalg.inv(lower @ lower.T)
    c = scale**2 / (np.trace(p_inv) / 2)
    emp = np.cov(first.T)
    assert np.linalg.norm(emp - c * p_inv) / np.linalg.norm(c * p_inv) < 0.05
    with pytest.raises(ValueError, match="L\\(x\\)"):
        RolloutNoise("precision", 3, 2, scale, 1.0, rng)


def _learner(**mb) -> Learner:
    cfg = config_from_dict({"agent": {"hidden": [8, 8]}, "model_based": {"enabled": True, **mb}})
    return Learner(cfg, 2, 1, 5, reward=lambda x, u: np.zeros(len(x)))


def _model() -> LinearGaussianDynamics:
    T = 5
    return LinearGaussianDynamics(
        F=np.tile(np.hstack([np.eye(2), np.zeros((2, 1))]), (T, 1, 1)),
        f=np.zeros((T, 2)),
        N=np.tile(1e-6 * np.eye(2), (T, 1, 1)),
        x0_mean=np.zeros(2),
        x0_cov=1e-6 * np.eye(2),
    )


def _add_rows(learner: Learner, n: int, tag: float) -> None:
    obs = np.full((n, 2), tag)
    learner.fictional.add_batch(obs, np.zeros((n, 1)), np.zeros(n), obs, np.zeros(n))


@pytest.mark.parametrize("age", [1, 2, None])
def test_fictional_buffer_keeps_the_rollouts_of_the_last_k_models(age):
    learner = _learner(imagination_model_age=age)
    learner.set_model(_model(), 1)
    _add_rows(learner, 5, 1.0)  # rollouts of model 1
    learner.set_model(_model(), 2)
    _add_rows(learner, 7, 2.0)  # rollouts of model 2
    learner.set_model(_model(), 3)
    _add_rows(learner, 3, 3.0)
    kept = sorted(set(learner.fictional.obs[: len(learner.fictional), 0].tolist()))
    expected = {1: [3.0], 2: [2.0, 3.0], None: [1.0, 2.0, 3.0]}[age]
    assert kept == expected
    assert len(learner.fictional) == {1: 3, 2: 10, None: 15}[age]
    state = learner.state_dict()  # the marks survive a checkpoint
    again = _learner(imagination_model_age=age)
    again.load_state_dict(state)
    again.set_model(_model(), 4)
    if age == 1:
        assert len(again.fictional) == 0


def test_per_step_centred_prior_is_selectable():
    from naf_ros.core.model_fit import ModelFitter
    from naf_ros.envs.task import ReacherTask

    task = ReacherTask()
    for choice, centred in (("pooled", False), ("per_step_centred", True)):
        cfg = config_from_dict({"model_based": {"enabled": True, "prior": choice}})
        fitter = ModelFitter(cfg, task, task.obs_dim, task.act_dim)
        assert fitter.prior.center_per_step is centred
        assert fitter.joint_prior.center_per_step is centred
        assert fitter.prior.mean_strength == (0.0 if centred else 1.0)


def test_a_failed_fit_leaves_b_old_with_its_model(tmp_path, monkeypatch):
    from naf_ros.core import model_fit
    from naf_ros.core.dynamics import DynamicsFitError
    from naf_ros.core.trainer import Trainer

    cfg = config_from_dict(
        {
            "env": {"id": "NafRos/Reacher3DOFFixed-v0"},
            "agent": {"hidden": [8, 8], "warmup_steps": 50, "batch_size": 8},
            "model_based": {"enabled": True, "episodes_per_fit": 2},
            "train": {"progress": False},
        }
    )
    trainer = Trainer(cfg, run_dir=tmp_path, log=None)
    for _ in range(2):
        trainer.run_episode()
    learner = trainer.learner
    b_old = [s.copy() for s in learner.B_old]
    assert len(b_old) == 2 and learner.model_version == 1

    def broken(*args, **kwargs):
        raise DynamicsFitError("singular")

    monkeypatch.setattr(model_fit, "fit_linear_gaussian", broken)
    for _ in range(2):
        trainer.run_episode()
    assert trainer.model_based.fit_step.fitter.failures == {"DynamicsFitError": 1}
    assert learner.model_version == 1 and len(learner.B_old) == 2
    assert all(np.array_equal(a, b) for a, b in zip(learner.B_old, b_old))
