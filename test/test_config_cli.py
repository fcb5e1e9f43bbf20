"""Config validation and the trainer CLI's behaviour on bad input."""

import subprocess
import sys

import pytest

from naf_ros.config import ConfigError, config_from_dict, load_config


@pytest.mark.parametrize(
    "override,fragment",
    [
        ("agent.batch_size=-4", "agent.batch_size"),
        ("agent.gamma=1.0", "[0, 1)"),
        ("agent.gamma=-0.1", "agent.gamma"),
        ("agent.lr=fast", "agent.lr: expected float"),
        ("agent.bogus=1", "allowed keys"),
        ("nosuch.key=1", "allowed sections"),
        ("exploration.kind=boltzmann", "one of ou, precision, gaussian, none"),
        ("model_based.model=magic", "linear, nn, true"),
        ("train.episodes=0", "integer > 0"),
    ],
)
def test_bad_values_raise_one_line_error_naming_the_key(override, fragment):
    with pytest.raises(ConfigError) as exc:
        load_config(None, [override])
    message = str(exc.value)
    assert fragment in message
    assert "\n" not in message
    assert override.split("=")[0].split(".")[0] in message


def test_defaults_and_overrides_parse_types():
    cfg = load_config(None, ["agent.lr=1e-4", "agent.hidden=[64, 32]", "agent.grad_clip=null"])
    assert cfg.agent.lr == pytest.approx(1e-4) and isinstance(cfg.agent.lr, float)
    assert cfg.agent.hidden == [64, 32]
    assert cfg.agent.grad_clip is None


def test_bool_is_not_an_int():
    with pytest.raises(ConfigError):
        config_from_dict({"agent": {"batch_size": True}})


def _cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "naf_ros.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["-s", "agent.batch_size=-1"], "agent.batch_size"),
        (["-s", "env.id=NoSuchEnv-v9"], "not a registered Gymnasium environment"),
        (["-s", "env.id=CartPole-v1"], "non-box action_space"),
        (["-s", "agent.gamma=1"], "agent.gamma"),
    ],
)
def test_cli_config_error_is_one_line_and_writes_nothing(args, fragment, tmp_path):
    run_dir = tmp_path / "run"
    proc = _cli("train", *args, "--run-dir", str(run_dir), cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not run_dir.exists()


def test_cli_missing_config_file(tmp_path):
    proc = _cli("train", "-c", str(tmp_path / "nope.yaml"), cwd=tmp_path)
    assert proc.returncode == 2 and "config file not found" in proc.stderr


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "Reacher-v5"])
def test_cli_trains_any_box_env_with_progress_and_run_folder(env_id, tmp_path):
    run_dir = tmp_path / "run"
    proc = _cli(
        "train",
        "-s",
        f"env.id={env_id}",
        "-s",
        "train.episodes=2",
        "-s",
        "train.eval_every=2",
        "-s",
        "train.eval_episodes=1",
        "-s",
        "agent.hidden=[16]",
        "-s",
        "agent.warmup_steps=20",
        "-s",
        "agent.updates_per_step=1",
        "--run-dir",
        str(run_dir),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    progress = [line for line in proc.stdout.splitlines() if line.startswith("ep ")]
    assert len(progress) == 2 and "upd/s" in progress[-1] and "eval" in progress[-1]
    for name in (
        "config.yaml",
        "metrics.csv",
        "learning_curve.png",
        "checkpoint.pt",
        "summary.json",
    ):
        assert (run_dir / name).is_file(), name


@pytest.mark.parametrize(
    "name, hidden, model_based",
    [
        ("train_reacher.yaml", [200, 200], False),
        ("train_reacher_v5.yaml", [200, 200], False),
        ("train_reacher_imr.yaml", [64, 64], True),
    ],
)
def test_shipped_training_configs_validate(name, hidden, model_based):
    """The configs the README points at must load with the schema (no unknown keys)."""
    from pathlib import Path

    cfg = load_config(Path(__file__).resolve().parents[1] / "config" / name)
    assert cfg.agent.hidden == hidden and cfg.model_based.enabled == model_based
