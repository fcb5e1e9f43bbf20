"""Malformed (and some well-formed but absurd) messages for every input of the naf_ros graph.

The fuzz test (``test_fuzz_nodes.py``) publishes these next to the graph's own traffic. Each
builder of :class:`Malformer` returns ``(message, kind)``; ``Malformer.defect`` then names the
one thing wrong with that message (its kind, or ``data_offset`` when a garbage offset was put
on top of a kind that does not change the verdict), so the test can say under which
``rejected/<reason>`` each node must count it. Kinds are kept *pure* for that: a message of
kind ``non_finite`` has nothing else wrong with it, a ``missing_joint`` state still names a
joint, and so on.

Messages come from hypothesis and numpy together: hypothesis draws *plans* (a seed, the
kinds to use per topic, NaNs with random payloads, ±inf and edge-case finite floats;
:func:`draw_plans`) and numpy expands each plan into messages. Structured payloads start from
valid encodings of the right shapes (:func:`support.fuzz_payloads.valid_bases`: a real
network's weights, an iLQG controller, a fitted-looking model, ...), perturbed, then broken in
one definite way. The shapes, the raw MultiArray writer and the producer book live in
:mod:`support.fuzz_payloads`.
"""

from __future__ import annotations

import array
import math
import struct
import sys
from typing import Any

import numpy as np
from geometry_msgs.msg import PointStamped
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import JointState
from std_msgs.msg import Float32MultiArray, Float64MultiArray

from naf_ros.core.lin_gauss_policy import LinearGaussianController
from naf_ros.ros.messages import parse_transition
from naf_ros.ros.names import JOINT_STATES_TOPIC
from support.fuzz_payloads import (
    ACT,
    JOINTS,
    OBS,
    Dims,
    ProducerBook,
    T,
    flatten,
    label_name,
    multiarray,
    valid_model,
)

# --- malformation kinds -----------------------------------------------------------------------
U32, I32 = 2**32 - 1, 2**31 - 1
ABSURD = (1e308, -1e308, sys.float_info.max, -sys.float_info.max, 3.5e38, -1e200, 1e150, 1e40)
CODEC_KINDS = (
    "non_finite", "truncate", "bad_label", "size_mismatch", "stride_past_end",
    "duplicate_field", "missing_field", "wrong_shape", "empty", "garbage_layout",
)  # fmt: skip
KINDS: dict[str, tuple[str, ...]] = {
    "commands": ("length", "non_finite", "empty", "over_limit"),
    "target_request": ("non_finite", "absurd", "plausible"),
    "target": ("non_finite", "absurd", "plausible"),
    "joint_states": (
        "no_names",
        "length",
        "duplicate_name",
        "missing_joint",
        "non_finite",
        "extra_joints",
        "absurd",
    ),
    "weights": (*CODEC_KINDS, "extra_array"),
    "controller": (
        *CODEC_KINDS,
        "short_horizon",
        "wrong_dims",
        "cov_not_pd",
        "cov_asymmetric",
        "bounds_inverted",
    ),
    "progress": (*CODEC_KINDS, "column_mismatch", "updates_not_scalar"),
    "transitions": (
        *CODEC_KINDS,
        "bad_header",
        "bad_version",
        "bad_flag",
        "action_out_of_range",
        "obs_length",
        "beyond_float32",
    ),
    "models": (*CODEC_KINDS, "noise_not_psd", "cov_asymmetric", "no_inputs", "wrong_dims"),
}
UNICODE = ("ジョイント", "ĵoint1", "joint\u0301", "\u200b", "Ω", "😀", "٣", "JOINT1", "joint1 ")
BAD_SHAPES = (
    "", "3x", "x3", "+3", "-3", "3.0", " 3", "3_0", "٣", "三", "3e2", "scalarx", "1x" * 33 + "1",
    "4294967295x4294967295", "99999999999999999999", "65536x65536x2",
)  # fmt: skip


def nan_with_payload(mantissa: int, negative: bool) -> float:
    """A NaN with the given payload bits (quiet or signalling): hypothesis varies them."""
    bits = (0x7FF << 52) | (mantissa & (2**52 - 1) or 1) | (1 << 63 if negative else 0)
    return struct.unpack("<d", struct.pack("<Q", bits))[0]


