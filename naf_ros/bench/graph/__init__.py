"""``naf-ros bench graph``: the ROS 2 node graph measured against the in-process trainer.

Parts (``--parts``, default all); every graph run gets its own ROS domain (a lock file per
id in naf_ros.bringup.domains' BENCH_DOMAINS, apart from the tests' range), loopback-only
discovery, and is torn down (SIGINT, then SIGKILL of its process group) whatever happens:

  throughput  lockstep env steps/s of the whole graph vs. the in-process trainer, same config,
              timed over a fixed number of steps after the replay warm-up (start-up excluded)
  latency     realtime mode: /joint_states -> effort command latency seen by an independent
              subscriber (publisher stamps, DDS reception stamps, missed control periods),
              the policy's in-node figure from /diagnostics, and the same bridge answered by
              a minimal in-callback responder (what rclpy + Fast DDS cost on this machine)
  arms        lockstep collection rate (env steps/s summed over arms) for K arms
  curve       evaluation return vs. episode: ROS graph vs. in-process trainer, same seed
  scaling     K = 1, 2, 4, 8 simulated arms in realtime at 50 Hz, one learner: achieved
              updates per transition against the configured I (paper network; imagination)

Writes ``<out>/graph.json`` and ``<out>/graph_*.png``. ``naf-ros bench graph --help`` (or
``python -m naf_ros.bench.graph --help``) lists this suite's options. Modules: ``harness``
(options, graph runs, probe), ``throughput`` (throughput and arms), ``latency``, ``curve``,
``scaling``, ``suite`` (the parts together, plots, graph.json).
"""
