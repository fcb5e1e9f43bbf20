"""Experience as rosbag2 (MCAP): record it, read it back, warm-start or train offline from it.

Hours on a real arm are expensive; every transition should outlive the process that produced
it. We record the same standard messages the nodes publish (BRIEF §3) so a bag is useful to
``ros2 bag info/play``, rqt and Foxglove as well as to us:

- ``/naf/transitions``: ``std_msgs/msg/Float64MultiArray``, the layout of
  :func:`~naf_ros.ros.codec.encode_transition`;
- ``/joint_states``: ``sensor_msgs/msg/JointState`` (fields may hold NaN);
- ``/effort_controller/commands``: ``std_msgs/msg/Float64MultiArray``, one effort per joint;
- ``/target``: ``geometry_msgs/msg/PointStamped``.

Writing uses the ``rosbags`` library (no ROS install needed). The bag is rosbag2 metadata
version 8 with Humble-style QoS strings, which Humble, Jazzy and Kilted all read; the message
definitions of these types (and so their type hashes) are identical across those releases.
``metadata.yaml`` carries a count and an order-independent SHA-256 sum of the transition
messages, because MCAP chunks written by rosbags have no CRC and a flipped byte in a float
would otherwise decode silently as a different, perfectly finite number.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from naf_ros.ros import names
from naf_ros.ros.codec import (
    TRANSITION_SCHEMA_VERSION,
    CodecError,
    decode_transition,
    encode_transition,
    unpack_arrays,
)

# A bag holds one arm's topics under their absolute names (the arm's namespace stripped).
TRANSITIONS_TOPIC = names.TRANSITIONS_TOPIC
JOINT_STATES_TOPIC = "/" + names.JOINT_STATES_TOPIC
TARGET_TOPIC = "/" + names.TARGET_TOPIC
DEFAULT_CONTROLLER = names.DEFAULT_CONTROLLER
ARRAY_TYPE = "std_msgs/msg/Float64MultiArray"
JOINT_STATE_TYPE = "sensor_msgs/msg/JointState"
POINT_TYPE = "geometry_msgs/msg/PointStamped"
BAG_FORMAT_VERSION = 8  # rosbag2 metadata version every supported ROS 2 release reads
FORMAT = "naf_ros-experience"
_KEY_FORMAT = "naf_ros.format"
_KEY_SCHEMA = "naf_ros.transition_schema"
_KEY_COUNT = "naf_ros.transitions"
_KEY_DIGEST = "naf_ros.transitions_sha256_sum"


class BagError(RuntimeError):
    """A bag that cannot be written or read as experience; the message is one line."""


def commands_topic(controller: str = DEFAULT_CONTROLLER) -> str:
    return "/" + names.commands_topic(controller)


def _typestore():
    # Humble's definitions: the oldest release we target; identical for these types later.
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_HUMBLE)


def _qos(depth: int, latched: bool = False):
    """The publisher's QoS (naf_ros.ros.qos), so ``ros2 bag play`` offers the same."""
    from rosbags.interfaces import (
        Qos,
        QosDurability,
        QosHistory,
        QosLiveliness,
        QosReliability,
        QosTime,
    )

    zero = QosTime(0, 0)  # "default": no deadline, lifespan or lease
    return Qos(
        QosHistory.KEEP_LAST,
        depth,
        QosReliability.RELIABLE,
        QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE,
        zero,
        zero,
        QosLiveliness.AUTOMATIC,
        zero,
        False,
    )


def _stamp(stamp_ns: Any) -> int:
    if isinstance(stamp_ns, bool) or not isinstance(stamp_ns, (int, np.integer)):
        raise ValueError(f"stamp_ns: {stamp_ns!r} is not an integer number of nanoseconds")
    if not 0 <= int(stamp_ns) < 2**63:
        raise ValueError(f"stamp_ns: {stamp_ns} is outside [0, 2^63)")
    return int(stamp_ns)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _digest(raw: bytes) -> int:
    return int.from_bytes(hashlib.sha256(raw).digest(), "big")


