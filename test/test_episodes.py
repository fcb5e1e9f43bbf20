"""Episode bookkeeping of the core (:mod:`naf_ros.core.episodes`) without DDS.

The sequence tracker is how the learner tells lost, late, duplicate and restarted transition
streams apart; the episode assembler is how the dynamics fitter turns a stream into whole
episodes and refuses broken ones. The nodes around them are tested in test_learner_node.py
and test_model_nodes.py.
"""

from __future__ import annotations

import numpy as np
from support.rollouts import T, episode_arrays


def test_sequence_tracker_rules():
    from naf_ros.core.episodes import SequenceTracker

    tr = SequenceTracker(max_producers=2)
    assert [tr.check(0, s).status for s in (0, 1, 2)] == ["ok"] * 3
    v = tr.check(0, 6)
    assert (v.accepted, v.status, v.missing) == (True, "gap", 3)
    assert tr.check(0, 4).status == "out_of_order" and tr.check(0, 6).status == "duplicate"
    assert tr.last_seq(0) == 6 and (tr.gaps, tr.lost) == (1, 3)
    assert tr.check(1, 2).status == "gap"  # a producer first heard of mid-stream
    assert tr.check(2, 0).status == "too_many_producers"
    assert tr.check(0, 0, restart_hint=True).status == "restart" and tr.last_seq(0) == 0
    state = tr.state_dict()
    again = SequenceTracker()
    again.load_state_dict(state)
    assert again.check(0, 1).status == "ok" and again.check(1, 3).status == "ok"


def test_episode_assembler_rules():
    from naf_ros.core.episodes import EpisodeAssembler

    X, U, R = episode_arrays(1, seed=9)
    asm = EpisodeAssembler(13, 3, T)

    def tr(t, **kw):
        base = dict(
            producer=0,
            episode=0,
            t=t,
            obs=X[0, t],
            action=U[0, t],
            reward=R[0, t],
            next_obs=X[0, t + 1],
            terminal=False,
            truncated=t == T - 1,
        )
        return {**base, **kw}

    out = [asm.feed(tr(t)) for t in range(T)]
    assert all(ep is None and not r for ep, r in out[:-1])
    ep, reasons = out[-1]
    assert not reasons and ep.length == T and np.allclose(ep.obs, X[0]) and ep.ret == R[0].sum()
    assert asm.feed(tr(3, episode=1)) == (None, ["episode_start_missing"])
    asm.feed(tr(0, episode=2))
    assert asm.feed(tr(2, episode=2))[1] == ["episode_step_missing"]
    asm.feed(tr(0, episode=3))
    assert asm.feed(tr(1, episode=3, obs=X[0, 1] + 0.1))[1] == ["discontinuous_state"]
    asm.feed(tr(0, episode=4))
    assert asm.feed(tr(1, episode=4, truncated=True))[1] == ["episode_too_short"]
    asm.feed(tr(0, episode=5))
    assert asm.feed(tr(0, episode=6))[1] == ["incomplete_episode"]
    assert asm.feed(tr(1, episode=6, reward=np.nan))[1] == ["non_finite_or_shape"]
    assert asm.completed == 1 and asm.open_episodes == 1
