"""``naf-ros bench model-error``: how far imagined rollouts drift from the real arm.

Why: imagination rollouts help only as far as the model predicts what the policy's actions
do. This trains NAF on the fixed-target reacher (imagination off, so the data are NAF's own)
and, at chosen episodes, fits each model to the latest n episodes as Algorithm 2 does, then
rolls mu + exploration noise from B_old states through the model and through the simulator
with the same noise. It reports the fingertip error and reward error after k steps.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from naf_ros.bench.common import portable
from naf_ros.config import config_from_dict

MODELS = ("linear (observation)", "linear (joint)", "-NN")
HORIZONS = (1, 3, 5, 10)


def _rollout(model, agent, task, x0, t0, horizon, seed, noise, T):
    """States and rewards of mu + Gaussian noise rolled through ``model`` (seeded noise)."""
    rng = np.random.default_rng(seed)
    xs, rs, x, t = [x0], [], x0.copy(), t0.copy()
    for _ in range(horizon):
        u = np.clip(agent.mu_batch(x) + noise * rng.standard_normal((len(x), task.act_dim)), -1, 1)
        rs.append(task.reward(x, u))
        x = model.predict(np.minimum(t, T - 1), x, u)
        t = t + 1
        xs.append(x)
    return xs, rs


def measure(trainer, starts: int = 200, seed: int = 1) -> dict:
    """Errors of each model at the trainer's current state (B_old = its latest n episodes)."""
    from naf_ros.core.dynamics import DynamicsPrior, fit_linear_gaussian
    from naf_ros.core.joint_dynamics import fit_joint_space
    from naf_ros.core.nn_dynamics import GlobalNNDynamics
    from naf_ros.core.true_model import TrueSimModel
    from naf_ros.envs.configured import make_kwargs

    mbased, cfg = trainer.model_based, trainer.cfg
    task = mbased.task
    # pooled (x, u, x') per episode, oldest first
    history = list(mbased.fit_step.fitter.prior._episodes)
    H = np.stack(history)
    nx, nu = trainer.obs_dim, trainer.act_dim
    Xh = np.concatenate([H[:, :, :nx], H[:, -1:, nx + nu :]], axis=1)
    Uh = H[:, :, nx : nx + nu]
    n = cfg.model_based.episodes_per_fit
    X, U = Xh[-n:], Uh[-n:]
    T = U.shape[1]
    models = {}
    obs_prior = DynamicsPrior(max_episodes=cfg.model_based.prior_episodes)
    obs_prior.update(Xh, Uh)
    models["linear (observation)"] = fit_linear_gaussian(X, U, obs_prior)
    joint_prior = DynamicsPrior(max_episodes=cfg.model_based.prior_episodes)
    fit_joint_space(task, Xh[:-n], Uh[:-n], joint_prior)
    models["linear (joint)"] = fit_joint_space(task, X, U, joint_prior)
    nn = GlobalNNDynamics(nx, nu, seed=cfg.train.seed)
    nn.fit(Xh, Uh, n_steps=300)
    models["-NN"] = nn
    rng = np.random.default_rng(seed)
    ep = rng.integers(0, n, starts)
    t0 = rng.integers(0, T - max(HORIZONS), starts)
    x0 = X[ep, t0]
    noise = cfg.exploration.scale
    true = TrueSimModel(cfg.env.id, make_kwargs(cfg))
    ref_x, ref_r = _rollout(true, trainer.agent, task, x0, t0, max(HORIZONS), seed, noise, T)
    out = {}
    d = task.delta_slice
    for name, model in models.items():
        xs, rs = _rollout(model, trainer.agent, task, x0, t0, max(HORIZONS), seed, noise, T)
        out[name] = {
            "tip_error_m": {
                k: float(np.mean(np.linalg.norm(xs[k][:, d] - ref_x[k][:, d], axis=1)))
                for k in HORIZONS
            },
            "reward_error": {k: float(np.mean(np.abs(rs[k - 1] - ref_r[k - 1]))) for k in HORIZONS},
        }
    out["mean_abs_reward"] = float(np.mean(np.abs(np.concatenate(ref_r))))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="naf-ros bench model-error", description=__doc__)
    parser.add_argument("--at", type=int, nargs="+", default=[10, 20, 40])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--hidden", type=lambda s: [int(v) for v in s.split(",")], default=[64, 64])
    parser.add_argument("--out", type=Path, default=Path("bench_results"))
    args = parser.parse_args(argv)
    from naf_ros.bench.common import REACHER_FIXED, machine
    from naf_ros.core.trainer import Trainer

    results: dict = {}
    for seed in range(args.seeds):
        cfg = config_from_dict(
            {
                "env": {"id": REACHER_FIXED},
                "agent": {"hidden": args.hidden},
                "model_based": {"enabled": True, "imagination_off_after": 0},
                "train": {"episodes": max(args.at), "seed": seed, "progress": False},
            }
        )
        run_dir = args.out / "runs" / "model_error" / f"s{seed}"
        trainer = Trainer(cfg, run_dir=run_dir, log=None)
        for episode in range(1, max(args.at) + 1):
            trainer.run_episode()
            if episode in args.at:
                results.setdefault(str(episode), []).append(measure(trainer, seed=seed))
    summary: dict = {}
    print(f"{'episode':>7} {'model':22} " + " ".join(f"tip@{k:<3}(cm)" for k in HORIZONS))
    for episode, runs in results.items():
        summary[episode] = {}
        for name in MODELS:
            tip = {k: float(np.mean([r[name]["tip_error_m"][k] for r in runs])) for k in HORIZONS}
            rew = {k: float(np.mean([r[name]["reward_error"][k] for r in runs])) for k in HORIZONS}
            summary[episode][name] = {"tip_error_m": tip, "reward_error": rew}
            print(f"{episode:>7} {name:22} " + " ".join(f"{100 * tip[k]:>11.2f}" for k in HORIZONS))
    payload = {
        "suite": "model_error",
        "seeds": args.seeds,
        "horizons": list(HORIZONS),
        "summary": summary,
        "runs": results,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "model_error.json").write_text(json.dumps(portable(payload, args.out), indent=2))
    _plot(summary, args.out / "model_error.png")
    print(f"\nwrote {args.out}/model_error.json")
    return 0


def _plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(summary), figsize=(4 * len(summary), 3.2), squeeze=False)
    for ax, (episode, models) in zip(axes[0], summary.items()):
        for name, vals in models.items():
            ks = [int(k) for k in vals["tip_error_m"]]
            ax.plot(ks, [100 * v for v in vals["tip_error_m"].values()], marker="o", label=name)
        ax.set_title(f"after {episode} episodes")
        ax.set_xlabel("imagined steps k")
        ax.set_ylabel("tip error (cm)")
        ax.set_yscale("log")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
