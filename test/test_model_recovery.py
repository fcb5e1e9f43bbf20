"""dynamics_fitter and ilqg_explorer recover their state after SIGKILL and a corrupt checkpoint.

Real processes with ``persist`` on and a run folder of their own. After a first fit and
iLQG step both are SIGKILLed and started again: they must come back with the same model
and controller (re-published, latched, bit for bit), the same KL step and eta, and carry on
from there (model version 2, not 1 again; the prior keeps its history). Then the fitter's
newest checkpoint is corrupted on disk: the next start reports it in one line, sets it
aside, and resumes from ``.prev``.
"""

from __future__ import annotations

import signal

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from std_msgs.msg import Float64MultiArray
from support.rollouts import episode_arrays
from support.ros import RosTestNode, allocate_domain, diagnostic_values, spawn_node, wait_until

import naf_ros.envs  # noqa: F401  (registers the reacher)
from naf_ros.core.checkpoint import load_checkpoint
from naf_ros.ros import qos
from naf_ros.ros.codec import encode_transition, unpack_arrays
from naf_ros.ros.names import CONTROLLER_TOPIC, DIAGNOSTICS_TOPIC, MODEL_TOPIC, TRANSITIONS_TOPIC

pytestmark = pytest.mark.graph  # starts node processes over DDS

ENV_ID = "NafRos/Reacher3DOFFixed-v0"
T, N_FIT = 20, 3


def episodes(n: int, seed: int):
    return episode_arrays(n, seed, horizon=T)


class Producer:
    """One producer's transitions, as the policy sends them (iLQG-labelled episodes)."""

    def __init__(self, pub) -> None:
        self.pub, self.seq, self.episode = pub, 0, 0

    def send(self, X, U, R) -> None:
        for e in range(len(U)):
            for t in range(T):
                self.pub.publish(
                    encode_transition(
                        producer=0, seq=self.seq, episode=self.episode, t=t, obs=X[e, t],
                        action=U[e, t], reward=float(R[e, t]), next_obs=X[e, t + 1],
                        terminal=False, truncated=t == T - 1, controller=1.0,
                    )
                )  # fmt: skip
                self.seq += 1
            self.episode += 1


