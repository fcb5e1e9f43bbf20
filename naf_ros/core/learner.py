"""The learning half of Algorithms 1 and 2, written once (no ROS, no environment loop).

The in-process trainer and the ``learner`` node both own one :class:`Learner` and drive it
the same way: :meth:`Learner.add` for every real transition, :meth:`Learner.learn` for one
real step's worth of updates, :meth:`Learner.set_model` when a fit produced a model. The
loop around it (an environment, or a topic) is the caller's; what is learned, from which
buffers, and when imagination runs is decided here, so the two paths cannot drift.

Buffers: the replay R, the fictional replay R_f, and the start states of the last n complete
episodes, B_f, of which the snapshot taken when a model arrives is B_old (the states that
model was fitted around). Every ``rollout_every`` real transitions the current mu (plus
noise) is rolled ``rollout_length`` steps through the model from B_old into R_f; each real
step then gets I·l updates from R_f (``imagination_updates_per_step`` overrides I·l) and I
from R. Imagination stops for good once the transitions belong to episode
``imagination_off_after`` (paper §6.3: the policy may then outgrow the model).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from naf_ros.config import Config
from naf_ros.core.agents import make_agent
from naf_ros.core.dynamics import LinearGaussianDynamics
from naf_ros.core.imagination import RolloutNoise, imagine
from naf_ros.core.joint_dynamics import JointSpaceDynamics
from naf_ros.core.model_fit import model_from_arrays
from naf_ros.core.replay import ReplayBuffer

STATE_FORMAT = 2  # B_f/B_old as per-episode start states (format 1: a ring of states)


@dataclass
class LearnerCounters:
    transitions: int = 0
    episodes: int = 0  # completed episodes (an ended transition completes one)
    rejected_replay: int = 0
    imagined: int = 0
    rollouts: int = 0
    models: int = 0
    extra: dict = field(default_factory=dict)


class Learner:
    """Everything Algorithms 1/2 keep between real transitions; owned by one thread.

    ``rng`` is shared with the caller when given (the trainer's single generator keeps its
    runs bit-for-bit reproducible); the node gives it none and the learner seeds its own.
    """

    def __init__(
        self,
        cfg: Config,
        obs_dim: int,
        act_dim: int,
        horizon: int | None,
        reward: Any = None,
        task: Any = None,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.cfg = cfg
        self.obs_dim, self.act_dim, self.horizon = obs_dim, act_dim, horizon
        self.reward = reward
        self.task = task  # rebuilds a checkpointed joint-space model
        mb = cfg.model_based
        self.rng = rng if rng is not None else np.random.default_rng(cfg.train.seed)
        # Trains on agent.device; every minibatch is copied there once, by sample_tensors
        # (on the CPU into a staging array reused per draw: update() consumes each batch).
        self.agent = make_agent(
            cfg.agent, obs_dim, act_dim, seed=cfg.train.seed, device=cfg.agent.device
        )
        # An off-policy agent with a stochastic policy (SVG(1)-ER) weighs replayed rows by
        # pi/mu: R then keeps mu's log-density of each action, computed on arrival.
        self._behaviour_log_prob = getattr(self.agent, "behaviour_log_prob", None)
        self.replay = ReplayBuffer(
            obs_dim, act_dim, cfg.agent.replay_capacity,
            behaviour_logp=self._behaviour_log_prob is not None,
        )  # fmt: skip
        self.fictional = ReplayBuffer(obs_dim, act_dim, mb.imagination_capacity)
        self.B_f: deque[np.ndarray] = deque(maxlen=mb.episodes_per_fit)
        self.B_old: list[np.ndarray] = []
        self._open: dict[int, list[np.ndarray]] = {}  # producer -> states of its open episode
        self._episode_index = 0  # episodes completed before the latest transition
        self.model: Any = None
        self.model_version = -1
        self._fictional_marks: deque[int] = deque()  # R_f's added count when each model came
        self.counters = LearnerCounters()
        self._loss_lock = threading.Lock()
        self._loss_sum, self._loss_n = 0.0, 0

    # --- Algorithm 2's switches ---------------------------------------------------------------
    @property
    def imagination_updates(self) -> int:
        """I·l (or the configured override): updates from R_f per real transition."""
        mb = self.cfg.model_based
        if mb.imagination_updates_per_step is not None:
            return mb.imagination_updates_per_step
        return self.cfg.agent.updates_per_step * mb.rollout_length

    def imagination_on(self, episode_index: int) -> bool:
        """Whether episode ``episode_index`` (0-based) still learns from imagination."""
        mb = self.cfg.model_based
        if not mb.enabled or self.model is None:
            return False
        return mb.imagination_off_after is None or episode_index < mb.imagination_off_after

    @property
    def imagination_active(self) -> bool:
        """A model exists and the latest transition's episode is before the switch-off."""
        return self.imagination_on(self._episode_index)

    @property
    def warm(self) -> bool:
        a = self.cfg.agent
        return len(self.replay) >= max(a.batch_size, a.warmup_steps)

    def set_model(self, model: Any, version: int) -> None:
        """M <- new model; B_old <- B_f (the states the model was fitted around)."""
        self.model, self.model_version = model, int(version)
        self._age_fictional()
        if self.B_f:
            self.B_old = list(self.B_f)
            self.B_f.clear()
        self.counters.models += 1

    def _age_fictional(self) -> None:
        """Keep in R_f only the rollouts of the last ``imagination_model_age`` models."""
        age = self.cfg.model_based.imagination_model_age
        if age is None:
            return
        self._fictional_marks.append(self.fictional.added)
        while len(self._fictional_marks) > age:
            self._fictional_marks.popleft()
        self.fictional.keep_latest(self.fictional.added - self._fictional_marks[0])

    # --- real data ------------------------------------------------------------------------------
    def add(self, tr: dict, producer: int = 0) -> bool:
        """Store one real transition in R and B_f; imagine every m transitions once warm.

        ``tr`` holds obs, action, reward, next_obs, terminal, truncated and t. Returns
        whether R took it (rows beyond float32 are refused and counted).
        """
        c = self.counters
        self._episode_index = c.episodes
        ok = self.replay.add(
            tr["obs"], tr["action"], tr["reward"], tr["next_obs"], tr["terminal"], tr["t"],
            behaviour_logp=self._behaviour_logp(tr),
        )  # fmt: skip
        if not ok:
            c.rejected_replay += 1
        self._track_states(producer, tr)
        c.transitions += 1
        if tr["terminal"] or tr["truncated"]:
            c.episodes += 1
        m = self.cfg.model_based.rollout_every
        if self.warm and self.imagination_active and c.transitions % m == 0:
            self.rollout_imagination()
        return ok

    def _behaviour_logp(self, tr: dict) -> float | None:
        """mu's log-density of ``tr``'s action: the transition's own ``behaviour_logp`` if
        its producer sent one, else the agent's policy now (in the trainer, the policy that
        just acted; behind the ROS graph, the learner's copy, a few updates past the
        published one that acted). None where the agent needs none."""
        if self._behaviour_log_prob is None:
            return None
        if tr.get("behaviour_logp") is not None:
            return float(tr["behaviour_logp"])
        if not np.isfinite(np.asarray(tr["obs"], float)).all():
            return None  # R refuses the row anyway
        return self._behaviour_log_prob(tr["obs"], tr["action"])

    def _track_states(self, producer: int, tr: dict) -> None:
        """Collect each producer's episode states; a complete episode joins B_f."""
        t = int(tr["t"])
        states = self._open.get(producer)
        if t == 0 or states is None or len(states) != t:
            states = self._open[producer] = [] if t == 0 else None
        if states is None:
            self._open.pop(producer, None)  # joined mid-episode or lost a step: skip it
            return
        states.append(np.asarray(tr["obs"], dtype=float))
        if tr["terminal"] or tr["truncated"]:
            del self._open[producer]
            if self.horizon is None or len(states) == self.horizon:
                self.B_f.append(np.stack(states))

    # --- imagination ----------------------------------------------------------------------------
    def rollout_imagination(self) -> int:
        """Sample starts from B_old, roll mu through M for l steps, store them in R_f."""
        mb = self.cfg.model_based
        source = self.B_old or list(self.B_f)
        if self.model is None or not source:
            return 0
        ep = self.rng.integers(0, len(source), size=mb.rollout_batch)
        lengths = [len(s) for s in source]
        t_max = lengths[0] if len(set(lengths)) == 1 else np.asarray(lengths)[ep]
        t = self.rng.integers(0, t_max, size=mb.rollout_batch)
        x0 = np.stack([source[e][s] for e, s in zip(ep, t)])
        horizon = (
            self.model.horizon
            if isinstance(self.model, (LinearGaussianDynamics, JointSpaceDynamics))
            else None
        )
        ex = self.cfg.exploration
        noise: float | RolloutNoise = ex.scale
        if mb.imagination_noise == "exploration":
            noise = RolloutNoise(
                ex.kind, len(x0), self.act_dim, ex.scale, ex.ou_theta, self.rng,
                lower=getattr(self.agent, "lower_batch", None),  # NAF's L(x); DDPG: none
            )  # fmt: skip
        batch = imagine(
            self.model, self.agent.mu_batch, self.reward, x0, t, mb.rollout_length, horizon,
            noise, self.rng,
        )  # fmt: skip
        if not len(batch["reward"]):
            return 0
        # An imagined rollout's end is a truncation, not a terminal: targets bootstrap. A
        # model fitted on wild (finite) data can roll out beyond float32: R_f drops those rows.
        added = self.fictional.add_batch(
            batch["obs"],
            batch["action"],
            batch["reward"],
            batch["next_obs"],
            np.zeros(len(batch["reward"])),
            batch["step"],
        )
        self.counters.imagined += added
        self.counters.rollouts += 1
        return added

    # --- updates --------------------------------------------------------------------------------
    def learn(self) -> list[float]:
        """One real step's worth of updates: I·l from R_f (while imagining) and I from R."""
        if not self.warm:
            return []
        a = self.cfg.agent
        losses = []
        if self.imagination_active and len(self.fictional) >= a.batch_size:
            for _ in range(self.imagination_updates):
                batch = self.fictional.sample_tensors(
                    a.batch_size, self.rng, self.agent.device, reuse=True
                )
                losses.append(self.agent.update(batch))
        for _ in range(a.updates_per_step):
            batch = self.replay.sample_tensors(
                a.batch_size, self.rng, self.agent.device, reuse=True
            )
            losses.append(self.agent.update(batch))
        finite = [v for v in losses if math.isfinite(v)]
        with self._loss_lock:
            self._loss_sum += sum(finite)
            self._loss_n += len(finite)
        return losses

    def take_mean_loss(self) -> float | None:
        """Mean Q loss since the last call (None if no update happened); any thread."""
        with self._loss_lock:
            s, n = self._loss_sum, self._loss_n
            self._loss_sum, self._loss_n = 0.0, 0
        return s / n if n else None

    # --- persistence ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        linear = isinstance(self.model, (LinearGaussianDynamics, JointSpaceDynamics))
        return {
            "format": STATE_FORMAT,
            "dims": [self.obs_dim, self.act_dim],
            "hidden": list(self.cfg.agent.hidden),
            "agent": self.agent.state_dict(),
            "replay": self.replay.state_dict(),
            "fictional": self.fictional.state_dict(),
            "B_f": list(self.B_f),
            "B_old": list(self.B_old),
            "open": {int(k): list(v) for k, v in self._open.items()},
            "episode_index": self._episode_index,
            "fictional_marks": list(self._fictional_marks),
            "model": self.model.to_arrays() if linear else None,
            "model_version": self.model_version,
            "counters": self.counters.__dict__.copy(),
            "rng": self.rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`; raises ValueError/KeyError if it does not fit."""
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"learner state format {state.get('format')} != {STATE_FORMAT}")
        if list(state["dims"]) != [self.obs_dim, self.act_dim]:
            raise ValueError(f"dims {state['dims']} != {[self.obs_dim, self.act_dim]}")
        if list(state["hidden"]) != list(self.cfg.agent.hidden):
            raise ValueError(f"agent.hidden {state['hidden']} != {self.cfg.agent.hidden}")
        self.agent.load_state_dict(state["agent"])
        self.replay.load_state_dict(state["replay"])
        self.fictional.load_state_dict(state["fictional"])
        self.B_f.clear()
        self.B_f.extend(np.asarray(s) for s in state["B_f"])
        self.B_old = [np.asarray(s) for s in state["B_old"]]
        self._open = {int(k): list(v) for k, v in state["open"].items()}
        self._episode_index = int(state["episode_index"])
        self._fictional_marks = deque(int(v) for v in state["fictional_marks"])
        if state["model"] is not None:
            self.model = model_from_arrays(state["model"], self.task)
        self.model_version = int(state["model_version"])
        self.counters = LearnerCounters(**state["counters"])
        self.rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
