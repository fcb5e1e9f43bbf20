"""Named numpy arrays <-> std_msgs MultiArrays, self-describing and validated.

Every structured payload (transitions, weights, fitted models, controllers) travels as a
standard ``Float64MultiArray``/``Float32MultiArray`` so ``ros2 topic echo``, rqt and rosbag2
need no custom interfaces. Each field is one ``MultiArrayDimension``: ``label`` is
``name:shape`` (e.g. ``F:50x13x16``), ``size`` its element count and ``stride`` its offset
into ``data``. ``data_offset`` is always 0 (a message with another value is refused).
Decoding checks labels, sizes, offsets and finiteness and raises :class:`CodecError`
instead of handing garbage on.

This module imports only message classes; it has no node logic.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping

import numpy as np
from std_msgs.msg import Float32MultiArray, Float64MultiArray, MultiArrayDimension

TRANSITION_SCHEMA_VERSION = 1
MAX_DIMS = 32  # numpy's limit is 64; no payload of ours comes close
MAX_SIZE = 2**32 - 1  # MultiArrayDimension.size is a uint32


class CodecError(ValueError):
    """A message that does not decode to what its type promises."""


def _shape_label(name: str, shape: tuple[int, ...]) -> str:
    return f"{name}:{'x'.join(str(s) for s in shape) if shape else 'scalar'}"


@functools.lru_cache(maxsize=512)  # a stream repeats the same few labels; bounded for fuzz
def _parse_label(label: str) -> tuple[str, tuple[int, ...]]:
    if ":" not in label:
        raise CodecError(f"dimension label {label!r} is not 'name:shape'")
    name, shape_text = label.rsplit(":", 1)
    if shape_text == "scalar":
        return name, ()
    parts = shape_text.split("x")
    # Plain ASCII digits only: int() would also take "+3", "3_0", " 3" and non-ASCII digits.
    if len(parts) > MAX_DIMS or not all(p.isascii() and p.isdigit() for p in parts):
        raise CodecError(f"dimension label {label!r} has a bad shape")
    shape = tuple(int(p) for p in parts)
    # Exact integer product: np.prod wraps around in int64 and numpy cannot even build an
    # empty array whose other dimensions multiply past its maximum size.
    if math.prod(s for s in shape if s) > MAX_SIZE:
        raise CodecError(f"dimension label {label!r} is larger than a message can hold")
    return name, shape


def pack_arrays(arrays: Mapping[str, np.ndarray], dtype=np.float64):
    """Pack named arrays into one Float64MultiArray (or Float32MultiArray for float32)."""
    msg = Float32MultiArray() if np.dtype(dtype) == np.float32 else Float64MultiArray()
    chunks, offset = [], 0
    for name, value in arrays.items():
        arr = np.asarray(value, dtype=dtype)
        msg.layout.dim.append(
            MultiArrayDimension(label=_shape_label(name, arr.shape), size=arr.size, stride=offset)
        )
        chunks.append(arr.reshape(-1))
        offset += arr.size
    msg.data = np.concatenate(chunks).astype(dtype) if chunks else np.zeros(0, dtype)
    return msg


def unpack_arrays(
    msg, expected: Mapping[str, tuple[int, ...] | None] | None = None, finite: bool = True
) -> dict[str, np.ndarray]:
    """Inverse of :func:`pack_arrays`. ``expected`` maps names to shapes (None = any shape)."""
    if msg.layout.data_offset != 0:
        raise CodecError(f"data_offset {msg.layout.data_offset}, expected 0")
    # One copy of the whole buffer (the fields are views of it, not of the message's memory).
    data = np.array(msg.data, dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    for dim in msg.layout.dim:
        name, shape = _parse_label(dim.label)
        size = math.prod(shape)
        if dim.size != size:
            raise CodecError(f"{name}: size {dim.size} does not match shape {shape}")
        stride = dim.stride
        if stride + size > len(data):
            raise CodecError(f"{name}: extends past the end of data ({len(data)} values)")
        if name in out:
            raise CodecError(f"{name}: appears twice")
        out[name] = data[stride : stride + size].reshape(shape)
    # One pass over the buffer; field by field only to name the culprit (or to find that the
    # non-finite values lie outside every field).
    if finite and not np.isfinite(data).all():
        bad = next((k for k, v in out.items() if not np.isfinite(v).all()), None)
        if bad is not None:
            raise CodecError(f"{bad}: holds non-finite values")
    if expected is not None:
        missing = [k for k in expected if k not in out]
        if missing:
            raise CodecError(f"missing fields {missing}")
        for key, shape in expected.items():
            if shape is not None and out[key].shape != tuple(shape):
                raise CodecError(f"{key}: shape {out[key].shape}, expected {tuple(shape)}")
    return out


# --- transitions ------------------------------------------------------------------------------
def transition_fields(obs_dim: int, act_dim: int) -> dict[str, tuple[int, ...]]:
    """The transition schema: header scalars, then x, u, r, x'."""
    return {
        "version": (),
        "producer": (),
        "seq": (),
        "episode": (),
        "t": (),
        "terminal": (),
        "truncated": (),
        "controller": (),
        "obs": (obs_dim,),
        "action": (act_dim,),
        "reward": (),
        "next_obs": (obs_dim,),
    }


CONTROLLER_POLICY, CONTROLLER_ILQG = 0.0, 1.0


def encode_transition(
    *,
    producer: int,
    seq: int,
    episode: int,
    t: int,
    obs: np.ndarray,
    action: np.ndarray,
    reward: float,
    next_obs: np.ndarray,
    terminal: bool,
    truncated: bool,
    controller: float = CONTROLLER_POLICY,
) -> Float64MultiArray:
    return pack_arrays(
        {
            "version": TRANSITION_SCHEMA_VERSION,
            "producer": producer,
            "seq": seq,
            "episode": episode,
            "t": t,
            "terminal": float(terminal),
            "truncated": float(truncated),
            "controller": controller,
            "obs": obs,
            "action": action,
            "reward": reward,
            "next_obs": next_obs,
        }
    )


def decode_transition(msg, obs_dim: int, act_dim: int) -> dict:
    """Decode and validate a transition; integers come back as ints, flags as bools."""
    fields = unpack_arrays(msg, transition_fields(obs_dim, act_dim))
    if float(fields["version"]) != TRANSITION_SCHEMA_VERSION:
        raise CodecError(
            f"transition schema version {fields['version']}, expected {TRANSITION_SCHEMA_VERSION}"
        )
    out: dict = {k: fields[k] for k in ("obs", "action", "next_obs")}
    for key in ("producer", "seq", "episode", "t"):
        value = float(fields[key])
        if value < 0 or value != int(value):
            raise CodecError(f"{key}: {value} is not a non-negative integer")
        out[key] = int(value)
    for key in ("terminal", "truncated"):
        if float(fields[key]) not in (0.0, 1.0):
            raise CodecError(f"{key}: {float(fields[key])} is not 0 or 1")
        out[key] = bool(fields[key])
    out["reward"] = float(fields["reward"])
    out["controller"] = float(fields["controller"])
    return out
