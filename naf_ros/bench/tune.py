"""``naf-ros bench tune``: the paper's sensitive hyperparameters, searched alike for every
method on one tuning seed, then checked on held-out seeds against the defaults.

Why: a comparison of NAF, DDPG and SVG(1)-ER is only fair if each method got the same chance
to be tuned. The paper names batch normalisation (on/off), Adam's learning rate
(1e-4, 1e-3, 1e-2) and the exploration noise scale (0.1, 0.3, 1.0) as the settings results
are sensitive to. Every method here gets that grid on one seed (``--tune-seed``); its pick is
then rerun on seeds the search never saw (``--held-out-seeds``) beside the untuned defaults,
so a pick that only suits the tuning seed shows as no better than the defaults there.

What each grid axis sets (the rest is ``table1.run_config``: the same networks, I, Adam,
replay and budget for every method):

- learning rate: ``agent.lr``. NAF: its one network. DDPG: critic and actor (``agent.actor_lr``
  stays None, i.e. lr, unless ``--actor-lr`` fixes it). SVG(1)-ER: V, model and reward model,
  and the policy likewise.
- batch norm: ``agent.batch_norm`` (NAF, DDPG: after every hidden layer). SVG(1)-ER rejects it
  with a ConfigError (its inferred policy noise would depend on the minibatch), so it searches
  lr x noise only; the report lists every option a method's config refused (the grid is
  whatever ``config_from_dict`` accepts, nothing hard-coded per method).
- noise scale: what each method's exploration magnitude is.

  - NAF, DDPG: ``exploration.scale``, the innovation standard deviation of the
    Ornstein-Uhlenbeck process n_{k+1} = (1 - theta) n_k + scale e_k (theta 0.15; stationary
    std about 1.9 x scale, 0.57 at the default 0.3) added to mu(x) and clipped to [-1, 1];
    with ``--exploration gaussian`` it is the std of i.i.d. N(0, scale^2) noise.
  - SVG(1)-ER: ``exploration.scale`` does nothing (``exploration.kind: policy``: it samples
    tanh(m(x) + sigma(x) xi), xi ~ N(0, I), from its own Gaussian policy). Its magnitude is
    the learned pre-tanh sigma(x), bounded below by ``agent.policy_std_min`` (default 0.1) and
    above by e^0.5; the noise grid sets that floor. sigma starts at 0.5 under floors below
    it (0.1, 0.3) and at 1.28 under the floor 1.0. The floor is the exploration the value
    gradient cannot take away; the numbers are pre-tanh sigmas, not OU innovations, so the
    same value is a comparable, not an identical, amount of noise.

The defaults are what ``table1`` runs: ``--lr`` (None: the config's 1e-3), ``--noise`` for
NAF/DDPG (0.3), the config's sigma floor 0.1 for SVG(1)-ER, no batch norm.

Score of a grid point: the mean return of the last ``--score-last`` evaluations (3), robust
to one lucky or unlucky evaluation and rewarding a policy that stays good. The pick is the
best score (the first in grid order on a tie; the defaults if no run finished with finite
evaluations). Held-out report: final and best evaluation return of pick and defaults, the
mean over held-out seeds and per seed. Writes ``<out>/tune.json``, a score heat map per
method and batch-norm setting (``tune_scores.png``) and the held-out learning curves.
"""

from __future__ import annotations

import argparse
import itertools
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from naf_ros.bench.common import aggregate, finish, run_jobs
from naf_ros.bench.table1 import (
    METHODS,
    TASKS,
    add_method_args,
    budget_episodes,
    no_none,
    run_config,
)
from naf_ros.config import AgentConfig, ConfigError, config_from_dict

LRS = [1e-4, 1e-3, 1e-2]
NOISES = [0.1, 0.3, 1.0]
BATCH_NORM = [False, True]
# Where each method's noise scale goes (see the module docstring).
NOISE_KEYS: dict[str, tuple[str, str]] = {
    "naf": ("exploration", "scale"),
    "ddpg": ("exploration", "scale"),
    "svg1er": ("agent", "policy_std_min"),
}

Runner = Callable[[list[dict], int], list[dict]]


def _bn(on: bool) -> str:
    return "on" if on else "off"


