"""The learning benchmarks: ``naf``, ``model-based``, ``updates`` and ``report``.

naf          NAF on Gymnasium Reacher-v5 and the fixed- and random-target 3-DOF reacher,
             3 seeds each (random targets: against the best target-blind constant action)
model-based  NAF vs. NAF + imagination rollouts (linear, -NN, true model) and iLQG mixing;
             ``naf_equal_updates`` is NAF with ImR's updates per real step (the fair baseline)
updates      learner updates/s for the paper's network sizes
report       tables, JSON and plots rebuilt from finished run folders
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np
import yaml

from naf_ros.bench.common import (
    REACHER_FIXED,
    aggregate,
    finish,
    mark_threshold,
    print_table,
    run_jobs,
    train_one,
)
from naf_ros.config import config_from_dict
from naf_ros.core.trainer import Trainer

REACHER_RANDOM = "NafRos/Reacher3DOF-v0"
ARM7_FIXED = "NafRos/Arm7ReachFixed-v0"
ARM7_RANDOM = "NafRos/Arm7Reach-v0"
RANDOM_TARGET_ENVS = (REACHER_RANDOM, ARM7_RANDOM)
DEFAULT_NAF_ENVS = ("Reacher-v5", REACHER_FIXED, REACHER_RANDOM)


class ConstantPolicy:
    """A target-blind policy: the same normalised action whatever the observation."""

    def __init__(self, action) -> None:
        self.action = np.asarray(action, dtype=float)

    def act(self, obs, noise=None) -> np.ndarray:
        return self.action.copy()


def target_blind_baselines(
    config: dict, levels=(-1.0, -0.5, 0.0, 0.5, 1.0), max_actions: int = 256
) -> dict:
    """Zero and the best constant action (a grid of ``levels`` per joint; for arms where the
    grid exceeds ``max_actions``, zero plus that many grid points drawn with a fixed seed)
    scored on the evaluation episodes of ``config`` (same seeds: same start states and
    targets).

    Why: on the random-target reacher every policy that ignores the target ends far from
    most targets; a learned policy has learned something only if it beats these clearly
    (on the fixed target one open-loop sequence reaches the goal, so there it proves nothing).
    """
    probe = Trainer(config_from_dict(config), run_dir=None, log=None)
    act_dim = probe.act_dim
    scores = {}
    try:
        if len(levels) ** act_dim <= max_actions:
            actions = list(itertools.product(levels, repeat=act_dim))
        else:
            draw = np.random.default_rng(0).choice(levels, size=(max_actions - 1, act_dim))
            actions = [(0.0,) * act_dim, *(tuple(float(x) for x in a) for a in draw)]
        for action in actions:
            probe.agent = ConstantPolicy(action)
            scores[action] = probe.evaluate()
    finally:
        probe.env.close()
        probe.eval_env.close()
    best = max(scores, key=lambda a: scores[a][0])
    zero = scores.get((0.0,) * act_dim, (float("nan"), float("nan")))
    return {
        "zero": {"return": zero[0], "tip_distance": zero[1]},
        "best_constant": {"return": scores[best][0], "tip_distance": scores[best][1]},
        "best_constant_action": list(best),
    }


def bench_naf(args) -> dict:
    envs = {
        "Reacher-v5": {
            "env": {"id": "Reacher-v5"},
            "train": {"episodes": args.reacher_v5_steps // 50, "eval_every": 20},
        },
        REACHER_FIXED: {
            "env": {"id": REACHER_FIXED},
            "train": {"episodes": args.episodes, "eval_every": 10},
        },
        # random targets: the task a target-blind policy cannot solve (baselines below)
        REACHER_RANDOM: {
            "env": {"id": REACHER_RANDOM},
            "train": {"episodes": args.episodes, "eval_every": 10},
        },
    }
    # The 7-DOF arm in 3D (issue #12): only when named, so the default suite stays as it was.
    envs[ARM7_FIXED] = {"env": {"id": ARM7_FIXED}, "train": {"episodes": args.episodes}}
    envs[ARM7_RANDOM] = {"env": {"id": ARM7_RANDOM}, "train": {"episodes": args.episodes}}
    for base in envs.values():
        base["train"].setdefault("eval_every", 10)
        if args.eval_every:
            base["train"]["eval_every"] = args.eval_every
        base["train"]["eval_episodes"] = args.eval_episodes or 5
    envs = {k: v for k, v in envs.items() if k in (args.envs or DEFAULT_NAF_ENVS)}
    payload: dict = {"suite": "naf", "envs": {}}
    for env_id, base in envs.items():
        jobs = []
        for seed in range(args.seeds):
            agent = {"hidden": args.hidden}
            if args.gamma is not None:
                agent["gamma"] = args.gamma
            if args.lr is not None:
                agent["lr"] = args.lr
            cfg = {
                "env": base["env"],
                "agent": agent,
                "exploration": {"kind": args.exploration, "scale": args.noise},
                "train": {**base["train"], "seed": seed, "progress": False},
            }
            jobs.append(
                {
                    "config": cfg,
                    "label": "NAF",
                    "run_dir": str(args.out / "runs" / env_id.replace("/", "_") / f"s{seed}"),
                }
            )
        results = run_jobs(jobs, args.workers)
        payload["envs"][env_id] = aggregate(results)
        print_table(env_id, payload["envs"][env_id])
        if env_id in RANDOM_TARGET_ENVS:
            payload.setdefault("target_blind", {})[env_id] = blind = {
                job["config"]["train"]["seed"]: target_blind_baselines(job["config"])
                for job in jobs
            }
            for seed, b in blind.items():
                print(
                    f"seed {seed}: zero action {b['zero']['return']:.2f} "
                    f"(tip {b['zero']['tip_distance']:.3f} m), best constant "
                    f"{b['best_constant_action']} {b['best_constant']['return']:.2f} "
                    f"(tip {b['best_constant']['tip_distance']:.3f} m)"
                )
    return finish("naf", args.out, payload, "NAF")


class EqualUpdatesTrainer(Trainer):
    """Plain NAF given ImR's update budget, so a speed-up cannot come from updates alone.

    ImR does I·l (or ``imagination_updates_per_step``) updates from R_f besides the I from R
    on every real step from its first model (fitted after ``episodes_per_fit`` episodes) until
    imagination is switched off (``imagination_off_after``). This trainer does those extra
    updates from R instead, over the same episodes, so both learners update equally often per
    real step. This one starts at the first step of episode ``episodes_per_fit``; ImR starts
    once its rollouts fill a minibatch of R_f, one or two ``rollout_every`` intervals later, so
    if anything NAF gets a few more (90 of 12,000 updates over 20 episodes with the shipped
    ImR settings).
    """

    def __init__(self, cfg, extra: int, start: int, stop: int | None, **kwargs) -> None:
        cfg = config_from_dict(cfg.to_dict())  # the schedule edits it: keep the caller's
        super().__init__(cfg, **kwargs)
        self.base_updates = cfg.agent.updates_per_step
        self.extra, self.start, self.stop = int(extra), int(start), stop

    def updates_per_step(self, episode: int) -> int:
        """Updates per real step in episode ``episode`` (0-based), as ImR would do them."""
        on = episode >= self.start and (self.stop is None or episode < self.stop)
        return self.base_updates + (self.extra if on else 0)

    def run_episode(self) -> dict:
        # The learner reads agent.updates_per_step at every step; it shares this config.
        self.cfg.agent.updates_per_step = self.updates_per_step(self.counters.episodes)
        return super().run_episode()


def equal_updates_schedule(imr: dict) -> dict:
    """EqualUpdatesTrainer's arguments for the ImR config ``imr`` (a config dict)."""
    cfg = config_from_dict(imr)
    mb = cfg.model_based
    extra = mb.imagination_updates_per_step
    if extra is None:
        extra = cfg.agent.updates_per_step * mb.rollout_length
    return {"extra": extra, "start": mb.episodes_per_fit, "stop": mb.imagination_off_after}


