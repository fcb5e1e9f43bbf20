"""Replay buffer and checkpoint file: nothing non-finite gets in, nothing is lost on reload."""

import numpy as np
import pytest

from naf_ros.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from naf_ros.core.replay import ReplayBuffer


def test_replay_rejects_and_counts_non_finite():
    buf = ReplayBuffer(2, 1, 10)
    assert buf.add([0, 0], [0], 1.0, [1, 1], False)
    assert not buf.add([np.nan, 0], [0], 1.0, [1, 1], False)
    assert not buf.add([0, 0], [np.inf], 1.0, [1, 1], False)
    assert not buf.add([0, 0], [0], np.nan, [1, 1], False)
    assert not buf.add([0, 0, 0], [0], 1.0, [1, 1], False)
    assert len(buf) == 1 and buf.rejected == 4
    n = buf.add_batch(
        np.zeros((3, 2)), np.zeros((3, 1)), [1, np.nan, 2], np.zeros((3, 2)), [0, 0, 1]
    )
    assert n == 2 and buf.rejected == 5 and len(buf) == 3


def test_replay_refuses_finite_values_beyond_float32():
    """R is float32: 1e39 would be stored as inf and poison every target that samples it."""
    buf = ReplayBuffer(2, 1, 10)
    assert not buf.add([1e39, 0], [0], 1.0, [1, 1], False)
    assert not buf.add([0, 0], [0], -1e300, [1, 1], False)
    assert buf.add([3e38, 0], [0], 1.0, [1, 1], False)  # just inside float32 range
    n = buf.add_batch(
        np.zeros((3, 2)), np.zeros((3, 1)), [1, 2, 3], [[0, 0], [0, 1e40], [0, 0]], [0, 0, 0]
    )
    assert n == 2 and buf.rejected == 3 and np.isfinite(buf.next_obs[: len(buf)]).all()


def test_replay_ring_and_state_round_trip():
    buf = ReplayBuffer(1, 1, 5)
    for i in range(8):
        buf.add([i], [0], float(i), [i + 1], i == 7, step=i)
    assert len(buf) == 5
    state = buf.state_dict()
    assert list(state["reward"]) == [3, 4, 5, 6, 7]  # oldest first
    other = ReplayBuffer(1, 1, 5)
    other.load_state_dict(state)
    assert sorted(other.reward.tolist()) == [3, 4, 5, 6, 7]
    assert other.added == 8
    rng = np.random.default_rng(0)
    batch = other.sample(64, rng)
    assert set(batch) == {"obs", "action", "reward", "next_obs", "terminal", "step"}


def test_checkpoint_round_trip(tmp_path):
    path = tmp_path / "ck.pt"
    size = save_checkpoint(path, {"a": np.arange(5), "b": {"c": 3}})
    assert size == path.stat().st_size
    data = load_checkpoint(path)
    assert np.array_equal(data["a"], np.arange(5)) and data["b"]["c"] == 3
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "missing"])
def test_damaged_checkpoint_is_a_clear_error(tmp_path, damage):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"x": np.ones(100)})
    raw = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip":
        path.write_bytes(raw[:-10] + bytes([raw[-10] ^ 0xFF]) + raw[-9:])
    elif damage == "garbage":
        path.write_bytes(b"hello")
    else:
        path.unlink()
    with pytest.raises(CheckpointError) as exc:
        load_checkpoint(path)
    assert "\n" not in str(exc.value) and str(path) in str(exc.value)


def test_replay_add_batch_of_nothing():
    buf = ReplayBuffer(2, 1, 10)
    assert buf.add_batch(np.zeros((0, 2)), np.zeros((0, 1)), [], np.zeros((0, 2)), []) == 0
    assert len(buf) == 0 and buf.rejected == 0