def _axes(point: dict) -> dict:
    """A grid point's settings alone (without its scores)."""
    return {k: point[k] for k in ("lr", "noise", "batch_norm")}


def point_name(point: dict) -> str:
    """A run folder name for a grid point."""
    return f"lr{point['lr']:g}_noise{point['noise']:g}_bn{_bn(point['batch_norm'])}"


def default_point(args: argparse.Namespace, method: str) -> dict:
    """The untuned settings: what ``table1`` runs for ``method``."""
    noise = AgentConfig.policy_std_min if method == "svg1er" else args.noise
    lr = args.lr if args.lr is not None else AgentConfig.lr
    return {"lr": float(lr), "noise": float(noise), "batch_norm": False}


def point_config(
    args: argparse.Namespace, method: str, env_id: str, seed: int, train: dict, point: dict
) -> dict:
    """``table1``'s run config with a grid point's lr, batch norm and noise scale."""
    cfg = run_config(args, method, env_id, seed, train)
    cfg["agent"]["lr"] = point["lr"]
    cfg["agent"]["batch_norm"] = point["batch_norm"]
    section, key = NOISE_KEYS[method]
    cfg[section][key] = point["noise"]
    return cfg


def method_grid(
    args: argparse.Namespace, method: str, env_id: str, train: dict
) -> tuple[list[dict], list[str]]:
    """The grid points ``method`` accepts, and each distinct ConfigError of those it refused
    (the report says which options a method could not search)."""
    points, refused = [], []
    for lr, noise, bn in itertools.product(args.lrs, args.noises, args.batch_norm):
        point = {"lr": float(lr), "noise": float(noise), "batch_norm": bn}
        try:
            config_from_dict(point_config(args, method, env_id, args.tune_seed, train, point))
        except ConfigError as exc:
            if str(exc) not in refused:
                refused.append(str(exc))
            continue
        points.append(point)
    return points, refused


def score(summary: dict, last: int) -> float:
    """Mean return of the last ``last`` evaluations; NaN without finite evaluations."""
    returns = np.asarray(summary["eval_curve"]["return"][-last:], dtype=float)
    if returns.size == 0 or not np.all(np.isfinite(returns)):
        return float("nan")
    return float(returns.mean())


def pick_best(scores: list[float]) -> int | None:
    """Index of the best finite score (the first on a tie); None if none is finite."""
    best = None
    for i, s in enumerate(scores):
        if math.isfinite(s) and (best is None or s > scores[best]):
            best = i
    return best


def _held_out_stats(runs: list[dict]) -> dict:
    final = [float(r["final_eval_return"]) for r in runs]
    best = [float(r["best_eval_return"]) for r in runs]
    return {
        "seeds": [r["seed"] for r in runs],
        "final_eval_return": float(np.mean(final)),
        "best_eval_return": float(np.mean(best)),
        "final_eval_return_per_seed": final,
        "best_eval_return_per_seed": best,
    }


def _fmt(point: dict) -> str:
    return f"lr {point['lr']:g}, noise {point['noise']:g}, bn {_bn(point['batch_norm'])}"