def train_job(job: dict) -> dict:
    """Worker: one run; ``equal_updates`` in the job selects :class:`EqualUpdatesTrainer`."""
    schedule = job.get("equal_updates")
    if schedule is None:
        return train_one(job)
    cfg = config_from_dict(job["config"])
    trainer = EqualUpdatesTrainer(cfg, **schedule, run_dir=job["run_dir"], log=None)
    summary = trainer.train()
    summary["label"] = job["label"]
    return summary


def _run(jobs: list[dict], workers: int) -> list[dict]:
    """:func:`run_jobs` with :func:`train_job` as the worker (spawned processes)."""
    if workers <= 1:
        return [train_job(j) for j in jobs]
    with mp.get_context("spawn").Pool(workers) as pool:
        return pool.map(train_job, jobs, chunksize=1)


EQUAL_UPDATES = "naf_equal_updates"

MODEL_BASED_VARIANTS = {
    "NAF": {"enabled": False},
    # plain NAF with ImR's updates per real step and switch-off (from the ImR options given)
    EQUAL_UPDATES: {"enabled": False},
    "NAF+ImR (linear)": {"enabled": True, "model": "linear"},
    "NAF+ImR (-NN)": {"enabled": True, "model": "nn"},
    "NAF+ImR (true)": {"enabled": True, "model": "true"},
    "NAF+ImR+iLQG p=0.5": {"enabled": True, "model": "linear", "ilqg_probability": 0.5},
    "NAF+ImR+iLQG p=1": {"enabled": True, "model": "linear", "ilqg_probability": 1.0},
}


