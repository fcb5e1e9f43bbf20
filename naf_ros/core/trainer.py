"""In-process NAF trainer (Algorithm 1; Algorithm 2 when ``model_based.enabled``).

Runs any Gymnasium environment with box spaces, writes a run folder (config, metrics CSV,
learning-curve PNG, checkpoint, JSON summary) and prints one progress line per episode.
The trainer is only the environment loop: learning is :class:`~naf_ros.core.learner.Learner`,
model fitting :class:`~naf_ros.core.model_fit.FitStep` and iLQG exploration
:class:`~naf_ros.core.ilqg_explorer.ILQGExplorer` — the same objects the ROS nodes wrap.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import yaml

from naf_ros.config import Config
from naf_ros.core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from naf_ros.core.envs import ActionScaler, episode_limit, make_env, tip_distance
from naf_ros.core.learner import Learner
from naf_ros.core.metrics import MetricsLog, episodes_to_within, plot_curves
from naf_ros.core.model_based import ModelBased
from naf_ros.core.naf import resolve_device
from naf_ros.core.noise import make_noise


class TransitionRecorder(Protocol):
    """Where :meth:`Trainer.train` copies every transition (``naf_ros.bag.writer.BagRecorder``
    is one). The trainer only writes; whoever made the recorder closes it."""

    def write_transition(self, fields: Mapping[str, Any], stamp_ns: int) -> Any: ...


@dataclass
class Counters:
    episodes: int = 0
    env_steps: int = 0
    rejected_env_samples: int = 0
    update_seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def _parse_cell(text: str | None) -> Any:
    """A metrics.csv cell back as the int, float or text it was written from (repr of a
    float round-trips, so rewriting a row reproduces it)."""
    for kind in (int, float):
        try:
            return kind(text)
        except (TypeError, ValueError):
            pass
    return text


def _finite(*values) -> bool:
    return all(np.isfinite(np.asarray(v, dtype=np.float64)).all() for v in values)


PRECISION_STEPS = 10  # evaluation precision: the last k steps of each episode


def fingertip_position(env: Any, obs: np.ndarray) -> np.ndarray:
    """The fingertip's xy: from the task's forward kinematics as the observation carries it
    (target + tip-to-target), or Gymnasium Reacher's ``fingertip`` body; NaN otherwise."""
    base = getattr(env, "unwrapped", env)
    task = getattr(base, "task", None)
    if task is not None and hasattr(task, "delta_slice"):
        obs = np.asarray(obs, dtype=np.float64)
        return obs[task.target_slice] + obs[task.delta_slice]
    if hasattr(base, "get_body_com"):
        try:
            return np.array(base.get_body_com("fingertip")[:2], dtype=np.float64)  # a copy
        except (KeyError, ValueError):
            pass
    return np.full(2, np.nan)


def control_period(env: Any) -> float:
    """Seconds per environment step (MuJoCo ``dt``, or the 3-DOF reacher's control period)."""
    base = getattr(env, "unwrapped", env)
    sim = getattr(base, "sim", None)
    if sim is not None and hasattr(sim, "control_dt"):
        return float(sim.control_dt)
    return float(getattr(base, "dt", 1.0))


def _mean_std(name: str, values: list[float]) -> dict[str, float | None]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not len(v):
        return {f"{name}_mean": None, f"{name}_std": None}
    return {f"{name}_mean": float(v.mean()), f"{name}_std": float(v.std())}


def checkpoint_payload(
    cfg: Config, learner: Learner, counters: Counters, noise: Any, model_based: Any = None
) -> dict:
    """The trainer's checkpoint layout (offline training writes it too, so ``--resume``
    continues online from an offline result)."""
    payload = {
        "learner": learner.state_dict(),
        "counters": counters.__dict__.copy(),
        "noise_state": np.asarray(noise.state).copy(),
        # precision noise's running scale: without it a resumed run explores at another scale
        "noise_mean_trace": getattr(noise, "mean_trace", None),
        "config": cfg.to_dict(),
    }
    if model_based is not None:
        payload["model_based"] = model_based.state_dict()
    return payload