class BagRecorder:
    """Writes experience to a new rosbag2 folder ``path`` (``metadata.yaml`` + one ``.mcap``).

    Use as a context manager or call :meth:`close`; until then ``metadata.yaml`` does not
    exist and the bag is not readable (rosbags buffers up to 1 MiB in memory per chunk).
    """

    def __init__(
        self,
        path: str | Path,
        controller: str = DEFAULT_CONTROLLER,
        frame_id: str = "world",
    ) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path}: already exists; a bag is never overwritten")
        self.frame_id = frame_id
        self.commands_topic = commands_topic(controller)
        self._ts = _typestore()
        self._writer = Writer(
            self.path, version=BAG_FORMAT_VERSION, storage_plugin=StoragePlugin.MCAP
        )
        try:
            self._writer.open()
        except Exception as exc:  # noqa: BLE001 - any storage failure is one line for the user
            raise BagError(f"{self.path}: cannot create bag ({_one_line(exc)})") from None
        self._conns: dict[str, Any] = {}
        self.counts: dict[str, int] = {}
        self._digest = 0
        self._lock = threading.Lock()  # ROS callbacks may record from several threads
        self.closed = False

    # --- writing ---------------------------------------------------------------------------
    def _write(self, topic: str, msgtype: str, msg: Any, stamp_ns: int, qos) -> bytes:
        stamp = _stamp(stamp_ns)
        raw = bytes(self._ts.serialize_cdr(msg, msgtype))
        with self._lock:
            if self.closed:
                raise BagError(f"{self.path}: bag is closed")
            conn = self._conns.get(topic)
            if conn is None:
                conn = self._writer.add_connection(
                    topic, msgtype, typestore=self._ts, offered_qos_profiles=[qos]
                )
                self._conns[topic] = conn
            self._writer.write(conn, stamp, raw)
            self.counts[topic] = self.counts.get(topic, 0) + 1
            if topic == TRANSITIONS_TOPIC:
                self._digest = (self._digest + _digest(raw)) % 2**256
        return raw

    def _header(self, stamp_ns: int, frame_id: str = ""):
        t = self._ts.types
        sec, nsec = divmod(_stamp(stamp_ns), 1_000_000_000)
        return t["std_msgs/msg/Header"](
            stamp=t["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec), frame_id=frame_id
        )

    def _array_msg(self, labels: list[tuple[str, int, int]], data: np.ndarray):
        t = self._ts.types
        dims = [
            t["std_msgs/msg/MultiArrayDimension"](label=lab, size=size, stride=stride)
            for lab, size, stride in labels
        ]
        layout = t["std_msgs/msg/MultiArrayLayout"](dim=dims, data_offset=0)
        return t[ARRAY_TYPE](layout=layout, data=np.array(data, dtype=np.float64))

    def write_transition(self, msg_or_fields: Any, stamp_ns: int) -> dict:
        """Record one transition: a Float64MultiArray from :func:`encode_transition` (rclpy or
        rosbags message) or the keyword mapping that function takes. Returns it decoded.

        The message is validated first (labels, sizes, finiteness, schema version) so a bag
        never holds a transition that :func:`read_transitions` would reject.
        """
        msg = msg_or_fields
        if isinstance(msg_or_fields, Mapping):
            try:
                msg = encode_transition(**msg_or_fields)
            except (TypeError, ValueError) as exc:
                raise BagError(f"transition not recorded: {_one_line(exc)}") from None
        try:
            fields = unpack_arrays(msg)
            decoded = decode_transition(msg, fields["obs"].size, fields["action"].size)
        except (CodecError, KeyError, AttributeError) as exc:
            raise BagError(f"transition not recorded: {_one_line(exc)}") from None
        labels = [(d.label, int(d.size), int(d.stride)) for d in msg.layout.dim]
        out = self._array_msg(labels, np.asarray(msg.data, dtype=np.float64))
        self._write(TRANSITIONS_TOPIC, ARRAY_TYPE, out, stamp_ns, _qos(5000))
        return decoded

    def write_joint_state(
        self,
        stamp_ns: int,
        names: Iterable[str],
        position: Iterable[float] = (),
        velocity: Iterable[float] = (),
        effort: Iterable[float] = (),
    ) -> None:
        """A ``sensor_msgs/JointState``; values are stored as given (NaN included, per §3)."""
        js = self._ts.types[JOINT_STATE_TYPE](
            header=self._header(stamp_ns),
            name=[str(n) for n in names],
            position=np.asarray(list(position), dtype=np.float64),
            velocity=np.asarray(list(velocity), dtype=np.float64),
            effort=np.asarray(list(effort), dtype=np.float64),
        )
        self._write(JOINT_STATES_TOPIC, JOINT_STATE_TYPE, js, stamp_ns, _qos(10))

    def write_command(self, stamp_ns: int, effort: Iterable[float]) -> None:
        """An effort command as ForwardCommandController takes it: bare data, empty layout."""
        msg = self._array_msg([], np.asarray(list(effort), dtype=np.float64))
        self._write(self.commands_topic, ARRAY_TYPE, msg, stamp_ns, _qos(10))

    def write_target(self, stamp_ns: int, target: Iterable[float], frame_id: str = "") -> None:
        """The reach target as ``PointStamped`` (x, y[, z]), latched like the sim bridge's."""
        xyz = [float(v) for v in target] + [0.0, 0.0]
        if len(xyz) > 5:
            raise ValueError(f"target: expected 2 or 3 values, got {len(xyz) - 2}")
        t = self._ts.types
        msg = t[POINT_TYPE](
            header=self._header(stamp_ns, frame_id or self.frame_id),
            point=t["geometry_msgs/msg/Point"](x=xyz[0], y=xyz[1], z=xyz[2]),
        )
        self._write(TARGET_TOPIC, POINT_TYPE, msg, stamp_ns, _qos(1, latched=True))

    # --- closing -----------------------------------------------------------------------------
    def close(self) -> None:
        """Write the MCAP summary and ``metadata.yaml``; idempotent."""
        with self._lock:
            if self.closed:
                return
            w = self._writer
            w.set_custom_data(_KEY_FORMAT, FORMAT)
            w.set_custom_data(_KEY_SCHEMA, str(TRANSITION_SCHEMA_VERSION))
            w.set_custom_data(_KEY_COUNT, str(self.counts.get(TRANSITIONS_TOPIC, 0)))
            w.set_custom_data(_KEY_DIGEST, f"{self._digest:064x}")
            w.close()
            self.closed = True

    def __enter__(self) -> BagRecorder:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()  # keep what was recorded even when the recording loop failed


# --- reading -----------------------------------------------------------------------------------
def _custom_data(path: Path) -> dict:
    meta = path / "metadata.yaml"
    if not meta.is_file():
        raise BagError(f"{path}: no metadata.yaml (not a rosbag2 folder, or never closed)")
    try:
        info = yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"]
    except Exception as exc:  # noqa: BLE001 - any YAML/shape problem is a bad bag
        raise BagError(f"{path}: unreadable metadata.yaml ({_one_line(exc)})") from None
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
    schema = custom.get(_KEY_SCHEMA)
    if schema is not None and str(schema) != str(TRANSITION_SCHEMA_VERSION):
        raise BagError(
            f"{path}: transition schema version {schema}, this build reads "
            f"{TRANSITION_SCHEMA_VERSION}"
        )
    ts = _typestore()
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
                    digest = (digest + _digest(bytes(raw))) % 2**256
                    try:
                        msg = ts.deserialize_cdr(raw, ARRAY_TYPE)
                        tr = decode_transition(msg, obs_dim, act_dim)
                    except CodecError as exc:
                        raise BagError(f"{path}: transition {i}: {exc}") from None
                    except Exception as exc:  # noqa: BLE001 - malformed CDR
                        raise BagError(
                            f"{path}: transition {i} is corrupted ({_one_line(exc)})"
                        ) from None
                    tr["stamp_ns"] = int(stamp)
                    out.append(tr)
    except BagError:
        raise
    except Exception as exc:  # noqa: BLE001 - rosbags raises many types for damaged files
        raise BagError(
            f"{path}: not a readable rosbag2 bag, truncated or damaged? ({_one_line(exc)})"
        ) from None
    if _KEY_COUNT in custom and str(len(out)) != str(custom[_KEY_COUNT]):
        raise BagError(
            f"{path}: {len(out)} transitions, metadata.yaml says {custom[_KEY_COUNT]} "
            "(truncated or corrupted)"
        )
    if _KEY_DIGEST in custom and f"{digest:064x}" != str(custom[_KEY_DIGEST]):
        raise BagError(f"{path}: transition checksum mismatch (corrupted)")
    return out


def _as_paths(bag_paths: str | Path | Iterable[str | Path]) -> list[Path]:
    if isinstance(bag_paths, (str, Path)):
        return [Path(bag_paths)]
    return [Path(p) for p in bag_paths]


def warm_start_replay(replay, bag_paths: str | Path | Iterable[str | Path]) -> int:
    """Fill ``replay`` (a :class:`~naf_ros.core.replay.ReplayBuffer`) from bags; returns the
    number added. Every bag is read and validated before anything is added, so a bad bag
    leaves the buffer untouched. Truncated transitions are stored non-terminal (bootstrap)."""
    batches = [read_transitions(p, replay.obs_dim, replay.act_dim) for p in _as_paths(bag_paths)]
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
                fields = unpack_arrays(_typestore().deserialize_cdr(raw, ARRAY_TYPE))
                return fields["obs"].size, fields["action"].size
    except Exception as exc:  # noqa: BLE001
        raise BagError(f"{path}: not a readable rosbag2 bag ({_one_line(exc)})") from None
    raise BagError(f"{path}: no transitions on {TRANSITIONS_TOPIC}")


# --- offline training ------------------------------------------------------------------------
def train_offline(
    cfg,
    bag_paths: str | Path | Iterable[str | Path],
    updates: int,
    run_dir: str | Path,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Train a NAF agent from recorded transitions only (no environment) and checkpoint it.

    The checkpoint has :class:`~naf_ros.core.trainer.Trainer`'s layout, so ``naf-ros train
    --resume`` (or a policy node) can continue online from the offline result.
    """
    import torch

    from naf_ros.core.checkpoint import save_checkpoint
    from naf_ros.core.naf import NAFAgent
    from naf_ros.core.noise import make_noise
    from naf_ros.core.replay import ReplayBuffer
    from naf_ros.core.trainer import Counters

    if isinstance(updates, bool) or not isinstance(updates, int) or updates <= 0:
        raise ValueError(f"updates: {updates!r} must be an integer > 0")
    paths = _as_paths(bag_paths)
    if not paths:
        raise BagError("no bags given")
    obs_dim, act_dim = transition_dims(paths[0])
    torch.set_num_threads(cfg.train.torch_threads)
    rng = np.random.default_rng(cfg.train.seed)
    agent = NAFAgent(obs_dim, act_dim, cfg.agent, seed=cfg.train.seed)
    replay = ReplayBuffer(obs_dim, act_dim, cfg.agent.replay_capacity)
    n = warm_start_replay(replay, paths)
    if n < cfg.agent.batch_size:
        raise BagError(f"{n} transitions in the bags; need at least agent.batch_size")
    losses = []
    t0 = time.perf_counter()
    for i in range(updates):
        losses.append(agent.update(replay.sample(cfg.agent.batch_size, rng)))
        if log and (i + 1) % max(1, updates // 10) == 0:
            recent = [v for v in losses[-max(1, updates // 10) :] if np.isfinite(v)]
            log(f"offline update {i + 1}/{updates} | loss {np.mean(recent) if recent else 'nan'}")
    wall = time.perf_counter() - t0
    ex = cfg.exploration
    noise = make_noise(ex.kind, act_dim, ex.scale, ex.ou_theta, rng, ex.precision_ema)
    counters = Counters(update_seconds=wall, extra={"offline_updates": updates})
    run_dir = Path(run_dir)
    ckpt = run_dir / "checkpoint.pt"
    save_checkpoint(
        ckpt,
        {
            "agent": agent.state_dict(),
            "replay": replay.state_dict(),
            "counters": counters.__dict__.copy(),
            "rng": rng.bit_generator.state,
            "noise_state": np.asarray(noise.state).copy(),
            "torch_rng": torch.get_rng_state(),
            "config": cfg.to_dict(),
        },
    )
    k = max(1, updates // 10)
    arr = np.asarray(losses, dtype=float)
    summary = {
        "bags": [str(p) for p in paths],
        "transitions": n,
        "updates": agent.updates,
        "skipped_updates": agent.skipped_updates,
        "loss_first": float(np.nanmean(arr[:k])) if np.isfinite(arr[:k]).any() else None,
        "loss_last": float(np.nanmean(arr[-k:])) if np.isfinite(arr[-k:]).any() else None,
        "updates_per_s": updates / max(wall, 1e-9),
        "checkpoint": str(ckpt),
    }
    (run_dir / "offline_summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    """``python -m naf_ros.bag BAG... --updates N --run-dir DIR [--config C] [--set K=V]``."""
    from naf_ros.config import ConfigError, load_config

    parser = argparse.ArgumentParser(
        prog="python -m naf_ros.bag", description="train NAF offline from rosbag2 experience"
    )
    parser.add_argument("bags", nargs="+", help="rosbag2 folders recorded with BagRecorder")
    parser.add_argument("--updates", type=int, required=True)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--config", "-c")
    parser.add_argument("--set", "-s", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.set)
        summary = train_offline(cfg, args.bags, args.updates, args.run_dir, log=print)
    except (ConfigError, BagError, ValueError) as exc:
        print(f"naf-ros: {exc}", file=sys.stderr)
        return 2
    print(
        f"done: {summary['updates']} updates on {summary['transitions']} transitions, loss "
        f"{summary['loss_first']} -> {summary['loss_last']}; checkpoint {summary['checkpoint']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
