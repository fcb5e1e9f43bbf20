"""``python -m naf_ros.bench.graph``: the graph suite, and the helper processes it starts.

The latency part runs two helpers in child processes of their own (so only they get the
SCHED_FIFO priority): ``--wakeup-jitter N`` and ``--echo-responder``.
"""

import sys

from naf_ros.bench.graph.harness import build_parser
from naf_ros.bench.graph.latency import echo_responder, wakeup_jitter
from naf_ros.bench.graph.suite import main

_cli = build_parser().parse_args()
if _cli.wakeup_jitter is not None:
    sys.exit(wakeup_jitter(_cli.wakeup_jitter))
if _cli.echo_responder:
    sys.exit(echo_responder(_cli.realtime_priority))
sys.exit(main(_cli))
