"""Reading experience bags back: validated transitions, and replay-buffer warm starts.

Accepts bags :class:`~naf_ros.bag.writer.BagRecorder` wrote and bags ``ros2 bag record``
wrote from ``/naf/transitions``. Anything wrong (missing or truncated files, a corrupted
message, another transition schema version, other dimensions) is one :class:`BagError`
line, never a half-filled buffer.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import yaml

from naf_ros.bag.format import (
    ARRAY_TYPE,
    KEY_COUNT,
    KEY_DIGEST,
    KEY_SCHEMA,
    TRANSITIONS_TOPIC,
    BagError,
    one_line,
    transition_digest,
    typestore,
)
from naf_ros.core.replay import ReplayBuffer
from naf_ros.ros.codec import (
    TRANSITION_SCHEMA_VERSION,
    CodecError,
    decode_transition,
    unpack_arrays,
)

__all__ = [
    "as_paths",
    "read_transitions",
    "replay_from_bags",
    "transition_dims",
    "warm_start_replay",
]


def _custom_data(path: Path) -> dict:
    meta = path / "metadata.yaml"
    if not meta.is_file():
        raise BagError(f"{path}: no metadata.yaml (not a rosbag2 folder, or never closed)")
    try:
        info = yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"]
    except Exception as exc:  # noqa: BLE001 - any YAML/shape problem is a bad bag
        raise BagError(f"{path}: unreadable metadata.yaml ({one_line(exc)})") from None
    custom = info.get("custom_data") if isinstance(info, dict) else None
    return custom if isinstance(custom, dict) else {}


def read_transitions(bag_path: str | Path, obs_dim: int, act_dim: int) -> list[dict]:
    """All transitions of one bag (folder or bare ``.mcap``), decoded and validated, in
    time-stamp order (which is recording order when stamps are monotonic).

    Accepts bags we wrote and bags ``ros2 bag record`` wrote from ``/naf/transitions`` (those
    have no digest to check). Each dict is :func:`decode_transition`'s plus ``stamp_ns``.
    Anything wrong - missing or truncated files, a corrupted message, another transition
    schema version, other dimensions - raises :class:`BagError` with one line.
    """
    from rosbags.rosbag2 import Reader

    path = Path(bag_path)
    if not path.exists():
        raise BagError(f"{path}: no such bag")
    custom = _custom_data(path) if path.is_dir() else {}
    schema = custom.get(KEY_SCHEMA)
    if schema is not None and str(schema) != str(TRANSITION_SCHEMA_VERSION):
        raise BagError(
            f"{path}: transition schema version {schema}, this build reads "
            f"{TRANSITION_SCHEMA_VERSION}"
        )
    ts = typestore()
    out: list[dict] = []
    digest = 0
    try:
        with Reader(path) as reader:
            conns = [c for c in reader.connections if c.topic == TRANSITIONS_TOPIC]
            for conn in conns:
                if conn.msgtype != ARRAY_TYPE:
                    raise BagError(f"{path}: {TRANSITIONS_TOPIC} has type {conn.msgtype}")
            if conns:
                for i, (_, stamp, raw) in enumerate(reader.messages(connections=conns)):
                    digest = (digest + transition_digest(bytes(raw))) % 2**256
                    try:
                        msg = ts.deserialize_cdr(raw, ARRAY_TYPE)
                        tr = decode_transition(msg, obs_dim, act_dim)
                    except CodecError as exc:
                        raise BagError(f"{path}: transition {i}: {exc}") from None
                    except Exception as exc:  # noqa: BLE001 - malformed CDR
                        raise BagError(
                            f"{path}: transition {i} is corrupted ({one_line(exc)})"
                        ) from None
                    tr["stamp_ns"] = int(stamp)
                    out.append(tr)
    except BagError:
        raise
    except Exception as exc:  # noqa: BLE001 - rosbags raises many types for damaged files
        raise BagError(
            f"{path}: not a readable rosbag2 bag, truncated or damaged? ({one_line(exc)})"
        ) from None
    if KEY_COUNT in custom and str(len(out)) != str(custom[KEY_COUNT]):
        raise BagError(
            f"{path}: {len(out)} transitions, metadata.yaml says {custom[KEY_COUNT]} "
            "(truncated or corrupted)"
        )
    if KEY_DIGEST in custom and f"{digest:064x}" != str(custom[KEY_DIGEST]):
        raise BagError(f"{path}: transition checksum mismatch (corrupted)")
    return out


def as_paths(bag_paths: str | Path | Iterable[str | Path]) -> list[Path]:
    """One path or many, as a list (a bare string is one bag, not its characters)."""
    if isinstance(bag_paths, (str, Path)):
        return [Path(bag_paths)]
    return [Path(p) for p in bag_paths]


def warm_start_replay(replay: ReplayBuffer, bag_paths: str | Path | Iterable[str | Path]) -> int:
    """Fill ``replay`` from bags; returns the number added.

    Every bag is read and validated before anything is added, so a bad bag leaves the buffer
    untouched. Truncated transitions are stored non-terminal (bootstrap).
    """
    batches = [read_transitions(p, replay.obs_dim, replay.act_dim) for p in as_paths(bag_paths)]
    transitions = [t for batch in batches for t in batch]
    if not transitions:
        return 0
    return replay.add_batch(
        np.stack([t["obs"] for t in transitions]),
        np.stack([t["action"] for t in transitions]),
        np.array([t["reward"] for t in transitions]),
        np.stack([t["next_obs"] for t in transitions]),
        np.array([float(t["terminal"]) for t in transitions]),
        np.array([t["t"] for t in transitions], dtype=np.int32),
    )


def transition_dims(bag_path: str | Path) -> tuple[int, int]:
    """(obs_dim, act_dim) of the first transition in a bag, from its labels."""
    from rosbags.rosbag2 import Reader

    path = Path(bag_path)
    try:
        with Reader(path) as reader:
            conns = [c for c in reader.connections if c.topic == TRANSITIONS_TOPIC]
            for _, _, raw in reader.messages(connections=conns) if conns else ():
                fields = unpack_arrays(typestore().deserialize_cdr(raw, ARRAY_TYPE))
                return fields["obs"].size, fields["action"].size
    except Exception as exc:  # noqa: BLE001
        raise BagError(f"{path}: not a readable rosbag2 bag ({one_line(exc)})") from None
    raise BagError(f"{path}: no transitions on {TRANSITIONS_TOPIC}")


def replay_from_bags(
    bag_paths: str | Path | Iterable[str | Path], capacity: int
) -> tuple[ReplayBuffer, int]:
    """A new replay buffer of ``capacity`` filled from bags, for training without an
    environment: the dimensions come from the first bag. Returns it and the number added."""
    paths = as_paths(bag_paths)
    if not paths:
        raise BagError("no bags given")
    obs_dim, act_dim = transition_dims(paths[0])
    replay = ReplayBuffer(obs_dim, act_dim, capacity)
    return replay, warm_start_replay(replay, paths)
