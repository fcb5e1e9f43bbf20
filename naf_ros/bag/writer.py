"""Writing experience bags: :class:`BagRecorder`, one rosbag2 (MCAP) folder.

Writing uses the ``rosbags`` library (no ROS install needed). Every transition is validated
before it is written, so a bag never holds one that :mod:`naf_ros.bag.reader` would
reject; what the bag holds is described in :mod:`naf_ros.bag.format`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from naf_ros.bag.format import (
    ARRAY_TYPE,
    BAG_FORMAT_VERSION,
    DEFAULT_CONTROLLER,
    FORMAT,
    JOINT_STATE_TYPE,
    JOINT_STATES_TOPIC,
    KEY_COUNT,
    KEY_DIGEST,
    KEY_FORMAT,
    KEY_SCHEMA,
    POINT_TYPE,
    TARGET_TOPIC,
    TRANSITIONS_TOPIC,
    BagError,
    commands_topic,
    one_line,
    transition_digest,
    typestore,
)
from naf_ros.ros.codec import (
    TRANSITION_SCHEMA_VERSION,
    CodecError,
    decode_transition,
    encode_transition,
    unpack_arrays,
)

__all__ = ["BagRecorder"]


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
        self._ts = typestore()
        self._writer = Writer(
            self.path, version=BAG_FORMAT_VERSION, storage_plugin=StoragePlugin.MCAP
        )
        try:
            self._writer.open()
        except Exception as exc:  # noqa: BLE001 - any storage failure is one line for the user
            raise BagError(f"{self.path}: cannot create bag ({one_line(exc)})") from None
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
                self._digest = (self._digest + transition_digest(raw)) % 2**256
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
                raise BagError(f"transition not recorded: {one_line(exc)}") from None
        try:
            fields = unpack_arrays(msg)
            decoded = decode_transition(msg, fields["obs"].size, fields["action"].size)
        except (CodecError, KeyError, AttributeError) as exc:
            raise BagError(f"transition not recorded: {one_line(exc)}") from None
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
            w.set_custom_data(KEY_FORMAT, FORMAT)
            w.set_custom_data(KEY_SCHEMA, str(TRANSITION_SCHEMA_VERSION))
            w.set_custom_data(KEY_COUNT, str(self.counts.get(TRANSITIONS_TOPIC, 0)))
            w.set_custom_data(KEY_DIGEST, f"{self._digest:064x}")
            w.close()
            self.closed = True

    def __enter__(self) -> BagRecorder:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()  # keep what was recorded even when the recording loop failed
