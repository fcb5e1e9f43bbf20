"""dynamics_fitter and ilqg_explorer as real processes over real DDS, chained as in the graph.

Episodes come from real rollouts of ``NafRos/Reacher3DOFFixed-v0`` with smooth random
actions. The fitter must ignore broken episodes, publish a model after n good ones that
predicts held-out transitions far better than "nothing moves", and the explorer must turn
that model into a finite, bounded iLQG controller while dropping bad models. The episode
assembly rules themselves are tested without DDS in test_episodes.py.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from std_msgs.msg import Float64MultiArray
from support.rollouts import T, episode_arrays
from support.ros import (
    RosTestNode,
    allocate_domain,
    diagnostic_values,
    spawn_node,
    wait_rejected,
    wait_until,
)

import naf_ros.envs  # noqa: F401  (registers the reacher)
from naf_ros.core.dynamics import LinearGaussianDynamics
from naf_ros.core.joint_dynamics import joint_model_from_arrays
from naf_ros.core.lin_gauss_policy import LinearGaussianController
from naf_ros.envs.task import ReacherTask
from naf_ros.ros import qos
from naf_ros.ros.codec import encode_transition, pack_arrays, unpack_arrays
from naf_ros.ros.names import CONTROLLER_TOPIC, DIAGNOSTICS_TOPIC, MODEL_TOPIC, TRANSITIONS_TOPIC

pytestmark = pytest.mark.graph  # starts node processes over DDS

N_FIT = 5
PARAMS = {"model_based.episodes_per_fit": N_FIT, "train.seed": 2}


class Stream:
    """Sequence-numbered transitions of one producer, as the policy node sends them."""

    def __init__(self, pub, producer: int) -> None:
        self.pub, self.producer, self.seq, self.episode = pub, producer, 0, 0

    def send_episode(self, x, u, r, skip_t: int | None = None, nan_t: int | None = None) -> None:
        for t in range(len(u)):
            obs = x[t].copy()
            if t == nan_t:
                obs[0] = np.nan
            if t != skip_t:
                self.pub.publish(
                    encode_transition(
                        producer=self.producer,
                        seq=self.seq,
                        episode=self.episode,
                        t=t,
                        obs=obs,
                        action=u[t],
                        reward=float(r[t]),
                        next_obs=x[t + 1],
                        terminal=False,
                        truncated=t == len(u) - 1,
                    )
                )
            self.seq += 1
        self.episode += 1


def one_step_rmse(model: LinearGaussianDynamics, X: np.ndarray, U: np.ndarray) -> float:
    pred = np.stack([model.predict(t, X[:, t], U[:, t]) for t in range(T)], axis=1)
    return float(np.sqrt(np.mean((pred - X[:, 1:]) ** 2)))


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    lease = allocate_domain()
    logs = tmp_path_factory.mktemp("model_logs")
    fitter = spawn_node("naf_ros.ros.dynamics_fitter", lease.domain_id, logs, PARAMS)
    explorer = spawn_node("naf_ros.ros.ilqg_explorer", lease.domain_id, logs, PARAMS)
    probe = RosTestNode(lease.domain_id, name="probe_models")
    g = {
        "fitter": fitter,
        "explorer": explorer,
        "probe": probe,
        "diag": probe.collect(DiagnosticArray, DIAGNOSTICS_TOPIC, 50),
        "models": probe.collect(Float64MultiArray, MODEL_TOPIC, qos.LATCHED),
        "controllers": probe.collect(Float64MultiArray, CONTROLLER_TOPIC, qos.LATCHED),
        "pub": probe.publisher(Float64MultiArray, TRANSITIONS_TOPIC, qos.TRANSITIONS),
        "model_pub": probe.publisher(Float64MultiArray, MODEL_TOPIC, qos.LATCHED),
        "data": episode_arrays(N_FIT + 5, seed=4),
    }
    assert probe.wait_for_subscribers(g["pub"], timeout=40), fitter.output()
    # The explorer subscribes to the model topic; so does the probe itself.
    assert probe.wait_for_subscribers(g["model_pub"], 2, timeout=40), explorer.output()
    yield g
    probe.close()
    codes = {name: g[name].stop(20) for name in ("fitter", "explorer")}
    lease.release()
    assert codes == {"fitter": 0, "explorer": 0}, codes


def test_fitter_drops_broken_episodes_then_fits_a_predictive_model(graph):
    g = graph
    X, U, R = g["data"]
    bad = Stream(g["pub"], producer=1)
    bad.send_episode(X[0], U[0], R[0], skip_t=20)  # a lost step: gap + incomplete episode
    bad.send_episode(X[1], U[1], R[1], nan_t=7)  # a NaN state
    dup = encode_transition(
        producer=1,
        seq=bad.seq - 1,
        episode=1,
        t=T - 1,
        obs=X[1, T - 1],
        action=U[1, T - 1],
        reward=float(R[1, T - 1]),
        next_obs=X[1, T],
        terminal=False,
        truncated=True,
    )
    g["pub"].publish(dup)  # duplicate of the last one
    for reason in ("episode_step_missing", "non_finite", "duplicate", "episode_start_missing"):
        wait_rejected(g["diag"], "dynamics_fitter", reason, 1)
    assert len(g["models"]) == 0  # broken episodes never make up a batch

    good = Stream(g["pub"], producer=0)
    t0 = time.monotonic()
    for e in range(N_FIT):
        good.send_episode(X[e], U[e], R[e])
    assert g["models"].wait_for(1, 20), g["fitter"].output()[-3000:]
    latency = time.monotonic() - t0
    arrays = unpack_arrays(g["models"].last)
    assert int(arrays["version"]) == 1
    model = LinearGaussianDynamics.from_arrays(arrays)
    assert (model.horizon, model.nx, model.nu) == (T, 13, 3)
    np.testing.assert_allclose(arrays["sample_returns"], R[:N_FIT].sum(1), rtol=1e-9)

    fit_rmse = one_step_rmse(model, X[:N_FIT], U[:N_FIT])
    held_rmse = one_step_rmse(model, X[N_FIT:], U[N_FIT:])
    still_rmse = float(np.sqrt(np.mean((X[N_FIT:, 1:] - X[N_FIT:, :-1]) ** 2)))
    print(
        f"model v1 after {latency:.2f} s: one-step RMSE fitted {fit_rmse:.2e}, held-out "
        f"{held_rmse:.2e}, x'=x baseline {still_rmse:.2e} (ratio {held_rmse / still_rmse:.3f})"
    )
    assert fit_rmse < 0.05 * still_rmse
    assert held_rmse < 0.25 * still_rmse
    # model_based.linear_state 'joint' (the default): the same message carries the joint-space
    # model imagination steps; on the reacher's own physics it predicts the tip better.
    joint = joint_model_from_arrays(arrays, ReacherTask())
    assert joint is not None and (joint.horizon, joint.model.nx, joint.model.nu) == (T, 6, 3)
    tip = slice(11, 13)
    tip_err = {
        name: np.mean(
            np.abs(
                m.predict(np.arange(T), X[N_FIT:, :-1], U[N_FIT:])[..., tip] - X[N_FIT:, 1:, tip]
            )
        )
        for name, m in (("joint", joint), ("observation", model))
    }
    print("held-out one-step tip error (m)", tip_err)
    assert tip_err["joint"] < tip_err["observation"], tip_err
    vals = diagnostic_values(g["diag"], "dynamics_fitter")
    assert wait_until(
        lambda: diagnostic_values(g["diag"], "dynamics_fitter").get("model_version") == "1", 5
    ), vals
    assert g["fitter"].alive()


def test_explorer_publishes_a_bounded_controller_for_the_fitted_model(graph):
    g = graph
    assert g["controllers"].wait_for(1, 30), g["explorer"].output()[-3000:]
    arrays = unpack_arrays(g["controllers"].last)
    assert int(arrays["version"]) == 1
    ctrl = LinearGaussianController.from_arrays(arrays)
    assert (ctrl.horizon, ctrl.nx, ctrl.nu) == (T, 13, 3)
    X = g["data"][0]
    rng = np.random.default_rng(0)
    acts = np.array([ctrl.act(t, X[0, t], rng) for t in range(T)])
    assert np.isfinite(acts).all() and np.abs(acts).max() <= 1.0
    vals = diagnostic_values(g["diag"], "ilqg_explorer")
    print(f"explorer: {vals}")


def test_explorer_drops_bad_models_and_keeps_working(graph):
    g = graph
    assert g["controllers"].wait_for(1, 30)
    good = unpack_arrays(g["models"].last)
    n_ctrl = len(g["controllers"])

    nan = dict(good, version=10.0)
    nan["F"] = nan["F"].copy()
    nan["F"][3, 0, 0] = np.nan
    g["model_pub"].publish(pack_arrays(nan))
    wait_rejected(g["diag"], "ilqg_explorer", "non_finite_model", 1)

    small = {k: good[k] for k in ("F", "f", "N", "x0_mean", "x0_cov")}
    small = {
        "F": small["F"][:, :5, :8],
        "f": small["f"][:, :5],
        "N": small["N"][:, :5, :5],
        "x0_mean": small["x0_mean"][:5],
        "x0_cov": small["x0_cov"][:5, :5],
        "version": 11.0,
    }
    g["model_pub"].publish(pack_arrays(small))
    wait_rejected(g["diag"], "ilqg_explorer", "wrong_shape_model", 1)

    not_psd = dict(good, version=12.0)
    not_psd["N"] = -np.abs(good["N"])
    g["model_pub"].publish(pack_arrays(not_psd))
    wait_rejected(g["diag"], "ilqg_explorer", "invalid_model", 1)

    g["model_pub"].publish(pack_arrays(dict(good, version=1.0)))
    wait_rejected(g["diag"], "ilqg_explorer", "stale_model", 1)
    assert len(g["controllers"]) == n_ctrl and g["explorer"].alive()

    # A good model afterwards still gets its controller (from the previous one, KL-bounded).
    g["model_pub"].publish(pack_arrays(dict(good, version=13.0)))
    assert g["controllers"].wait_until(
        lambda ms: int(unpack_arrays(ms[-1])["version"]) == 13, 30
    ), g["explorer"].output()[-3000:]


# --- the fitter node in-process (its own context, no peers) ------------------------------------
def test_failed_fit_keeps_the_previous_model(tmp_path):
    """In-process node (own context, no peers): a fit that fails is counted, nothing published."""
    import rclpy
    from rclpy.context import Context

    from naf_ros.core.episodes import Episode
    from naf_ros.ros.dynamics_fitter import DynamicsFitterNode

    X, U, R = episode_arrays(N_FIT, seed=5)
    ctx, lease = Context(), allocate_domain()
    rclpy.init(context=ctx, domain_id=lease.domain_id)
    try:
        node = DynamicsFitterNode(context=ctx)

        def batch(x):
            return [Episode(0, e, x[e], U[e], R[e], np.zeros(T), False) for e in range(N_FIT)]

        fitter = node.fit_step.fitter
        assert node.publish(fitter.fit(batch(X))) and node.version == 1
        broken = X.copy()
        broken[2, 10, 4] = np.inf  # cannot come off the wire, but the fit must not trust that
        outcome = fitter.fit(batch(broken))
        assert not outcome.ok and not node.publish(outcome)
        assert node.version == 1 and node.fit_step.batch == []
        assert dict(fitter.failures) == {"DynamicsFitError": 1}
        node._refresh_diagnostics()
        assert node.diag.values["fit_failures/DynamicsFitError"] == 1
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)
        lease.release()


def test_idle_model_nodes_stop_on_sigint_without_writing(tmp_path):
    """Stopped before any input, the fitter and the explorer exit 0 at once: nothing arrived,
    so nothing is saved (a shutdown save imported torch and took seconds: launch escalated
    SIGINT to SIGTERM). With input they do save (checked by the resume tests)."""
    lease = allocate_domain()
    run_dir = tmp_path / "run"
    params = {**PARAMS, "persist": True, "train.run_dir": str(run_dir)}
    try:
        procs = [
            spawn_node(module, lease.domain_id, tmp_path / "logs", params)
            for module in ("naf_ros.ros.dynamics_fitter", "naf_ros.ros.ilqg_explorer")
        ]
        ready = ("fitting T=", "explorer ready")
        for p in procs:  # each logs its start-up line once it spins
            assert wait_until(lambda p=p: any(r in p.output() for r in ready), 60), p.output()
        for p in procs:
            assert p.stop(20) == 0, p.output()[-2000:]
        assert not run_dir.exists() or not any(run_dir.glob("*_checkpoint.pt")), list(
            run_dir.iterdir()
        )
    finally:
        lease.release()