def model_based_jobs(args: argparse.Namespace) -> list[dict]:
    """The runs of ``bench model-based`` for its command line ``args``: one job per variant
    and seed. A test that runs the comparison at CI scale builds its runs here too, so it
    checks the benchmark's own configs, not a copy."""
    jobs = []
    variants = args.variants or list(MODEL_BASED_VARIANTS)
    warmup = {} if args.warmup_steps is None else {"warmup_steps": args.warmup_steps}
    imagination = {
        # None = the paper's I·l updates from R_f per real step.
        "imagination_updates_per_step": args.imagination_updates,
        "rollout_length": args.rollout_length,
        "imagination_off_after": args.imagination_off_after,
    }
    if args.imagination_capacity is not None:
        imagination["imagination_capacity"] = args.imagination_capacity
    if args.linear_state is not None:
        imagination["linear_state"] = args.linear_state
    env_kwargs = {} if args.env_kwargs is None else {"kwargs": args.env_kwargs}
    for label in variants:
        mb = dict(MODEL_BASED_VARIANTS[label])
        if mb.get("enabled"):
            mb.update(imagination)
        for seed in range(args.seeds):
            cfg = {
                "env": {"id": args.env, **env_kwargs},
                "agent": {"hidden": args.hidden, **warmup},
                "exploration": {"kind": args.exploration, "scale": args.noise},
                "model_based": mb,
                "train": {
                    "episodes": args.episodes,
                    "eval_every": args.eval_every or 5,
                    "seed": seed,
                    "eval_episodes": args.eval_episodes or 3,
                    "progress": False,
                },
            }
            safe = label.replace(" ", "_").replace("/", "").replace("=", "")
            job = {
                "config": cfg,
                "label": label,
                "run_dir": str(args.out / "runs" / "model_based" / safe / f"s{seed}"),
            }
            if label == EQUAL_UPDATES:
                imr = {**cfg, "model_based": {"enabled": True, **imagination}}
                job["equal_updates"] = equal_updates_schedule(imr)
            jobs.append(job)
    return jobs


