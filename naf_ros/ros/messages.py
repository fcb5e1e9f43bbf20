"""Small message helpers: transition decoding with header recovery, scalars, stamps."""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from std_msgs.msg import Float64, Float64MultiArray

from naf_ros.ros.codec import CodecError, decode_transition, unpack_arrays

HEADER = ("producer", "seq", "episode", "t")


def parse_transition(
    msg: Float64MultiArray, obs_dim: int, act_dim: int
) -> tuple[dict | None, tuple[int, int, int, int] | None, str]:
    """Decode a transition; on failure still recover (producer, seq, episode, t) if possible.

    Returns ``(transition or None, header or None, reject reason or "")``. A transition
    that is bad but identifiable still accounts for its sequence number, so a rejected
    sample neither looks like a gap nor stalls a lockstep producer waiting on progress.
    """
    try:
        tr = decode_transition(msg, obs_dim, act_dim)
    except CodecError as exc:
        reason = "non_finite" if "non-finite" in str(exc) else "malformed"
    except Exception:  # noqa: BLE001 - any undecodable message is malformed, never fatal
        reason = "malformed"
    else:
        header = tuple(tr[k] for k in HEADER)
        if np.max(np.abs(tr["action"])) > 1.0 + 1e-6:
            return None, header, "action_out_of_range"
        return tr, header, ""
    try:
        raw = unpack_arrays(msg, finite=False)
        vals = [float(np.asarray(raw[k]).reshape(())) for k in HEADER]
    except Exception:  # noqa: BLE001 - header unreadable too
        return None, None, reason
    if all(np.isfinite(v) and v >= 0 and v == int(v) for v in vals):
        return None, tuple(int(v) for v in vals), reason
    return None, None, reason


def publish_scalar(pub, value: float) -> None:
    pub.publish(Float64(data=float(value)))


def stamp_to_ns(stamp: Time) -> int:
    """A message stamp as integer nanoseconds (exact, unlike float seconds)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(ns: int, stamp: Time) -> None:
    """Write integer nanoseconds into a message stamp in place."""
    stamp.sec, stamp.nanosec = divmod(int(ns), 1_000_000_000)