def bench_tune(args: argparse.Namespace, runner: Runner = run_jobs) -> dict:
    """Search, pick, check on held-out seeds, report (``runner`` trains a list of jobs)."""
    if args.tune_seed in args.held_out_seeds:
        raise SystemExit("--held-out-seeds must not include --tune-seed")
    env_id, default_steps, default_every = TASKS[args.task]
    steps = args.steps or default_steps
    train = {
        "episodes": args.episodes or budget_episodes(env_id, steps),
        "max_steps": steps,
        "eval_every": args.eval_every or default_every,
    }
    runs = args.out / "runs" / "tune" / args.task
    grids: dict[str, dict] = {}
    jobs = []
    for method in args.methods:
        points, refused = method_grid(args, method, env_id, train)
        grids[method] = {"points": points, "refused": refused}
        for point in points:
            jobs.append(
                {
                    "config": point_config(args, method, env_id, args.tune_seed, train, point),
                    "label": f"{method} {point_name(point)}",
                    "run_dir": str(runs / method / point_name(point) / f"s{args.tune_seed}"),
                }
            )
    grid_results = dict(zip((j["label"] for j in jobs), runner(jobs, args.workers)))

    payload: dict = {
        "suite": "tune",
        "task": args.task,
        "env": env_id,
        "train": train,
        "tune_seed": args.tune_seed,
        "held_out_seeds": list(args.held_out_seeds),
        "score": f"mean return of the last {args.score_last} evaluations (tuning seed)",
        "grid": {"lr": args.lrs, "noise": args.noises, "batch_norm": args.batch_norm},
        "noise_keys": {m: ".".join(NOISE_KEYS[m]) for m in args.methods},
        "methods": {},
        "envs": {},
    }
    held_jobs, twins = [], []
    for method in args.methods:
        points = grids[method]["points"]
        results = [grid_results[f"{method} {point_name(p)}"] for p in points]
        scores = [score(r, args.score_last) for r in results]
        best = pick_best(scores)
        default = default_point(args, method)
        pick = points[best] if best is not None else default
        payload["methods"][method] = {
            "name": METHODS[method],
            "noise_key": ".".join(NOISE_KEYS[method]),
            "grid": [
                {
                    **p,
                    "score": s,
                    "final_eval_return": r.get("final_eval_return"),
                    "best_eval_return": r.get("best_eval_return"),
                    "wall_s": r.get("wall_s"),
                }
                for p, s, r in zip(points, scores, results)
            ],
            "refused": grids[method]["refused"],
            "pick": pick,
            "pick_score": scores[best] if best is not None else None,
            "no_finite_score": best is None,
            "default": default,
        }
        variants = [("pick", pick)] + ([] if pick == default else [("default", default)])
        if pick == default:
            twins.append(method)
        for variant, point in variants:
            for seed in args.held_out_seeds:
                held_jobs.append(
                    {
                        "config": point_config(args, method, env_id, seed, train, point),
                        "label": f"{METHODS[method]} {variant}",
                        "run_dir": str(runs / method / f"{variant}_{point_name(point)}/s{seed}"),
                    }
                )
    held = no_none(runner(held_jobs, args.workers))
    for method in twins:  # the pick is the default: its held-out runs serve both rows
        held += [{**r, "label": f"{METHODS[method]} default"} for r in held
                 if r["label"] == f"{METHODS[method]} pick"]  # fmt: skip
    for method in args.methods:
        entry = payload["methods"][method]
        for variant in ("pick", "default"):
            label = f"{METHODS[method]} {variant}"
            entry[f"held_out_{variant}"] = _held_out_stats([r for r in held if r["label"] == label])
    order = [f"{METHODS[m]} {v}" for m in args.methods for v in ("pick", "default")]
    variants = aggregate(sorted(held, key=lambda r: order.index(r["label"])))
    payload["envs"][env_id] = variants
    print_report(payload)
    out = finish("tune", args.out, payload, "Tuned vs default, held-out seeds")
    plot_scores(payload, args.out / "tune_scores.png")
    return out


def print_report(payload: dict) -> None:
    """Per method: the grid's scores, the pick, held-out pick against defaults."""
    print(f"\n{payload['task']} ({payload['env']}), tuning seed {payload['tune_seed']}; "
          f"score: {payload['score']}")  # fmt: skip
    for m in payload["methods"].values():
        print(f"\n{m['name']}: noise = {m['noise_key']}; {len(m['grid'])} grid points")
        for reason in m["refused"]:
            print(f"  not searched: {reason}")
        print(f"  {'lr':>7s} {'noise':>6s} {'bn':>3s} {'score':>9s} {'final':>9s} {'wall s':>7s}")
        ranked = sorted(m["grid"], key=lambda g: -g["score"] if math.isfinite(g["score"]) else 1e18)
        for g in ranked:
            mark = " <- pick" if _axes(g) == m["pick"] else ""
            print(
                f"  {g['lr']:7g} {g['noise']:6g} {_bn(g['batch_norm']):>3s} "
                f"{g['score']:9.3f} {_num(g['final_eval_return'])} {_num(g['wall_s'], 7, 0)}{mark}"
            )
        if m["no_finite_score"]:
            print("  no grid point finished with finite evaluations: the defaults stand in")
    seeds = " ".join(str(s) for s in payload["held_out_seeds"])
    print(f"\nheld-out seeds {seeds}: mean final / best evaluation return")
    print(f"{'method':10s} {'pick':34s} {'final':>9s} {'best':>9s}   {'default final':>13s} "
          f"{'best':>9s}")  # fmt: skip
    for m in payload["methods"].values():
        p, d = m["held_out_pick"], m["held_out_default"]
        print(
            f"{m['name']:10s} {_fmt(m['pick']):34s} {_num(p['final_eval_return'])} "
            f"{_num(p['best_eval_return'])}   {_num(d['final_eval_return'], 13)} "
            f"{_num(d['best_eval_return'])}"
        )


