"""``naf-ros train-offline BAG... --updates N --run-dir DIR [--config C] [--set K=V]``.

Reads the bags into a replay buffer (:func:`~naf_ros.bag.reader.replay_from_bags`) and
hands it to :func:`naf_ros.core.offline.train_offline`; no environment is made. Bad bags,
configs or arguments end in one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from naf_ros.bag.format import BagError
from naf_ros.bag.reader import as_paths, replay_from_bags
from naf_ros.config import ConfigError, load_config
from naf_ros.core.offline import train_offline

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    """Train offline from the bags on the command line; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="naf-ros train-offline", description="train NAF offline from rosbag2 experience"
    )
    parser.add_argument("bags", nargs="+", help="rosbag2 folders recorded with BagRecorder")
    parser.add_argument("--updates", type=int, required=True)
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--config", "-c")
    parser.add_argument("--set", "-s", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.set)
        replay, _ = replay_from_bags(args.bags, cfg.agent.replay_capacity)
        bags = {"bags": [str(p) for p in as_paths(args.bags)]}
        summary = train_offline(cfg, replay, args.updates, args.run_dir, print, provenance=bags)
    except (ConfigError, BagError, ValueError) as exc:
        print(f"naf-ros: {exc}", file=sys.stderr)
        return 2
    print(
        f"done: {summary['updates']} updates on {summary['transitions']} transitions, loss "
        f"{summary['loss_first']} -> {summary['loss_last']}; checkpoint {summary['checkpoint']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