def bench_model_based(args: argparse.Namespace) -> dict:
    results = _run(model_based_jobs(args), args.workers)
    variants_out = aggregate(results)
    mark_threshold(variants_out)
    payload = {
        "suite": "model_based",
        "envs": {args.env: variants_out},
        "threshold_rule": "within 5% of the best seed-averaged evaluation return",
    }
    print_table(args.env, variants_out)
    return finish("model_based", args.out, payload, "Model-based acceleration")


class _AutogradUpdate:
    """The NAF update before the fast path (autograd, ``Adam(foreach=True)``, per-parameter
    soft update): what ``updates --reference`` times against. Copies the agent's nets."""

    def __init__(self, agent) -> None:
        import copy

        import torch

        self.torch, self.cfg = torch, agent.cfg
        self.net, self.target = copy.deepcopy(agent.net), copy.deepcopy(agent.target)
        self.params, self.target_params = (
            list(self.net.parameters()),
            list(self.target.parameters()),
        )
        self.opt = torch.optim.Adam(self.params, lr=self.cfg.lr, foreach=True)

    def update(self, batch: dict) -> float:
        torch = self.torch
        t = {k: torch.as_tensor(batch[k], dtype=torch.float32) for k in batch}
        with torch.no_grad():
            y = t["reward"] + self.cfg.gamma * (1 - t["terminal"]) * self.target.value(
                t["next_obs"]
            )
        self.net.train()
        loss = torch.mean((y - self.net(t["obs"], t["action"])) ** 2)
        if not torch.isfinite(loss):
            return float("nan")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.params, float("inf"), foreach=True)
        if not torch.isfinite(norm):
            return float("nan")
        self.opt.step()
        with torch.no_grad():
            torch._foreach_lerp_(self.target_params, self.params, self.cfg.tau)
            for b_t, b in zip(self.target.buffers(), self.net.buffers()):
                if b_t.dtype.is_floating_point:
                    b_t.mul_(1.0 - self.cfg.tau).add_(b, alpha=self.cfg.tau)
                else:
                    b_t.copy_(b)
        return float(loss.detach())


def naf_update_flops(obs_dim: int, act_dim: int, hidden: list[int], batch: int) -> float:
    """Floating-point operations (2 per multiply-add) of the matmuls in one NAF update with
    separate trunks: the target's V trunk, the three trunks and heads forward, and the
    backward (weight gradients of every layer, input gradients of all but the first).
    Elementwise work and Adam are left out (a few hundred kFLOP). Why: the rate this
    implies, against the core's measured sgemm rate, says how much of an update is
    arithmetic and how much is overhead."""
    n_l = act_dim * (act_dim + 1) // 2
    head = max(1, act_dim, n_l)  # the heads are one grouped layer padded to the widest
    widths = [obs_dim, *hidden]
    layers = [a * b for a, b in zip(widths[:-1], widths[1:])]
    trunk, heads = 3 * sum(layers), 3 * hidden[-1] * head
    target = sum(layers) + hidden[-1]
    forward = trunk + heads
    backward = trunk + heads + (trunk - 3 * layers[0]) + heads
    return 2.0 * batch * (target + forward + backward)


def sgemm_rate(hidden: int, batch: int = 64, reps: int = 50) -> float:
    """GFLOP/s of one thread's batched sgemm at an update's largest product, (3, batch,
    hidden) x (3, hidden, hidden), timed in CPU seconds like the updates."""
    import torch

    a, w = torch.randn(3, batch, hidden), torch.randn(3, hidden, hidden)
    out = torch.empty(3, batch, hidden)
    torch.bmm(a, w, out=out)
    c0 = time.thread_time()
    for _ in range(reps):
        torch.bmm(a, w, out=out)
    return reps * 2.0 * 3 * batch * hidden * hidden / max(time.thread_time() - c0, 1e-9) / 1e9