def _num(value, width: int = 9, digits: int = 3) -> str:
    if value is None or not math.isfinite(value):
        return f"{'n/a':>{width}s}"
    return f"{value:{width}.{digits}f}"


def plot_scores(payload: dict, path: Path) -> None:
    """One heat map of scores over lr x noise per method (row) and batch norm (column); a
    setting a method refuses is a grey panel; the pick is boxed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = payload["methods"]
    lrs, noises, bns = (payload["grid"][k] for k in ("lr", "noise", "batch_norm"))
    fig, axes = plt.subplots(
        len(methods), len(bns), figsize=(3.6 * len(bns), 2.9 * len(methods)), squeeze=False
    )
    for row, m in zip(axes, methods.values()):
        grid = {(g["lr"], g["noise"], g["batch_norm"]): g["score"] for g in m["grid"]}
        finite = [s for s in grid.values() if math.isfinite(s)]
        lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
        for ax, bn in zip(row, bns):
            ax.set_title(f"{m['name']}, batch norm {_bn(bn)}", fontsize=9)
            ax.set_xticks(range(len(noises)), [f"{n:g}" for n in noises])
            ax.set_yticks(range(len(lrs)), [f"{lr:g}" for lr in lrs])
            ax.set_xlabel(m["noise_key"], fontsize=8)
            ax.set_ylabel("lr", fontsize=8)
            if not any(k[2] == bn for k in grid):
                ax.set_xlim(-0.5, len(noises) - 0.5)
                ax.set_ylim(-0.5, len(lrs) - 0.5)
                ax.set_facecolor("0.85")
                ax.text(0.5, 0.5, "refused by its config", ha="center", va="center",
                        transform=ax.transAxes)  # fmt: skip
                continue
            img = np.array([[grid.get((lr, n, bn), np.nan) for n in noises] for lr in lrs])
            ax.imshow(img, cmap="viridis", vmin=lo, vmax=hi, origin="lower", aspect="auto")
            for (i, j), v in np.ndenumerate(img):
                if math.isfinite(v):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="w")
            p = m["pick"]
            if p["batch_norm"] == bn and p["lr"] in lrs and p["noise"] in noises:
                i, j = lrs.index(p["lr"]), noises.index(p["noise"])
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="r", lw=2))
    fig.suptitle(f"{payload['env']}: score on seed {payload['tune_seed']} (pick boxed)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _on_off(text: str) -> bool:
    if text not in ("on", "off"):
        raise argparse.ArgumentTypeError("on or off")
    return text == "on"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="naf-ros bench tune",
        description="Search lr x noise scale x batch norm alike for NAF, DDPG and SVG(1)-ER on "
        "one tuning seed, then compare each method's pick with the defaults on held-out seeds. "
        "--lr and --noise set the defaults the pick is compared against.",
    )
    add_method_args(parser, seeds=False)
    parser.add_argument("--task", choices=list(TASKS), default="reacher3-fixed")
    parser.add_argument(
        "--steps", type=int, default=None, help="step budget per run (default: the task's)"
    )
    parser.add_argument(
        "--eval-every", type=int, default=None, help="evaluation period in episodes"
    )
    parser.add_argument("--episodes", type=int, default=None, help="episode cap (smoke runs)")
    parser.add_argument("--tune-seed", type=int, default=0, help="the seed the search runs on")
    parser.add_argument("--held-out-seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--lrs", type=float, nargs="+", default=LRS, help="Adam lr grid")
    parser.add_argument("--noises", type=float, nargs="+", default=NOISES, help="noise grid")
    parser.add_argument(
        "--batch-norm", type=_on_off, nargs="+", default=BATCH_NORM, help="on, off or both"
    )
    parser.add_argument("--score-last", type=int, default=3, help="evaluations the score averages")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    bench_tune(args)
    print(f"\nwrote {args.out}/")
    return 0
