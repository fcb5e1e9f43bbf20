"""Fuzzing the transition codec with malformed ``std_msgs/Float64MultiArray`` messages.

Whatever arrives on ``/naf/transitions`` or out of a bag, decoding either returns finite,
well-typed fields or raises :class:`CodecError` - never another exception (which would kill
a subscriber callback) and never NaN/inf (which would poison the replay buffer).

Each hypothesis example picks a seed and a list of mutations; numpy then builds several
messages from them, so well over 10,000 messages are decoded in a few seconds.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from std_msgs.msg import Float64MultiArray, MultiArrayDimension

from naf_ros.ros.codec import (
    CodecError,
    decode_transition,
    encode_transition,
    transition_fields,
    unpack_arrays,
)

MESSAGES_PER_EXAMPLE = 8
U32 = 2**32 - 1
SPECIAL = [math.nan, math.inf, -math.inf, 1e308, -1e308, 0.5, -1.0, 2.0, 2.0**53 + 1, 1e19]
LABEL_PIECES = [
    ":", "x", "0", "1", "3", "13", "-", "+", "_", "٣", " ", "scalar", "obs", "seq", "version",
    "\x00", "é", "4294967296", "99999999999999999999", "65536", "",
]  # fmt: skip
MUTATIONS = (
    "label_random",
    "label_shape",
    "label_drop_colon",
    "label_many_dims",
    "label_huge_dims",
    "size",
    "stride",
    "drop_dim",
    "duplicate_dim",
    "extra_dim",
    "swap_labels",
    "truncate_data",
    "extend_data",
    "special_value",
    "header_value",
    "version",
    "empty",
)


def valid_fields(rng: np.random.Generator) -> tuple[dict, int, int]:
    obs_dim, act_dim = int(rng.integers(1, 20)), int(rng.integers(1, 7))
    fields = dict(
        producer=int(rng.integers(0, 4)),
        seq=int(rng.integers(0, 10**9)),
        episode=int(rng.integers(0, 10**4)),
        t=int(rng.integers(0, 200)),
        obs=rng.normal(size=obs_dim),
        action=rng.uniform(-1, 1, act_dim),
        reward=float(rng.normal()),
        next_obs=rng.normal(size=obs_dim),
        terminal=bool(rng.integers(2)),
        truncated=bool(rng.integers(2)),
    )
    return fields, obs_dim, act_dim


def random_label(rng: np.random.Generator) -> str:
    return "".join(rng.choice(LABEL_PIECES, size=int(rng.integers(0, 7))))


def mutate(msg: Float64MultiArray, kind: str, rng: np.random.Generator) -> Float64MultiArray:
    """Apply one corruption in place (and return the message)."""
    dims = list(msg.layout.dim)
    data = np.asarray(msg.data, dtype=np.float64).copy()
    i = int(rng.integers(len(dims))) if dims else 0
    if kind == "label_random" and dims:
        dims[i].label = random_label(rng)
    elif kind == "label_shape" and dims:
        name = dims[i].label.rsplit(":", 1)[0]
        dims[i].label = f"{name}:{random_label(rng)}"
    elif kind == "label_drop_colon" and dims:
        dims[i].label = dims[i].label.replace(":", "")
    elif kind == "label_many_dims" and dims:
        count = int(rng.choice([33, 64, 65, 100, 1000]))
        dims[i].label = f"{dims[i].label.split(':')[0]}:" + "x".join(
            str(int(v)) for v in rng.choice([0, 1, 2], size=count)
        )
    elif kind == "label_huge_dims" and dims:
        big = [str(int(v)) for v in rng.choice([0, 1, 2**16, 2**31, 2**32, 2**32 + 1], size=4)]
        big.append(str(10 ** int(rng.integers(10, 40))))
        dims[i].label = f"{dims[i].label.split(':')[0]}:" + "x".join(rng.permutation(big))
        dims[i].size = int(rng.choice([0, 1, U32]))
    elif kind == "size" and dims:
        dims[i].size = int(rng.choice([0, 1, dims[i].size + 1, max(dims[i].size - 1, 0), U32]))
    elif kind == "stride" and dims:
        dims[i].stride = int(rng.choice([0, len(data), len(data) + 1, U32, rng.integers(U32)]))
    elif kind == "drop_dim" and dims:
        dims.pop(i)
    elif kind == "duplicate_dim" and dims:
        dims.append(MultiArrayDimension(label=dims[i].label, size=dims[i].size, stride=0))
    elif kind == "extra_dim":
        dims.insert(
            int(rng.integers(len(dims) + 1)),
            MultiArrayDimension(
                label=random_label(rng),
                size=int(rng.integers(0, 5)),
                stride=int(rng.integers(0, len(data) + 2)),
            ),
        )
    elif kind == "swap_labels" and len(dims) > 1:
        j = int(rng.integers(len(dims)))
        dims[i].label, dims[j].label = dims[j].label, dims[i].label
    elif kind == "truncate_data":
        data = data[: int(rng.integers(0, len(data) + 1))]
    elif kind == "extend_data":
        data = np.concatenate([data, rng.choice(SPECIAL, size=int(rng.integers(1, 5)))])
    elif kind == "special_value" and len(data):
        data[int(rng.integers(len(data)))] = rng.choice(SPECIAL)
    elif kind == "header_value" and len(data):
        data[int(rng.integers(0, min(8, len(data))))] = rng.choice(SPECIAL)
    elif kind == "version" and len(data):
        data[0] = rng.choice([0.0, 2.0, 1.5, -1.0, 1e300])
    elif kind == "empty":
        dims, data = [], data[:0]
    msg.layout.dim = dims
    msg.data = data.tolist()
    return msg


def check_unpacked(out: dict) -> None:
    for name, arr in out.items():
        assert isinstance(name, str)
        assert isinstance(arr, np.ndarray) and arr.dtype == np.float64
        assert np.isfinite(arr).all(), f"{name} came back non-finite"


def check_decoded(tr: dict, obs_dim: int, act_dim: int) -> None:
    assert tr["obs"].shape == tr["next_obs"].shape == (obs_dim,)
    assert tr["action"].shape == (act_dim,)
    for key in ("obs", "action", "next_obs"):
        assert np.isfinite(tr[key]).all()
    for key in ("producer", "seq", "episode", "t"):
        assert isinstance(tr[key], int) and tr[key] >= 0
    assert isinstance(tr["terminal"], bool) and isinstance(tr["truncated"], bool)
    assert math.isfinite(tr["reward"]) and math.isfinite(tr["controller"])


def exercise(msg: Float64MultiArray, obs_dim: int, act_dim: int) -> str:
    """Every decoding entry point; returns 'ok' or 'rejected'. Any other exception fails."""
    outcome = "ok"
    for call in (
        lambda: check_unpacked(unpack_arrays(msg)),
        lambda: check_unpacked(unpack_arrays(msg, transition_fields(obs_dim, act_dim))),
        lambda: check_decoded(decode_transition(msg, obs_dim, act_dim), obs_dim, act_dim),
    ):
        try:
            call()
        except CodecError as exc:
            assert str(exc) and "\n" not in str(exc)
            outcome = "rejected"
    return outcome


SETTINGS = settings(max_examples=1000, deadline=None, database=None)
SEEDS = st.integers(0, 2**32 - 1)


def test_mutated_transitions_only_raise_codec_error():
    stats = {"messages": 0, "rejected": 0}

    @SETTINGS
    @given(SEEDS, st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=4))
    @example(0, ["label_huge_dims"])
    @example(1, ["label_many_dims"])
    def fuzz(seed, kinds):
        for j in range(MESSAGES_PER_EXAMPLE):
            rng = np.random.default_rng([seed, j])
            fields, obs_dim, act_dim = valid_fields(rng)
            msg = encode_transition(**fields)
            for kind in kinds:
                mutate(msg, kind, rng)
            # sometimes decode with the wrong dimensions, as a mis-configured node would
            if rng.random() < 0.2:
                obs_dim, act_dim = obs_dim + int(rng.integers(-1, 2)), max(act_dim - 1, 0)
            stats["rejected"] += exercise(msg, obs_dim, act_dim) == "rejected"
            stats["messages"] += 1

    fuzz()
    assert stats["messages"] >= 8_000
    assert stats["rejected"] > stats["messages"] // 2  # the mutations do break things


@st.composite
def random_message(draw):
    """No valid structure at all: random dims over random data."""
    rng = np.random.default_rng(draw(SEEDS))
    n_dims = draw(st.integers(0, 14))
    return rng, n_dims


def test_random_messages_only_raise_codec_error():
    stats = {"messages": 0}

    @SETTINGS
    @given(random_message())
    def fuzz(case):
        rng, n_dims = case
        for _ in range(MESSAGES_PER_EXAMPLE // 2):
            n_data = int(rng.integers(0, 40))
            data = rng.normal(size=n_data) * 10.0 ** rng.integers(-3, 300)
            mask = rng.random(n_data) < 0.1
            data[mask] = rng.choice(SPECIAL, size=int(mask.sum()))
            msg = Float64MultiArray()
            for _ in range(n_dims):
                name = rng.choice(["version", "seq", "obs", "action", "reward", "x", ""])
                shape = random_label(rng) if rng.random() < 0.5 else str(rng.integers(0, 20))
                msg.layout.dim.append(
                    MultiArrayDimension(
                        label=f"{name}:{shape}",
                        size=int(rng.integers(0, 21)),
                        stride=int(rng.integers(0, n_data + 2)),
                    )
                )
            msg.data = data.tolist()
            exercise(msg, int(rng.integers(0, 20)), int(rng.integers(0, 7)))
            stats["messages"] += 1

    fuzz()
    assert stats["messages"] >= 4_000


def test_valid_messages_still_decode():
    """The fuzzer's baseline: unmutated messages decode exactly (so rejections mean damage)."""
    for seed in range(200):
        rng = np.random.default_rng(seed)
        fields, obs_dim, act_dim = valid_fields(rng)
        tr = decode_transition(encode_transition(**fields), obs_dim, act_dim)
        check_decoded(tr, obs_dim, act_dim)
        assert tr["seq"] == fields["seq"] and tr["terminal"] == fields["terminal"]
        np.testing.assert_array_equal(tr["obs"], fields["obs"])


def test_fractional_version_and_nonzero_data_offset_are_refused():
    """int() truncation must not let version 1.5 pass, and a data_offset we never write is
    a message we cannot interpret."""
    fields, obs_dim, act_dim = valid_fields(np.random.default_rng(7))
    msg = encode_transition(**fields)
    version_dim = next(d for d in msg.layout.dim if d.label.startswith("version:"))
    data = np.asarray(msg.data, dtype=np.float64)
    data[version_dim.stride] = 1.5
    msg.data = data
    with pytest.raises(CodecError, match="version"):
        decode_transition(msg, obs_dim, act_dim)
    shifted = encode_transition(**fields)
    shifted.layout.data_offset = 1
    with pytest.raises(CodecError, match="data_offset"):
        unpack_arrays(shifted)