def bench_updates(args) -> dict:
    """Learner updates/s at the paper's network sizes (batch 64, one thread).

    Each round times ``--per-round`` updates; the rate is given per wall second and per
    second of the thread's CPU time (on a shared machine the wall clock also measures the
    neighbours). ``--reference`` times the pre-fast-path update too, alternating rounds with
    the current one, so both see the same load and the ratio is fair.
    """
    import torch

    from naf_ros.config import AgentConfig
    from naf_ros.core.naf import NAFAgent
    from naf_ros.core.replay import ReplayBuffer

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    rows = {}
    for hidden in ([200, 200], [64, 64]):
        for bn in (False, True):
            agent = NAFAgent(13, 3, AgentConfig(hidden=hidden, batch_norm=bn))
            buf = ReplayBuffer(13, 3, 10_000)
            buf.add_batch(
                rng.normal(size=(5000, 13)),
                rng.uniform(-1, 1, (5000, 3)),
                rng.normal(size=5000),
                rng.normal(size=(5000, 13)),
                np.zeros(5000),
            )
            paths = {
                "fast": lambda a=agent, b=buf: a.update(b.sample_tensors(64, rng, a.device, True))
            }
            if args.reference:
                ref = _AutogradUpdate(agent)
                paths["reference"] = lambda r=ref, b=buf: r.update(b.sample(64, rng))
            times: dict[str, dict[str, list[float]]] = {k: {"wall": [], "cpu": []} for k in paths}
            gemm: list[float] = []
            for _ in range(args.rounds):
                gemm.append(sgemm_rate(hidden[-1]))
                for name, step in paths.items():
                    w0, c0 = time.perf_counter(), time.thread_time()
                    for _ in range(args.per_round):
                        step()
                    times[name]["wall"].append(args.per_round / (time.perf_counter() - w0))
                    times[name]["cpu"].append(args.per_round / max(time.thread_time() - c0, 1e-9))
            key = f"hidden={hidden} batch_norm={bn}"
            flops = naf_update_flops(13, 3, hidden, 64)
            row: dict = {"mflop_per_update": flops / 1e6, "sgemm_gflops": float(np.median(gemm))}
            for name, t in times.items():
                prefix = "" if name == "fast" else "reference_"
                row[f"{prefix}updates_per_s_median"] = float(np.median(t["wall"]))
                row[f"{prefix}updates_per_cpu_s_median"] = float(np.median(t["cpu"]))
                row[f"{prefix}updates_per_s_runs"] = t["wall"]
            row["sgemm_fraction"] = (
                row["updates_per_cpu_s_median"] * flops / 1e9 / row["sgemm_gflops"]
            )
            line = (
                f"{key:40s} {row['updates_per_s_median']:7.0f} updates/s "
                f"({row['updates_per_cpu_s_median']:.0f} per CPU s; {flops / 1e6:.1f} MFLOP, "
                f"{row['sgemm_fraction']:.0%} of sgemm {row['sgemm_gflops']:.0f} GFLOP/s)"
            )
            if args.reference:
                row["speedup_wall"] = (
                    row["updates_per_s_median"] / row["reference_updates_per_s_median"]
                )
                row["speedup_cpu"] = (
                    row["updates_per_cpu_s_median"] / row["reference_updates_per_cpu_s_median"]
                )
                line += (
                    f" | reference {row['reference_updates_per_s_median']:6.0f} "
                    f"({row['reference_updates_per_cpu_s_median']:.0f})"
                    f" | x{row['speedup_wall']:.2f} wall, x{row['speedup_cpu']:.2f} CPU"
                )
            rows[key] = row
            print(line + " (batch 64, 1 thread)")
    payload = {
        "suite": "updates",
        "rounds": args.rounds,
        "updates_per_round": args.per_round,
        "results": rows,
    }
    return finish("updates", args.out, payload, "updates")


def bench_report(args) -> dict:
    """Rebuild tables, JSON and plots from finished run folders (``<variant>/s<seed>/``).

    Lets suites that were split across processes (or stopped early) be reported together.
    """
    by_env: dict[str, list[dict]] = {}
    for root in args.runs:
        for path in sorted(Path(root).glob("*/s*/summary.json")):
            summary = json.loads(path.read_text())
            summary["label"] = path.parent.parent.name.replace("_", " ")
            by_env.setdefault(summary["env"], []).append(summary)
    payload: dict = {"suite": "report", "runs": [str(r) for r in args.runs], "envs": {}}
    for env_id, results in by_env.items():
        variants = aggregate(results)
        mark_threshold(variants)
        payload["envs"][env_id] = variants
        print_table(env_id, variants)
    return finish(args.name, args.out, payload, args.name)


