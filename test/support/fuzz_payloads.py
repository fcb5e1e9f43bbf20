"""Raw messages and valid payloads of the small graph the fuzz test runs.

The shapes (``OBS``, ``ACT``, ``T``, ``HIDDEN``, the MJCF reacher's joints) are those of that
graph: the test builds its graph from them. :func:`multiarray` writes a MultiArray with
exactly the layout it is given, without the codec's validation (that is what the fuzzer
needs to break it); :func:`valid_bases` are correct encodings of every structured input,
the starting points :class:`~support.malform.Malformer` perturbs; :class:`ProducerBook`
keeps fuzz transitions' sequence numbers as the consumers account them.
"""

from __future__ import annotations

import array
from typing import Any

import numpy as np
from std_msgs.msg import Float32MultiArray, MultiArrayDimension

from naf_ros.config import AgentConfig
from naf_ros.core.dynamics import LinearGaussianDynamics
from naf_ros.core.lin_gauss_policy import LinearGaussianController
from naf_ros.core.naf import NAFAgent
from naf_ros.envs.arm import ArmModel

ARM = ArmModel.from_mjcf()
JOINTS = list(ARM.joint_names)
OBS, ACT, T = 13, 3, 10
HIDDEN = [16, 16]


# --- message building -------------------------------------------------------------------------
Dims = list[list[Any]]  # [label, size, stride] per field


def flatten(arrays: dict[str, Any]) -> tuple[Dims, np.ndarray]:
    """The codec's layout (``name:shape`` labels, stride = offset) without its validation."""
    dims: Dims = []
    chunks, offset = [], 0
    for name, value in arrays.items():
        arr = np.asarray(value, dtype=np.float64)
        shape = "x".join(str(s) for s in arr.shape) if arr.shape else "scalar"
        dims.append([f"{name}:{shape}", arr.size, offset])
        chunks.append(arr.reshape(-1))
        offset += arr.size
    return dims, (np.concatenate(chunks) if chunks else np.zeros(0))


_DIMS: dict[tuple[str, int, int], MultiArrayDimension] = {}


def dimension(label: str, size: int, stride: int) -> MultiArrayDimension:
    """Shared, never mutated dimension objects: most layouts repeat, and building one costs."""
    key = (label, size, stride)
    dim = _DIMS.get(key)
    if dim is None:
        if len(_DIMS) > 50_000:
            _DIMS.clear()
        dim = _DIMS[key] = MultiArrayDimension(label=label, size=size, stride=stride)
    return dim


def multiarray(cls: type, dims: Dims, data: Any, data_offset: int = 0) -> Any:
    """A MultiArray with exactly this layout and data (no checks: that is the point)."""
    msg = cls()
    msg.layout.dim = [dimension(str(label), int(size), int(stride)) for label, size, stride in dims]
    msg.layout.data_offset = int(data_offset)
    f32 = cls is Float32MultiArray
    values = np.asarray(data, dtype=np.float32 if f32 else np.float64)
    msg.data = array.array("f" if f32 else "d", values.tobytes())
    return msg


def label_name(label: str) -> str:
    return label.rsplit(":", 1)[0]


class ProducerBook:
    """Next sequence number per fuzz producer, as the learner and fitter account them."""

    POOL = tuple(range(1, 9))  # never 0: that is the live policy (module docstring)

    def __init__(self) -> None:
        self.next: dict[int, int] = {}
        self.episode: dict[int, int] = {}

    def header(self, rng: np.random.Generator) -> dict[str, int]:
        """Mostly the next number of a pooled producer, some duplicates, and some producers
        first heard of mid-sequence (a gap the learner holds for ``gap_timeout_s``; one
        each, so they all time out together instead of one gap per second per producer)."""
        if rng.random() < 0.85:
            producer = self.POOL[int(rng.integers(len(self.POOL)))]
            nxt = self.next.get(producer, 0)
            seq = int(rng.integers(0, nxt)) if nxt > 0 and rng.random() < 0.15 else nxt
        else:  # new producers until the consumers' table (256) is full
            producer = int(rng.integers(9, 2**40))
            seq = int(rng.integers(0, 10**6))
        episode = self.episode.get(producer, 0) + int(rng.random() < 0.1)
        return {"producer": producer, "seq": seq, "episode": episode, "t": int(rng.integers(T))}

    def account(self, header: tuple[int, int, int, int]) -> None:
        """A message whose header the consumers can read advances their sequence too."""
        producer, seq, episode, _t = header
        if seq >= self.next.get(producer, 0):
            self.next[producer] = seq + 1
        self.episode[producer] = max(self.episode.get(producer, 0), episode)


def valid_model(nx: int, nu: int, horizon: int, rng: np.random.Generator) -> LinearGaussianDynamics:
    F = np.concatenate(
        [np.eye(nx) + rng.normal(0, 0.01, (nx, nx)), rng.normal(0, 0.1, (nx, nu))], axis=1
    )
    return LinearGaussianDynamics(
        F=np.repeat(F[None], horizon, axis=0),
        f=rng.normal(0, 0.01, (horizon, nx)),
        N=np.repeat(1e-4 * np.eye(nx)[None], horizon, axis=0),
        x0_mean=rng.normal(0, 0.1, nx),
        x0_cov=1e-3 * np.eye(nx),
    )


def valid_bases() -> dict[str, dict]:
    """Valid payloads of every structured input, the shapes this graph's nodes expect."""
    rng = np.random.default_rng(0)
    agent = NAFAgent(OBS, ACT, AgentConfig(hidden=HIDDEN), seed=0)
    weights = {k: v.astype(np.float64) for k, v in agent.weight_arrays().items()}
    ctrl = LinearGaussianController.initial(T, OBS, ACT, 0.1)
    model = valid_model(OBS, ACT, T, rng).to_arrays()
    model.update(
        sample_returns=rng.normal(size=2), sample_controllers=np.array([0.0, 1.0]),
        sample_x_mean=rng.normal(size=(T + 1, OBS)), sample_u_mean=rng.normal(size=(T, ACT)),
        sample_u_var=np.full((T, ACT), 0.1),
    )  # fmt: skip
    return {
        "weights": {**weights, "version": np.float64(40.0)},
        "controller": {**ctrl.to_arrays(), "version": 3.0},
        "progress": {
            "producers": np.array([3.0, 7.0]),
            "last_seq": np.array([10.0, 99.0]),
            "durable_seq": np.array([5.0, 90.0]),
            "last_episode": np.array([1.0, 9.0]),
            "updates": 100.0,
            "transitions": 110.0,
            "learner_id": 123456789.0,
        },  # fmt: skip
        "models": {**model, "version": 5.0},
    }
