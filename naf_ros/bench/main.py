"""The dispatcher behind ``naf-ros bench`` and ``python -m naf_ros.bench``.

Why separate: ``graph``, ``model-error``, ``mutants``, ``precision``, ``table1`` and ``tune``
have option sets of their own, so the suite name decides which parser reads the rest of the
command line; each suite's module is imported only when that suite runs (the graph suite
needs rclpy, the others torch).
"""

from __future__ import annotations

import sys

import naf_ros.bench


def main(argv: list[str] | None = None) -> int:
    """Run one suite; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["model-error"]:  # its own options (see --help there)
        from naf_ros.bench.model_error import main as model_error_main

        return model_error_main(argv[1:])
    if argv[:1] == ["precision"]:  # NAF/DDPG/SVG(1)-ER tip precision (own options)
        from naf_ros.bench.precision import main as precision_main

        return precision_main(argv[1:])
    if argv[:1] == ["table1"]:  # the paper's Table 1: NAF, DDPG, SVG(1)-ER (own options)
        from naf_ros.bench.table1 import main as table1_main

        return table1_main(argv[1:])
    if argv[:1] == ["tune"]:  # lr x noise x batch norm per method, held-out seeds (own options)
        from naf_ros.bench.tune import main as tune_main

        return tune_main(argv[1:])
    if argv[:1] == ["mutants"]:  # planted bugs vs the oracle tests (needs a source checkout)
        from naf_ros.bench.mutants import main as mutants_main

        return mutants_main(argv[1:])
    if argv[:1] == ["graph"]:  # the graph suite has its own options (see --help there)
        from naf_ros.bench.graph.harness import build_parser as graph_parser
        from naf_ros.bench.graph.suite import main as graph_main

        return graph_main(graph_parser().parse_args(argv[1:]))
    from naf_ros.bench.learning import SUITES, build_parser

    args = build_parser(naf_ros.bench.__doc__.splitlines()[0]).parse_args(argv)
    if args.suite not in SUITES:  # suite named after other options: graph with our flags
        from naf_ros.bench.graph.suite import main as graph_main

        return graph_main(args)
    SUITES[args.suite](args)
    print(f"\nwrote {args.out}/")
    return 0