def build_parser(description: str) -> argparse.ArgumentParser:
    """Options of the learning suites (``graph`` and ``model-error`` have their own)."""
    parser = argparse.ArgumentParser(prog="naf-ros bench", description=description)
    parser.add_argument(
        "suite", choices=["naf", "model-based", "updates", "graph", "model-error", "report"]
    )
    parser.add_argument(
        "--runs",
        nargs="*",
        type=Path,
        default=[],
        help="report: folders holding <variant>/s<seed>/summary.json",
    )
    parser.add_argument("--name", default="report", help="report: output file stem")
    parser.add_argument("--out", type=Path, default=Path("bench_results"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--reacher-v5-steps", type=int, default=50_000)
    parser.add_argument(
        "--hidden", type=lambda s: [int(v) for v in s.split(",")], default=[200, 200]
    )
    parser.add_argument("--exploration", default="ou")
    parser.add_argument("--noise", type=float, default=0.3)
    parser.add_argument("--gamma", type=float, default=None, help="naf suite: discount")
    parser.add_argument("--lr", type=float, default=None, help="naf suite: Adam learning rate")
    parser.add_argument(
        "--reference",
        action="store_true",
        help="updates: also time the pre-fast-path update (autograd) in alternating rounds",
    )
    parser.add_argument("--rounds", type=int, default=5, help="updates: timed rounds per path")
    parser.add_argument("--per-round", type=int, default=200, help="updates: updates per round")
    parser.add_argument(
        "--imagination-updates",
        type=lambda v: None if v == "paper" else int(v),
        default=5,
        help="model-based: updates from R_f per real step ('paper' = I·l)",
    )
    parser.add_argument(
        "--imagination-off-after",
        type=int,
        default=None,
        help="model-based: switch imagination rollouts off after this many episodes",
    )
    parser.add_argument(
        "--imagination-capacity",
        type=int,
        default=None,
        help="model-based: size of R_f (small = only recent, local imagined data)",
    )
    parser.add_argument("--rollout-length", type=int, default=5)
    parser.add_argument(
        "--warmup-steps",
        type=int,
        default=None,
        help="model-based: real transitions in R before the first update (all variants)",
    )
    parser.add_argument(
        "--linear-state",
        choices=["joint", "observation"],
        default=None,
        help="model-based: what the linear model steps (default: the schema's, joint)",
    )
    parser.add_argument(
        "--envs",
        nargs="*",
        choices=[*DEFAULT_NAF_ENVS, ARM7_FIXED, ARM7_RANDOM],
        help=f"naf suite: which environments (default {' '.join(DEFAULT_NAF_ENVS)})",
    )
    parser.add_argument(
        "--env",
        default=REACHER_FIXED,
        choices=[REACHER_FIXED, ARM7_FIXED],
        help="model-based: the fixed-target task",
    )
    parser.add_argument(
        "--env-kwargs",
        type=yaml.safe_load,
        default=None,
        help="model-based: env.kwargs as YAML, e.g. '{command_interface: velocity}'",
    )
    parser.add_argument("--eval-every", type=int, default=None, help="episodes between evaluations")
    parser.add_argument(
        "--eval-episodes",
        type=int,
        default=None,
        help="evaluation episodes (default: naf 5, model-based 3)",
    )
    parser.add_argument("--variants", nargs="*", choices=list(MODEL_BASED_VARIANTS))
    parser.add_argument("--workers", type=int, default=2)
    return parser


SUITES = {
    "naf": bench_naf,
    "model-based": bench_model_based,
    "updates": bench_updates,
    "report": bench_report,
}
