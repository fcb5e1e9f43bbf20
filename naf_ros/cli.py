"""``naf-ros``: the command-line entry point (train, bench, launch).

Configuration problems end in one line on stderr and exit code 2, with nothing written.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack

from naf_ros.config import ConfigError, load_config


def _train(args: argparse.Namespace) -> int:
    """In-process training; the bag side (``bag.warm_start``, ``bag.record``) is wired here,
    so the trainer itself knows nothing of rosbag2."""
    cfg = load_config(args.config, args.set)
    if args.run_dir:
        cfg.train.run_dir = args.run_dir
    from naf_ros.bag.format import BagError
    from naf_ros.bag.reader import warm_start_replay
    from naf_ros.bag.writer import BagRecorder
    from naf_ros.core.trainer import Trainer

    trainer = Trainer(cfg)  # makes the environments: a config error stops here, nothing written
    try:
        if cfg.bag.warm_start:
            n = warm_start_replay(trainer.replay, cfg.bag.warm_start)
            print(f"warm start: {n} transitions from {len(cfg.bag.warm_start)} bag(s)", flush=True)
        with ExitStack() as stack:  # the bag is closed (readable) even if training fails
            recorder = None
            if cfg.bag.record:
                recorder = stack.enter_context(BagRecorder(trainer.run_dir / cfg.bag.record))
            print(
                f"training {cfg.agent.algorithm} on {cfg.env.id} -> {trainer.run_dir}", flush=True
            )
            summary = trainer.train(resume=args.resume, recorder=recorder)
    except BagError as exc:
        print(f"naf-ros: {exc}", file=sys.stderr)
        return 2
    print(
        f"done: {summary['episodes']} episodes, {summary['env_steps']} steps, "
        f"best eval return {summary['best_eval_return']}, final tip distance "
        f"{summary['final_eval_tip_distance']}, {summary['updates_per_s']:.0f} updates/s; "
        f"run folder {trainer.run_dir}"
    )
    return 0


def _bench(args: argparse.Namespace) -> int:
    from naf_ros.bench.main import main as bench_main

    return bench_main(args.bench_args)


def _train_offline(args: argparse.Namespace) -> int:
    from naf_ros.bag.offline import main as offline_main

    return offline_main(args.offline_args)


def _launch(args: argparse.Namespace) -> int:
    from naf_ros.bringup.launcher import main as launch_main

    return launch_main(args.launch_args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="naf-ros", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train NAF in-process on a Gymnasium environment")
    train.add_argument("--config", "-c", help="YAML config (defaults are used when omitted)")
    train.add_argument(
        "--set",
        "-s",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value (repeatable)",
    )
    train.add_argument("--run-dir", help="output folder (overrides train.run_dir)")
    train.add_argument("--resume", action="store_true", help="continue from run-dir/checkpoint.pt")
    train.set_defaults(func=_train)
    offline = sub.add_parser(
        "train-offline", help="train from rosbag2 experience only", add_help=False
    )
    offline.add_argument("offline_args", nargs=argparse.REMAINDER)
    offline.set_defaults(func=_train_offline)
    bench = sub.add_parser("bench", help="benchmarks (learning curves, throughput)")
    bench.add_argument("bench_args", nargs=argparse.REMAINDER)
    bench.set_defaults(func=_bench)
    launch = sub.add_parser("launch", help="bring up the ROS 2 node graph from its YAML")
    launch.add_argument("launch_args", nargs=argparse.REMAINDER)
    launch.set_defaults(func=_launch)
    return parser


# Subcommands with their own argument parsers get the rest of the command line untouched.
PASS_THROUGH = {
    "launch": ("naf_ros.bringup.launcher", "launch_args"),
    "bench": ("naf_ros.bench.main", "bench_args"),
    "train-offline": ("naf_ros.bag.offline", "offline_args"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASS_THROUGH:
        rest = argv[1:]
        argv = [argv[0], "--", *rest] if rest and rest[0] != "--" else argv
    args = build_parser().parse_args(argv)
    for attr in ("launch_args", "bench_args", "offline_args"):
        if getattr(args, attr, None) and getattr(args, attr)[0] == "--":
            setattr(args, attr, getattr(args, attr)[1:])
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"naf-ros: config error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("naf-ros: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