class Trainer:
    """Owns the environment loop; the learner and (Algorithm 2) the model side are its parts."""

    def __init__(
        self,
        cfg: Config,
        run_dir: str | Path | None = None,
        log: Callable[[str], None] | None = print,
    ) -> None:
        self.cfg = cfg
        self.log = log or (lambda _msg: None)
        resolve_device(cfg.agent.device)  # a missing CUDA device stops here, before the envs
        torch.set_num_threads(cfg.train.torch_threads)
        self.env = make_env(cfg.env, cfg.arm)
        self.eval_env = make_env(cfg.env, cfg.arm)
        self.scaler = ActionScaler(self.env.action_space)
        self.obs_dim = self.env.observation_space.shape[0]
        self.act_dim = self.env.action_space.shape[0]
        seed = cfg.train.seed
        self.rng = np.random.default_rng(seed)
        horizon = episode_limit(self.env)
        self.model_based: ModelBased | None = None
        task = None
        if cfg.model_based.enabled:
            self.model_based = ModelBased(cfg, self.env, horizon, self.rng)
            task = self.model_based.task
        self.learner = Learner(
            cfg,
            self.obs_dim,
            self.act_dim,
            horizon,
            reward=task.reward if task is not None else None,
            task=task,
            rng=self.rng,
        )
        self.agent, self.replay = self.learner.agent, self.learner.replay
        ex = cfg.exploration
        self.noise = make_noise(
            ex.kind, self.act_dim, ex.scale, ex.ou_theta, self.rng, ex.precision_ema
        )
        self.counters = Counters()
        self.run_dir = Path(run_dir or cfg.train.run_dir)
        self.metrics: MetricsLog | None = None
        self._env_seeded = False
        self.recorder: TransitionRecorder | None = None
        self._seq = 0
        self.last_eval_precision: dict | None = None

    # --- episodes ----------------------------------------------------------------------------
    def run_episode(self) -> dict:
        """One training episode with exploration and learner updates after every step."""
        cfg = self.cfg
        seed = None if self._env_seeded else cfg.train.seed
        self._env_seeded = True
        obs, info = self.env.reset(seed=seed)
        self.noise.reset()
        mb = self.model_based
        controller = mb.choose_controller() if mb is not None else None
        ep_return, ep_len, last_tip, losses = 0.0, 0, float("nan"), []
        mb_info: dict = {}
        t0 = time.perf_counter()
        updates_before = self.agent.updates
        while True:
            if controller is not None:
                action = controller.act(ep_len, obs, self.rng)
            else:
                action = self.agent.act(obs, self.noise)
            next_obs, reward, terminated, truncated, info = self.env.step(
                self.scaler.to_env(action)
            )
            if not _finite(next_obs, reward):
                self.counters.rejected_env_samples += 1
                break
            transition = {
                "producer": 0,
                "episode": self.counters.episodes,
                "t": ep_len,
                "obs": obs,
                "action": action,
                "reward": float(reward),
                "next_obs": next_obs,
                "terminal": bool(terminated),
                "truncated": bool(truncated),
                "controller": 1.0 if controller is not None else 0.0,
            }
            self.learner.add(transition)
            if self.recorder is not None:
                self._record(transition)
            self.counters.env_steps += 1
            ep_return += float(reward)
            ep_len += 1
            last_tip = tip_distance(info, next_obs)
            losses.extend(self._learn())
            if mb is not None:  # after the step's updates: a new model serves the next step
                mb_info.update(mb.observe(transition, self.learner))
            obs = next_obs
            if terminated or truncated:
                break
            if cfg.train.max_steps and self.counters.env_steps >= cfg.train.max_steps:
                break
        self.counters.episodes += 1
        elapsed = time.perf_counter() - t0
        finite = [v for v in losses if np.isfinite(v)]
        return {
            "return": ep_return,
            "length": ep_len,
            "tip_distance": last_tip,
            "loss": float(np.mean(finite)) if finite else float("nan"),
            "updates_per_s": (self.agent.updates - updates_before) / max(elapsed, 1e-9),
            "controller": "ilqg" if controller is not None else "policy",
            **mb_info,
        }

    def _record(self, transition: dict) -> None:
        """Append one transition to the rosbag2 recording (same schema as the ROS graph)."""
        self.recorder.write_transition(
            {**transition, "seq": self._seq}, stamp_ns=self.counters.env_steps * 20_000_000
        )
        self._seq += 1

    def _learn(self) -> list[float]:
        """I updates from R (and I·l from R_f under Algorithm 2) per real step."""
        t0 = time.perf_counter()
        losses = self.learner.learn()
        if losses:
            self.counters.update_seconds += time.perf_counter() - t0
        return losses

    def evaluate(self, episodes: int | None = None) -> tuple[float, float]:
        """Deterministic (noise-free mu) episodes, as the paper's test return.

        Also measures precision (paper §6.1: DDPG's tip keeps fluctuating around the target,
        NAF's settles): tip distance and tip speed over the last ``PRECISION_STEPS`` steps of
        each episode, pooled into ``self.last_eval_precision`` (mean and standard deviation).
        """
        n = episodes or self.cfg.train.eval_episodes
        returns, tips = [], []
        last_dist: list[float] = []
        last_speed: list[float] = []
        dt = control_period(self.eval_env)
        for i in range(n):
            obs, info = self.eval_env.reset(seed=self.cfg.train.seed + 10_000 + i)
            total, tip = 0.0, float("nan")
            dists: list[float] = []
            positions = [fingertip_position(self.eval_env, obs)]
            while True:
                obs, reward, terminated, truncated, info = self.eval_env.step(
                    self.scaler.to_env(self.agent.act(obs))
                )
                if not _finite(obs, reward):
                    self.counters.rejected_env_samples += 1
                    break
                total += float(reward)
                tip = tip_distance(info, obs)
                dists.append(tip)
                positions.append(fingertip_position(self.eval_env, obs))
                if terminated or truncated:
                    break
            returns.append(total)
            tips.append(tip)
            k = PRECISION_STEPS
            last_dist.extend(dists[-k:])
            moves = np.diff(np.asarray(positions[-(k + 1) :]), axis=0)
            last_speed.extend((np.linalg.norm(moves, axis=-1) / dt).tolist())
        self.last_eval_precision = {
            "steps": PRECISION_STEPS,
            "episodes": n,
            **_mean_std("tip_distance", last_dist),
            **_mean_std("tip_speed", last_speed),
        }
        return float(np.mean(returns)), float(np.nanmean(tips)) if np.isfinite(
            tips
        ).any() else float("nan")

    # --- persistence ---------------------------------------------------------------------------
    def checkpoint_payload(self) -> dict:
        payload = checkpoint_payload(
            self.cfg, self.learner, self.counters, self.noise, self.model_based
        )
        if self._env_seeded:
            # Where the environment's generator stands (random targets, start states): a
            # resumed run must draw the episodes the uninterrupted one would have drawn, not
            # re-seed and replay the first ones.
            payload["env_rng"] = self.env.unwrapped.np_random.bit_generator.state
        return payload

    def save(self, path: str | Path | None = None) -> int:
        return save_checkpoint(path or self.run_dir / "checkpoint.pt", self.checkpoint_payload())

    def load(self, path: str | Path) -> None:
        payload = load_checkpoint(path)
        try:
            self.learner.load_state_dict(payload["learner"])
            if self.model_based is not None and "model_based" in payload:
                self.model_based.load_state_dict(payload["model_based"])
                self.model_based.restore_model(self.learner)
        except (KeyError, ValueError, TypeError) as exc:
            raise CheckpointError(f"{path}: does not fit this run ({exc})") from exc
        self.counters = Counters(**payload["counters"])
        self.noise.state = np.asarray(payload["noise_state"])
        if payload.get("noise_mean_trace") is not None and hasattr(self.noise, "mean_trace"):
            self.noise.mean_trace = float(payload["noise_mean_trace"])
        env_rng = payload.get("env_rng")
        if env_rng is not None:  # else (an offline checkpoint) the env is seeded afresh
            bit_generator = getattr(np.random, env_rng["bit_generator"])()
            bit_generator.state = env_rng
            self.env.unwrapped.np_random = np.random.Generator(bit_generator)
            self._env_seeded = True

    # --- the whole run --------------------------------------------------------------------------
    def train(self, resume: bool = False, recorder: TransitionRecorder | None = None) -> dict:
        """Episodes until ``train.episodes``; every transition also goes to ``recorder``."""
        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        ckpt = self.run_dir / "checkpoint.pt"
        earlier: list[dict] = []
        if resume and ckpt.exists():
            try:
                self.load(ckpt)
                self.log(
                    f"resumed from {ckpt}: episode {self.counters.episodes}, "
                    f"{self.agent.updates} updates"
                )
                earlier = self._earlier_rows()
            except CheckpointError as exc:
                self.log(f"warning: {exc}; starting fresh")
        self.metrics = MetricsLog(self.run_dir / "metrics.csv")
        for row in earlier:  # the resumed run's CSV and curves cover the whole run
            self.metrics.append(row)
        self.recorder = recorder
        t_start = time.perf_counter()
        eval_return = eval_tip = float("nan")
        while self.counters.episodes < cfg.train.episodes:
            if cfg.train.max_steps and self.counters.env_steps >= cfg.train.max_steps:
                break
            stats = self.run_episode()
            ep = self.counters.episodes
            evaluated = ep % cfg.train.eval_every == 0 or ep == cfg.train.episodes
            if evaluated:
                eval_return, eval_tip = self.evaluate()
            row = {
                "episode": ep,
                "env_steps": self.counters.env_steps,
                "return": stats["return"],
                "tip_distance": stats["tip_distance"],
                "eval_return": eval_return if evaluated else float("nan"),
                "eval_tip_distance": eval_tip if evaluated else float("nan"),
                "loss": stats["loss"],
                "updates": self.agent.updates,
                "updates_per_s": stats["updates_per_s"],
                "skipped_updates": self.agent.skipped_updates,
                "rejected_env_samples": self.counters.rejected_env_samples,
                "controller": stats["controller"],
                "wall_s": time.perf_counter() - t_start,
            }
            self.metrics.append(row)
            if cfg.train.progress:
                self.log(self._progress_line(row, evaluated) + self._imagination_note())
        self.save()
        self.recorder = None
        return self.finish(time.perf_counter() - t_start)

    def _earlier_rows(self) -> list[dict]:
        """metrics.csv rows of the episodes the checkpoint holds (rows written after it, by a
        run that died before saving, describe episodes that will be run again)."""
        path = self.run_dir / "metrics.csv"
        if not path.exists():
            return []
        with path.open(newline="") as fh:
            rows = [{k: _parse_cell(v) for k, v in row.items()} for row in csv.DictReader(fh)]
        done = self.counters.episodes
        return [r for r in rows if isinstance(r.get("episode"), int) and r["episode"] <= done]

    def _imagination_note(self) -> str:
        """Algorithm 2's state on the progress line: models fitted, imagined transitions."""
        if self.model_based is None:
            return ""
        c = self.learner.counters
        on = "on" if self.learner.imagination_on(self.counters.episodes) else "off"
        return f" | models {self.model_based.fits} | imagined {c.imagined} ({on})"

    def _progress_line(self, row: dict, evaluated: bool) -> str:
        ev = (
            f" | eval {row['eval_return']:8.2f} tip {row['eval_tip_distance']:.3f}"
            if evaluated
            else ""
        )
        return (
            f"ep {row['episode']:4d}/{self.cfg.train.episodes} | steps {row['env_steps']:6d} | "
            f"return {row['return']:8.2f} | tip {row['tip_distance']:.3f} m | "
            f"loss {row['loss']:.4f} | {row['updates_per_s']:6.0f} upd/s | {row['controller']}{ev}"
        )

    def finish(self, wall: float) -> dict:
        eps, rets = self.metrics.column("eval_return")
        _, tips = self.metrics.column("eval_tip_distance")
        # Real steps at each evaluation: tasks whose episodes end early (a pendulum that
        # falls) compare methods fairly only on this axis, not on the episode count.
        steps_at = dict(zip(*self.metrics.column("env_steps"), strict=True))
        ep5, best = episodes_to_within(eps, rets)
        summary = {
            "env": self.cfg.env.id,
            "algorithm": self.cfg.agent.algorithm,
            "seed": self.cfg.train.seed,
            "episodes": self.counters.episodes,
            "env_steps": self.counters.env_steps,
            "updates": self.agent.updates,
            "skipped_updates": self.agent.skipped_updates,
            "rejected_env_samples": self.counters.rejected_env_samples,
            "rejected_replay": self.replay.rejected,
            "best_eval_return": best,
            "final_eval_return": rets[-1] if rets else None,
            "final_eval_tip_distance": tips[-1] if tips else None,
            "episodes_to_within_5pct": ep5,
            "updates_per_s": self.agent.updates / max(self.counters.update_seconds, 1e-9),
            "wall_s": wall,
            "eval_curve": {
                "episode": eps,
                "env_steps": [int(steps_at[e]) for e in eps],
                "return": rets,
                "tip_distance": tips,
            },
            "final_eval_precision": self.last_eval_precision,
        }
        if self.model_based is not None:
            summary["model_based"] = self.model_based.summary(self.learner)
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        plot_curves(
            {"eval return": (eps, rets)},
            self.run_dir / "learning_curve.png",
            f"{self.cfg.agent.algorithm.upper()} on {self.cfg.env.id} (seed {self.cfg.train.seed})",
        )
        self.env.close()
        self.eval_env.close()
        return summary
