"""The core learner (:mod:`naf_ros.core.learner`) without DDS: what the learner node wraps.

Algorithm 2's update schedule on real reacher rollouts, and the learner's state as the
learner node checkpoints it (round trip, fallback to ``.prev``, size with the paper's
networks).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from support.rollouts import T, fitted_model_message, rollouts

from naf_ros.core.joint_dynamics import joint_model_from_arrays
from naf_ros.ros.codec import unpack_arrays
from naf_ros.ros.persist import CheckpointFile


@pytest.fixture(scope="module")
def data():
    return rollouts(7, seed=3)  # 350 transitions


def test_learner_does_il_updates_from_fictional_and_i_from_real(data):
    """The core learner the node wraps: rollouts from B_old every m transitions once warm,
    I·l updates from R_f then I from R, the switch-off, and a full state round trip."""
    from naf_ros.config import config_from_dict
    from naf_ros.core.learner import Learner
    from naf_ros.envs.task import ReacherTask

    cfg = config_from_dict(
        {
            "agent": {
                "hidden": [16, 16],
                "batch_size": 16,
                "warmup_steps": 16,
                "updates_per_step": 2,
            },
            "model_based": {
                "enabled": True,
                "rollout_every": 4,
                "rollout_batch": 4,
                "rollout_length": 3,
                "imagination_off_after": 2,
            },
        }
    )
    task = ReacherTask()
    learner = Learner(cfg, 13, 3, T, task.reward, task)
    for tr in data[:T]:  # one complete episode joins B_f
        learner.add(tr)
    assert len(learner.B_f) == 1 and learner.counters.rollouts == 0  # no model yet
    msg = fitted_model_message(data[:100], 1, joint=True)
    learner.set_model(joint_model_from_arrays(unpack_arrays(msg), task), 1)
    assert len(learner.B_old) == 1 and len(learner.B_f) == 0  # B_old <- B_f
    for tr in data[T : T + 16]:
        learner.add(tr)
    assert learner.counters.rollouts == 4 and 0 < len(learner.fictional) <= 4 * 4 * 3
    assert len(learner.learn()) == 2 * 3 + 2  # I*l from R_f, then I from R
    for tr in data[T + 16 : 2 * T + 1]:  # the first transition of episode 2 switches it off
        learner.add(tr)
    assert learner.counters.episodes == 2 and not learner.imagination_active
    assert len(learner.learn()) == 2
    state = learner.state_dict()
    fresh = Learner(cfg, 13, 3, T, task.reward, task)
    fresh.load_state_dict(state)
    assert fresh.agent.updates == learner.agent.updates and len(fresh.replay) == 2 * T + 1
    assert len(fresh.fictional) == len(learner.fictional) and fresh.model_version == 1
    assert not fresh.imagination_active and len(fresh.B_f) == 1
    x = np.array([tr["obs"] for tr in data[:T]])
    u = np.array([tr["action"] for tr in data[:T]])
    assert np.array_equal(
        fresh.model.predict(np.arange(T), x, u), learner.model.predict(np.arange(T), x, u)
    )


def test_learner_resumes_from_prev_when_newest_is_corrupt(tmp_path):
    """The learner's real payload: a corrupt newest loses only the updates since .prev."""
    from naf_ros.config import config_from_dict
    from naf_ros.core.learner import Learner
    from naf_ros.envs.task import ReacherTask

    cfg = config_from_dict(
        {"agent": {"hidden": [16, 16], "batch_size": 8, "warmup_steps": 8, "updates_per_step": 1}}
    )
    task = ReacherTask()
    rng = np.random.default_rng(0)

    def transition(i: int) -> dict:
        obs = rng.standard_normal(13)
        return dict(obs=obs, action=rng.uniform(-1, 1, 3), reward=-1.0, next_obs=obs, t=i % 10,
                    terminal=False, truncated=i % 10 == 9)  # fmt: skip

    learner = Learner(cfg, 13, 3, 10, task.reward)
    ck = CheckpointFile(tmp_path / "learner_checkpoint.pt")
    for i in range(30):
        learner.add(transition(i))
        learner.learn()
    assert ck.save(learner.state_dict())
    at_prev = (learner.agent.updates, learner.counters.transitions)
    for i in range(30, 40):
        learner.add(transition(i))
        learner.learn()
    assert ck.save(learner.state_dict())
    raw = bytearray(ck.path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # one flipped byte in the newest
    ck.path.write_bytes(bytes(raw))

    log: list[str] = []
    fresh = Learner(cfg, 13, 3, 10, task.reward)
    assert CheckpointFile(ck.path, log.append).load(fresh.load_state_dict) == ck.prev
    assert (fresh.agent.updates, fresh.counters.transitions) == at_prev
    assert fresh.counters.episodes == 3
    assert len(fresh.replay) == 30 and len(log) == 1 and "checksum mismatch" in log[0]


def test_checkpoint_size_and_save_time_paper_network(tmp_path):
    """Measure: the learner's checkpoint with 200x200 networks and 10k transitions in R."""
    from naf_ros.config import config_from_dict
    from naf_ros.core.learner import Learner
    from naf_ros.envs.task import ReacherTask

    cfg = config_from_dict({"agent": {"hidden": [200, 200], "replay_capacity": 1_000_000}})
    learner = Learner(cfg, 13, 3, 50, ReacherTask().reward)
    n = 10_000
    rng = np.random.default_rng(1)
    obs = rng.standard_normal((n, 13))
    learner.replay.add_batch(obs, rng.uniform(-1, 1, (n, 3)), -rng.random(n), obs, np.zeros(n))
    for _ in range(20):  # populate Adam's moments, as a trained agent has them
        learner.agent.update(learner.replay.sample(64, rng))
    ck = CheckpointFile(tmp_path / "learner_checkpoint.pt")
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        assert ck.save(learner.state_dict())
        times.append(time.perf_counter() - t0)
    size = ck.path.stat().st_size
    t0 = time.perf_counter()
    fresh = Learner(cfg, 13, 3, 50, ReacherTask().reward)
    CheckpointFile(ck.path).load(fresh.load_state_dict)
    load_s = time.perf_counter() - t0
    assert len(fresh.replay) == n
    print(
        f"\nlearner checkpoint, 200x200 NAF + Adam + {n} transitions: {size / 1e6:.2f} MB, "
        f"save {np.median(times) * 1e3:.0f} ms (median of 3, incl. fsync and .prev link), "
        f"load+restore {load_s * 1e3:.0f} ms"
    )
    assert size < 20e6