def test_fitter_and_explorer_resume_after_sigkill_and_from_prev(tmp_path):
    lease = allocate_domain()
    domain, logs, run_dir = lease.domain_id, tmp_path / "logs", tmp_path / "run"
    params = {
        "env.max_episode_steps": T,
        "model_based.episodes_per_fit": N_FIT,
        "model_based.prior_episodes": 10,
        "train.seed": 2,
        "train.run_dir": str(run_dir),
        "persist": True,
        "checkpoint_every_s": 0.0,
    }
    probe = RosTestNode(domain, name="probe_recovery")
    diag = probe.collect(DiagnosticArray, DIAGNOSTICS_TOPIC, 200)
    models = probe.collect(Float64MultiArray, MODEL_TOPIC, qos.LATCHED)
    ctrls = probe.collect(Float64MultiArray, CONTROLLER_TOPIC, qos.LATCHED)
    pub = probe.publisher(Float64MultiArray, TRANSITIONS_TOPIC, qos.TRANSITIONS)
    producer = Producer(pub)
    X, U, R = episodes(2 * N_FIT, seed=7)
    procs = []

    def start(tag: str):
        fitter = spawn_node("naf_ros.ros.dynamics_fitter", domain, logs, params, name=f"fit_{tag}")
        explorer = spawn_node("naf_ros.ros.ilqg_explorer", domain, logs, params, name=f"ilqg_{tag}")
        procs.extend([fitter, explorer])
        return fitter, explorer

    def values(node: str) -> dict:
        return diagnostic_values(diag, node)

    try:
        fitter, explorer = start("a")
        assert probe.wait_for_subscribers(pub, 1, 40), fitter.output()
        producer.send(X[:N_FIT], U[:N_FIT], R[:N_FIT])
        assert ctrls.wait_for(1, 60), explorer.output()[-3000:]
        model1, ctrl1 = unpack_arrays(models.last), unpack_arrays(ctrls.last)
        assert int(model1["version"]) == 1 and int(ctrl1["version"]) == 1
        assert wait_until(lambda: values("ilqg_explorer").get("controllers_published") == "1", 10)
        before = values("ilqg_explorer")

        # SIGKILL both: no shutdown hook runs; the state saved after the fit and the step
        # must be enough.
        for p in (fitter, explorer):
            p.proc.send_signal(signal.SIGKILL)
            p.proc.wait(10)
        n_models, n_ctrls = len(models), len(ctrls)
        with diag._cond:  # forget the first processes' reports
            diag.messages.clear()
            diag.times.clear()
        fitter, explorer = start("b")
        assert models.wait_for(n_models + 1, 40), fitter.output()
        assert ctrls.wait_for(n_ctrls + 1, 40), explorer.output()
        for old, new in ((model1, unpack_arrays(models.last)), (ctrl1, unpack_arrays(ctrls.last))):
            assert old.keys() == new.keys()
            assert all(np.array_equal(old[k], new[k]) for k in old), "re-published state differs"
        assert wait_until(lambda: values("ilqg_explorer").get("resumed") == "True", 20)
        assert wait_until(lambda: values("dynamics_fitter").get("resumed") == "True", 20)
        after = values("ilqg_explorer")
        assert (after["kl_step"], after["eta"]) == (before["kl_step"], before["eta"])
        assert values("dynamics_fitter")["model_version"] == "1"
        assert "stale_model" not in str(after)  # the re-published v1 is not an error

        # They carry on: v2 from the prior with both batches and a step from controller v1.
        assert probe.wait_for_subscribers(pub, 1, 40)
        producer.send(X[N_FIT:], U[N_FIT:], R[N_FIT:])
        assert models.wait_until(lambda m: int(unpack_arrays(m[-1])["version"]) == 2, 90)
        assert ctrls.wait_until(lambda m: int(unpack_arrays(m[-1])["version"]) == 2, 60)
        assert wait_until(lambda: values("dynamics_fitter").get("prior_episodes") == "6", 10)
        fit_vals = values("dynamics_fitter")
        assert fit_vals["gaps"] == "0" and fit_vals["lost_transitions"] == "0", fit_vals
        assert wait_until(lambda: values("ilqg_explorer").get("controllers_published") == "2", 10)
        for p in (fitter, explorer):
            assert p.stop(20) == 0, p.output()[-2000:]

        # The fitter's newest checkpoint is corrupted on disk: .prev takes over.
        newest = run_dir / "dynamics_fitter_checkpoint.pt"
        prev = load_checkpoint(newest.with_name(newest.name + ".prev"))
        raw = bytearray(newest.read_bytes())
        raw[len(raw) // 3] ^= 0x01
        newest.write_bytes(bytes(raw))
        fitter = spawn_node("naf_ros.ros.dynamics_fitter", domain, logs, params, name="fit_c")
        procs.append(fitter)
        assert wait_until(lambda: "resumed from" in fitter.output(), 40), fitter.output()
        out = fitter.output()
        unusable = [ln for ln in out.splitlines() if "checkpoint unusable" in ln]
        assert len(unusable) == 1 and "checksum mismatch" in unusable[0], out
        assert ".prev" in out.split("resumed from", 1)[1].splitlines()[0]
        assert len(list(run_dir.glob("dynamics_fitter_checkpoint.pt.bad-*"))) == 1
        assert wait_until(
            lambda: values("dynamics_fitter").get("model_version") == str(prev["version"]), 20
        )
        print(
            f"\nrecovery: fitter v1 and explorer (kl_step {before['kl_step']}, eta "
            f"{before['eta']}) resumed bit-exact after SIGKILL, went on to v2; a corrupted "
            f"newest fitter checkpoint fell back to .prev (model v{prev['version']})"
        )
    finally:
        for p in procs:
            if p.alive():
                p.stop(20)
        probe.close()
        lease.release()