PLAN = st.fixed_dictionaries(
    {
        "seed": st.integers(0, 2**63 - 1),
        "non_finite": st.lists(
            st.one_of(
                st.sampled_from([math.nan, math.inf, -math.inf]),
                st.builds(nan_with_payload, st.integers(1, 2**52 - 1), st.booleans()),
            ),
            min_size=1,
            max_size=6,
        ),
        "finite": st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=8),
        # A random non-empty subset of the kinds per topic (a prefix of a permutation:
        # unique lists would favour the first kinds).
        "kinds": st.fixed_dictionaries(
            {
                topic: st.tuples(st.permutations(kinds), st.integers(1, len(kinds))).map(
                    lambda pk: list(pk[0][: pk[1]])
                )
                for topic, kinds in KINDS.items()
            }
        ),
    }
)


def draw_plans(n: int) -> list[dict]:
    """``n`` plans from hypothesis: deterministic, generation only (no shrinking, no database)."""
    plans: list[dict] = []

    @settings(
        max_examples=n, derandomize=True, database=None, phases=[Phase.generate], deadline=None,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    @given(PLAN)
    def collect(plan: dict) -> None:
        plans.append(plan)

    collect()
    return plans


class Malformer:
    """Malformed (and some well-formed but absurd) messages of every input, from one plan.

    :meth:`make` returns ``(message, kind)``; the test says which kinds are well-formed by
    their type's rules. Structured payloads start from valid encodings of the right shapes
    (a real network's weights, an iLQG controller, a fitted-looking model, ...), perturbed,
    then broken in one definite way. After each message ``defect`` names what a validating
    node sees first (module docstring): the kind, ``data_offset``, ``missing_version``, or
    ``sequencing`` for a transition whose readable header is not the next of a known
    producer (refused as a duplicate, held for a gap or refused as one producer too many:
    the node's sequencer decides, not its body).
    """

    def __init__(self, plan: dict, book: ProducerBook, bases: dict[str, dict]) -> None:
        self.rng = np.random.default_rng(plan["seed"])
        self.kinds = plan["kinds"]
        self.non_finite = np.array([*plan["non_finite"], math.nan, math.inf, -math.inf])
        self.finite = np.array([*plan["finite"], *ABSURD, 0.0, -0.0, 5e-324, 1.0])
        self.book = book
        self.bases = bases
        self.defect = ""

    # --- values ---------------------------------------------------------------------------
    def one(self, options: Any) -> Any:
        """One element of a short sequence (``Generator.choice`` is slow on lists)."""
        return options[int(self.rng.integers(len(options)))]

    def pick(self, values: np.ndarray, n: int = 1) -> np.ndarray:
        return values[self.rng.integers(len(values), size=n)]

    def junk(self, n: int) -> np.ndarray:
        """Finite edge cases, absurd magnitudes and ordinary numbers, mixed."""
        out = self.rng.normal(0.0, 10.0 ** self.rng.integers(-3, 4), n)
        mask = self.rng.random(n) < 0.4
        out[mask] = self.pick(self.finite, int(mask.sum()))
        return out

    def absurd(self, n: int) -> np.ndarray:
        big = self.finite[np.abs(self.finite) > 1e30]
        return self.pick(big if big.size else np.array(ABSURD), n)

    def with_non_finite(self, values: np.ndarray, idx: np.ndarray | None = None) -> np.ndarray:
        """``values`` with at least one NaN/inf (at ``idx`` if given)."""
        values = np.array(values, dtype=np.float64)
        if idx is None:
            k = int(self.rng.integers(1, min(3, values.size) + 1))
            idx = self.rng.integers(values.size, size=k)
        values.reshape(-1)[idx] = self.pick(self.non_finite, len(np.atleast_1d(idx)))
        return values

    def text(self) -> str:
        roll = self.rng.integers(4)
        if roll == 0:
            return ""
        if roll == 1:
            return str(self.one(UNICODE))
        chars = self.rng.integers(32, 127, size=int(self.rng.integers(1, 24)))
        return "".join(chr(c) for c in chars).replace(":", "")

    def bad_label(self, name: str) -> str:
        """A dimension label the codec cannot parse (never a valid ``name:shape``)."""
        if self.rng.random() < 0.2:
            return (name + self.text()).replace(":", "")  # no shape at all
        return f"{name}:{self.one(BAD_SHAPES)}"

    def stamp(self, msg: Any) -> None:
        msg.header.stamp.sec = int(self.rng.integers(-I32 - 1, I32, endpoint=True))
        msg.header.stamp.nanosec = int(self.rng.integers(0, U32, endpoint=True))
        msg.header.frame_id = self.text()

    def kind(self, topic: str) -> str:
        return str(self.one(self.kinds[topic]))

    def offset(self, kind: str) -> int:
        """Mostly 0; else a garbage ``data_offset`` on top, which every codec refuses first
        (so the message's defect becomes ``data_offset``). Never on a ``non_finite`` message:
        that kind is about the values alone."""
        if kind == "non_finite" or self.rng.random() >= 0.3:
            return 0
        self.defect = "data_offset"
        return int(self.rng.integers(1, U32, endpoint=True))

    # --- plain ROS inputs -----------------------------------------------------------------
    def commands(self) -> tuple[Float64MultiArray, str]:
        kind = self.kind("commands")
        n = len(JOINTS)
        if kind == "length":
            sizes = [k for k in range(0, 65) if k != n]
            data = self.junk(int(self.one(sizes)))
        elif kind == "non_finite":
            data = self.with_non_finite(self.junk(n))
        elif kind == "empty":
            data = np.zeros(0)
        else:  # over_limit: finite, far beyond the effort limits (the bridge clips)
            data = self.absurd(n) * np.where(self.rng.random(n) < 0.5, -1.0, 1.0)
        dims: Dims = []
        if self.rng.random() < 0.5:  # a ForwardCommandController ignores the layout
            dims = [
                [self.text(), int(self.rng.integers(0, U32)), int(self.rng.integers(0, U32))]
                for _ in range(int(self.rng.integers(1, 4)))
            ]
        # Mostly a garbage data_offset (ignored as well; it also lets the probe's content
        # filter drop these before Python, see Graph).
        offset = int(self.rng.integers(1, U32, endpoint=True)) if self.rng.random() < 0.9 else 0
        return multiarray(Float64MultiArray, dims, data, offset), kind

    def point(self, topic: str) -> tuple[PointStamped, str]:
        kind = self.kind(topic)
        msg = PointStamped()
        self.stamp(msg)
        if kind == "non_finite":
            xy = self.with_non_finite(self.junk(2))
        elif kind == "absurd":
            xy = self.absurd(2)
        else:
            xy = self.rng.uniform(-0.3, 0.3, 2)
        z = self.pick(np.concatenate([self.finite, self.non_finite]))[0]
        msg.point.x, msg.point.y, msg.point.z = float(xy[0]), float(xy[1]), float(z)
        return msg, kind

    def target_request(self) -> tuple[PointStamped, str]:
        return self.point("target_request")

    def target(self) -> tuple[PointStamped, str]:
        return self.point("target")

    def joint_states(self) -> tuple[JointState, str]:
        kind = self.kind(JOINT_STATES_TOPIC)
        rng = self.rng
        names = list(JOINTS)
        if kind in ("extra_joints", "non_finite", "length") and rng.random() < 0.5:
            names += self.extra_names(int(rng.integers(1, 4)))
        if kind == "duplicate_name":
            names.append(str(self.one(JOINTS)))
        if kind == "missing_joint":
            keep = [j for j in JOINTS if rng.random() < 0.5][: len(JOINTS) - 1]
            # At least one name: a state naming nothing is no_names, not missing_joint.
            names = keep + self.extra_names(int(rng.integers(0 if keep else 1, 4)))
        if kind == "no_names":
            names = []
        rng.shuffle(names)
        m = len(names)
        q, qd = rng.uniform(-3.0, 3.0, m), rng.normal(0.0, 2.0, m)
        configured = [i for i, name in enumerate(names) if name in JOINTS]
        extra = [i for i, name in enumerate(names) if name not in JOINTS]
        if extra:  # junk in joints nobody asked for
            q[extra], qd[extra] = self.with_non_finite(self.junk(len(extra))), self.junk(len(extra))
        if kind == "non_finite":
            which = q if rng.random() < 0.5 else qd
            which[configured] = self.with_non_finite(which[configured])
        elif kind == "absurd":
            q[configured], qd[configured] = self.absurd(len(configured)), self.absurd(3)
        elif kind == "length":
            other = [k for k in range(0, m + 4) if k != m]
            if rng.random() < 0.5:
                q = self.junk(int(self.one(other)))
            else:
                qd = self.junk(int(self.one(other)))
        elif kind == "no_names":
            q, qd = self.junk(int(rng.integers(0, 5))), self.junk(int(rng.integers(0, 5)))
        msg = JointState()
        self.stamp(msg)
        msg.name = names
        msg.position = array.array("d", np.asarray(q, dtype=np.float64).tobytes())
        msg.velocity = array.array("d", np.asarray(qd, dtype=np.float64).tobytes())
        effort = self.junk(int(rng.integers(0, 6)))
        msg.effort = array.array("d", effort.tobytes())
        return msg, kind

    def extra_names(self, n: int) -> list[str]:
        out: list[str] = []
        while len(out) < n:
            name = self.text() or "x"
            if name not in JOINTS and name not in out:
                out.append(name)
        return out

    # --- structured (codec) inputs ----------------------------------------------------------
    def perturbed(self, arrays: dict[str, np.ndarray], keep: frozenset = frozenset()) -> dict:
        """Values scaled at random, one maybe replaced by an edge-case float (shapes kept)."""
        out = {name: np.array(value, dtype=np.float64) for name, value in arrays.items()}
        names = [name for name, arr in out.items() if name not in keep and arr.size]
        factors = self.rng.lognormal(0.0, 1.0, sum(out[name].size for name in names))
        start = 0
        for name in names:
            arr = out[name]
            out[name] = arr * factors[start : start + arr.size].reshape(arr.shape)
            start += arr.size
        if names and self.rng.random() < 0.3:
            flat = out[self.one(names)].reshape(-1)
            flat[self.rng.integers(flat.size)] = self.pick(self.finite)[0]
        return out

    def broken(
        self, arrays: dict[str, np.ndarray], kind: str, required: tuple[str, ...],
        strict: tuple[str, ...], non_finite_in: tuple[str, ...] | None = None,
    ) -> tuple[Dims, np.ndarray]:  # fmt: skip
        """Encode ``arrays`` broken by one codec-level ``kind`` that no decoder may accept."""
        rng = self.rng
        if kind == "non_finite":
            names = non_finite_in or tuple(k for k, v in arrays.items() if np.size(v))
            name = str(self.one(names))
            arrays = {**arrays, name: self.with_non_finite(arrays[name])}
        if kind == "wrong_shape":
            name = str(self.one(strict))
            wrong = np.asarray(arrays[name]).reshape(self.other_shape(arrays[name]))
            arrays = {**arrays, name: wrong}
        dims, data = flatten(arrays)
        names = [label_name(d[0]) for d in dims]
        i = int(rng.integers(len(dims)))
        if kind == "truncate":
            data = data[: int(rng.integers(0, len(data)))]
        elif kind == "bad_label":
            dims[i][0] = self.bad_label(names[i])
        elif kind == "size_mismatch":
            dims[i][1] = (dims[i][1] + int(rng.integers(1, U32, endpoint=True))) % (U32 + 1)
        elif kind == "stride_past_end":
            over = len(data) - dims[i][1]
            dims[i][2] = over + int(rng.integers(1, min(1000, U32 - over) + 1))
        elif kind == "duplicate_field":
            dims.insert(int(rng.integers(len(dims) + 1)), list(dims[i]))
        elif kind == "missing_field":
            gone = str(self.one(required))
            dims = [d for d in dims if label_name(d[0]) != gone]
        elif kind == "empty":
            dims, data = [], (np.zeros(0) if rng.random() < 0.5 else self.junk(8))
        elif kind == "garbage_layout":
            data = self.junk(int(rng.integers(0, 64)))
            dims = []
            for _ in range(int(rng.integers(0, 6))):
                size = int(rng.integers(0, 16))
                label = f"zz{self.text()}:{size}"  # a name no decoder asks for
                label = label if rng.random() < 0.5 else self.bad_label("zz")
                dims.append([label, size, int(rng.integers(0, 64))])
        return dims, data

    def other_shape(self, value: Any) -> tuple[int, ...]:
        """A shape of the same size that differs from ``value``'s (and stays different
        after ``np.atleast_1d``): a trailing or leading 1, or the dimensions reversed."""
        shape = tuple(np.shape(value))
        options = [shape + (1,), (1,) + shape if shape else (1, 1)]
        if len(shape) > 1 and shape[::-1] != shape:
            options.append(shape[::-1])
        return options[int(self.rng.integers(len(options)))]

    def weights(self) -> tuple[Float32MultiArray, str]:
        kind = self.kind("weights")
        base = self.perturbed(self.bases["weights"], frozenset({"version"}))
        params = tuple(k for k in base if k != "version")
        if kind == "extra_array":  # a field no network has
            base["trunk.9.weight"] = self.junk(int(self.rng.integers(1, 40)))
        dims, data = self.broken(base, kind if kind in CODEC_KINDS else "", params, params)
        return multiarray(Float32MultiArray, dims, data, self.offset(kind)), kind

    def controller(self) -> tuple[Float64MultiArray, str]:
        kind = self.kind("controller")
        rng = self.rng
        base = dict(self.bases["controller"])
        if kind == "short_horizon":
            ctrl = LinearGaussianController.initial(int(rng.integers(1, T)), OBS, ACT, 0.1)
            base = {**ctrl.to_arrays(), "version": base["version"]}
        elif kind == "wrong_dims":
            nx = int(self.one([k for k in range(1, 20) if k != OBS]))
            ctrl = LinearGaussianController.initial(T, nx, int(rng.integers(1, 5)), 0.1)
            base = {**ctrl.to_arrays(), "version": base["version"]}
        base = self.perturbed(base, frozenset({"cov", "low", "high"}))
        t = int(rng.integers(T))
        if kind == "cov_not_pd":
            base["cov"][t] = -abs(float(rng.normal()) + 1e-3) * np.eye(ACT)
        elif kind == "cov_asymmetric":
            base["cov"][t, 0, 1] += 1.0 + abs(float(rng.normal()))
        elif kind == "bounds_inverted":
            base["low"], base["high"] = np.ones(ACT), -np.ones(ACT)
        core = ("K", "k", "x_hat", "u_hat", "cov")
        dims, data = self.broken(base, kind if kind in CODEC_KINDS else "", core, core)
        return multiarray(Float64MultiArray, dims, data, self.offset(kind)), kind

    def progress(self) -> tuple[Float64MultiArray, str]:
        kind = self.kind("progress")
        base = self.perturbed(
            self.bases["progress"], frozenset({"producers", "last_seq", "learner_id"})
        )
        if kind == "column_mismatch":
            column = str(self.one(["last_seq", "durable_seq", "last_episode"]))
            base[column] = np.append(base[column], self.junk(int(self.rng.integers(1, 4))))
        elif kind == "updates_not_scalar":
            base["updates"] = np.abs(self.junk(int(self.rng.integers(2, 6))))
        strict = ("producers", "last_seq", "durable_seq", "last_episode")
        dims, data = self.broken(
            base, kind if kind in CODEC_KINDS else "", ("producers", "last_seq"), strict
        )
        return multiarray(Float64MultiArray, dims, data, self.offset(kind)), kind

    def models(self) -> tuple[Float64MultiArray, str]:
        kind = self.kind("models")
        rng = self.rng
        base = dict(self.bases["models"])
        base["version"] = float(rng.integers(1, 10**9))
        keep = frozenset({"N", "x0_cov", "version"})
        if kind == "wrong_dims":
            nx = int(self.one([k for k in range(2, 20) if k != OBS]))
            base = {**base, **valid_model(nx, ACT, T, rng).to_arrays()}
        elif kind == "no_inputs":
            base["F"] = np.asarray(base["F"])[:, :, :OBS]
        base = self.perturbed(base, keep)
        t = int(rng.integers(T))
        if kind == "noise_not_psd":
            base["N"][t] = -abs(float(rng.normal()) + 1e-3) * np.eye(base["N"].shape[-1])
        elif kind == "cov_asymmetric":
            base["x0_cov"][0, 1] += 1.0 + abs(float(rng.normal()))
        core = ("F", "f", "N", "x0_mean", "x0_cov")
        dims, data = self.broken(
            base, kind if kind in CODEC_KINDS else "", (*core, "version"), core
        )
        if kind == "missing_field" and "version" not in {label_name(d[0]) for d in dims}:
            self.defect = "missing_version"  # no version to go by: refused before the model
        return multiarray(Float64MultiArray, dims, data, self.offset(kind)), kind

    def transitions(self) -> tuple[Float64MultiArray, str]:
        """Every fuzz transition has a broken body or header (see the module docstring)."""
        kind = self.kind("transitions")
        rng = self.rng
        header = self.book.header(rng)
        obs = rng.uniform(-1.0, 1.0, OBS)
        fields = {
            "version": 1.0, **{k: float(v) for k, v in header.items()}, "terminal": 0.0,
            "truncated": float(header["t"] == T - 1), "controller": float(rng.integers(2)),
            "obs": obs, "action": rng.uniform(-1.0, 1.0, ACT), "reward": float(rng.normal()),
            "next_obs": obs + rng.normal(0.0, 0.01, OBS),
        }  # fmt: skip
        head = ("producer", "seq", "episode", "t")
        if kind == "bad_header":
            key = str(self.one(head))
            fields["producer"] = float(rng.integers(0, 3))  # may claim the live producer
            fields[key] = float(self.one([-1.0, -5.0, -1e308, 0.5, 3.25, 1e-300, 7.5e9 + 0.5]))
        elif kind == "bad_version":
            fields["version"] = float(self.one([0.0, 2.0, 3.0, -1.0, 1e308]))
        elif kind == "bad_flag":
            key = str(self.one(["terminal", "truncated"]))
            fields[key] = float(self.one([0.5, 2.0, -1.0, 1e308]))
        elif kind == "action_out_of_range":
            a = fields["action"]
            a[rng.integers(ACT)] = float(self.one([1.5, -2.0, 1e308, -1e6, 1.0001]))
        elif kind == "obs_length":
            key = str(self.one(["obs", "next_obs"]))
            fields[key] = self.junk(int(self.one([k for k in range(0, 30) if k != OBS])))
        elif kind == "beyond_float32":
            key = str(self.one(["obs", "next_obs", "reward"]))
            big = float(self.one([1e39, -3.5e38, 1e200, -1e300, sys.float_info.max]))
            fields[key] = np.asarray(fields[key], dtype=float)
            fields[key].reshape(-1)[self.rng.integers(np.size(fields[key]))] = big
        body = tuple(k for k in fields if k not in head)
        if kind != "beyond_float32":  # (perturbing might push a value out of float64)
            scaled = {"obs", "next_obs", "reward"}
            if kind == "obs_length":  # its junk may hold 1e308: scaled, it would turn inf
                scaled.discard(key)
            fields = self.perturbed(fields, frozenset(fields) - scaled)
        dims, data = self.broken(
            fields, kind if kind in CODEC_KINDS else "", tuple(fields), tuple(fields),
            non_finite_in=body,
        )  # fmt: skip
        # A beyond-float32 transition must decode (the learner refuses it later), so it keeps
        # data_offset 0: any other offset is itself a codec error.
        offset = 0 if kind == "beyond_float32" else self.offset(kind)
        msg = multiarray(Float64MultiArray, dims, data, offset)
        tr, parsed, _reason = parse_transition(msg, OBS, ACT)
        assert (tr is None) != (kind == "beyond_float32"), f"{kind} transition decoded: {tr}"
        if parsed is not None:
            assert parsed[0] != 0, "a fuzz transition must never account for the live producer"
            producer, seq = parsed[0], parsed[1]
            if producer not in self.book.POOL or seq != self.book.next.get(producer, 0):
                self.defect = "sequencing"
            self.book.account(parsed)
        return msg, kind

    def make(self, topic: str) -> tuple[Any, str]:
        """One message for ``topic`` and its kind; ``self.defect`` says what is wrong with it."""
        self.defect = ""
        with np.errstate(all="ignore"):  # overflowing to inf is the point here
            msg, kind = getattr(self, topic)()
        self.defect = self.defect or kind
        return msg, kind
