"""``naf-ros bench tune`` without training: a stub runner returns evaluation curves whose
level is a known function of the config, so the grid each method gets, where its noise scale
goes, the pick (the argmax of the scores) and the held-out runs can be checked exactly."""

from __future__ import annotations

import json
import math

import pytest

from naf_ros.bench.main import main as bench_main
from naf_ros.bench.tune import bench_tune, build_parser, method_grid, pick_best, score
from naf_ros.config import config_from_dict


def level(method: str, point: dict) -> float:
    """A made-up return per grid point: best at lr 1e-2, noise 1.0, no batch norm (off the
    defaults, so the pick must come from the scores)."""
    bonus = {"naf": 0.0, "ddpg": -1.0, "svg1er": -2.0}[method]
    lr_gap = abs(math.log10(point["lr"]) + 2)
    return bonus - lr_gap - abs(point["noise"] - 1.0) - 0.5 * point["batch_norm"]


def point_of(cfg: dict) -> dict:
    """The grid point a run config carries (SVG(1)-ER's noise is its sigma floor)."""
    agent = cfg["agent"]
    svg = agent["algorithm"] == "svg1er"
    noise = agent.get("policy_std_min", 0.1) if svg else cfg["exploration"]["scale"]
    return {"lr": agent["lr"], "noise": noise, "batch_norm": agent["batch_norm"]}


class StubRunner:
    """Stands in for ``run_jobs``: records the jobs and returns trainer-like summaries."""

    def __init__(self) -> None:
        self.calls: list[list[dict]] = []

    def __call__(self, jobs: list[dict], workers: int) -> list[dict]:
        self.calls.append(jobs)
        out = []
        for job in jobs:
            cfg = job["config"]
            config_from_dict(cfg)  # every job the suite starts is a valid config
            v, seed = level(cfg["agent"]["algorithm"], point_of(cfg)), cfg["train"]["seed"]
            rets = [v - 5.0, v + 0.5, v - 0.25, v + seed * 0.01, v - 0.25 + seed * 0.01]
            out.append(
                {
                    "label": job["label"],
                    "seed": seed,
                    "eval_curve": {"episode": [10, 20, 30, 40, 50], "return": rets},
                    "final_eval_return": rets[-1],
                    "best_eval_return": max(rets),
                    "final_eval_tip_distance": None,
                    "episodes_to_within_5pct": None,
                    "env_steps": 100,
                    "updates_per_s": 1.0,
                    "wall_s": 1.0,
                }
            )
        return out


def args_for(tmp_path, *extra: str):
    return build_parser().parse_args(["--out", str(tmp_path), "--workers", "1", *extra])


def test_each_method_gets_the_grid_its_config_accepts(tmp_path):
    args = args_for(tmp_path)
    train = {"episodes": 2, "eval_every": 1}
    naf, refused = method_grid(args, "naf", "NafRos/Reacher3DOFFixed-v0", train)
    assert len(naf) == 18 and refused == []
    svg, refused = method_grid(args, "svg1er", "NafRos/Reacher3DOFFixed-v0", train)
    assert len(svg) == 9 and not any(p["batch_norm"] for p in svg)
    assert refused == ["agent.batch_norm: not supported by agent.algorithm 'svg1er'"]


def test_score_is_the_mean_of_the_last_evaluations_and_the_pick_its_argmax():
    summary = {"eval_curve": {"return": [-9.0, -1.0, -2.0, -3.0]}}
    assert score(summary, 3) == pytest.approx(-2.0)
    assert math.isnan(score({"eval_curve": {"return": []}}, 3))
    assert math.isnan(score({"eval_curve": {"return": [1.0, float("nan")]}}, 3))
    assert pick_best([-3.0, float("nan"), -1.0, -2.0, -1.0]) == 2  # first of equal bests
    assert pick_best([float("nan")]) is None


def test_search_picks_each_methods_argmax_and_checks_it_on_held_out_seeds(tmp_path):
    runner = StubRunner()
    args = args_for(tmp_path, "--tune-seed", "3", "--held-out-seeds", "5", "6")
    payload = bench_tune(args, runner=runner)
    grid_jobs, held_jobs = runner.calls
    assert {j["config"]["train"]["seed"] for j in grid_jobs} == {3}
    assert len(grid_jobs) == 18 + 18 + 9
    svg_cfgs = [j["config"] for j in grid_jobs if j["config"]["agent"]["algorithm"] == "svg1er"]
    # SVG(1)-ER's noise is its sigma floor; the others' is exploration.scale
    assert sorted({c["agent"]["policy_std_min"] for c in svg_cfgs}) == [0.1, 0.3, 1.0]
    assert {c["exploration"]["kind"] for c in svg_cfgs} == {"policy"}
    for method, entry in payload["methods"].items():
        scores = [g["score"] for g in entry["grid"]]
        best = entry["grid"][max(range(len(scores)), key=scores.__getitem__)]
        assert entry["pick"] == {"lr": 1e-2, "noise": 1.0, "batch_norm": False}
        assert entry["pick"] == {k: best[k] for k in ("lr", "noise", "batch_norm")}
        assert entry["pick_score"] == max(scores)
        default_noise = 0.1 if method == "svg1er" else 0.3
        assert entry["default"] == {"lr": 1e-3, "noise": default_noise, "batch_norm": False}
        # held out: pick and default on seeds 5 and 6 only
        for variant, point in (("pick", entry["pick"]), ("default", entry["default"])):
            stats = entry[f"held_out_{variant}"]
            assert stats["seeds"] == [5, 6]
            want = level(method, point) - 0.25 + 0.055  # the stub's last return, seed mean
            assert stats["final_eval_return"] == pytest.approx(want)
    assert payload["methods"]["svg1er"]["refused"]
    assert {j["config"]["train"]["seed"] for j in held_jobs} == {5, 6}
    assert len(held_jobs) == 3 * 2 * 2
    saved = json.loads((tmp_path / "tune.json").read_text())
    assert saved["methods"]["naf"]["pick"]["lr"] == 1e-2
    assert (tmp_path / "tune_scores.png").stat().st_size > 0


def test_a_pick_equal_to_the_defaults_runs_its_held_out_seeds_once(tmp_path):
    runner = StubRunner()
    args = args_for(tmp_path, "--methods", "naf", "--lrs", "1e-3", "--noises", "0.3",
                    "--batch-norm", "off")  # fmt: skip
    payload = bench_tune(args, runner=runner)
    assert len(runner.calls[1]) == 2  # two held-out seeds, one config
    entry = payload["methods"]["naf"]
    assert entry["pick"] == entry["default"]
    assert entry["held_out_pick"] == entry["held_out_default"]


def test_tuning_seed_must_not_be_held_out(tmp_path):
    with pytest.raises(SystemExit, match="held-out"):
        bench_tune(args_for(tmp_path, "--held-out-seeds", "0", "1"), runner=StubRunner())


def test_the_dispatcher_knows_the_suite(capsys):
    with pytest.raises(SystemExit) as exc:
        bench_main(["tune", "--help"])
    assert exc.value.code == 0
    assert "--held-out-seeds" in capsys.readouterr().out
