"""``naf-ros bench``: learning-curve and throughput benchmarks (numbers, JSON and plots).

Benchmarks are not tests: they print figures and write ``<out>/<suite>.json`` plus PNG
learning curves; BENCHMARKS.md quotes them with the machine they came from.

Suites:
  naf          NAF on Gymnasium Reacher-v5 and the fixed- and random-target 3-DOF reacher,
               3 seeds each (random targets: against the best target-blind constant action)
  model-based  NAF vs. NAF + imagination rollouts (linear, -NN, true model) and iLQG mixing;
               naf_equal_updates: plain NAF with ImR's updates per real step
  updates      learner updates/s for the paper's network sizes
  graph        ROS node graph: lockstep steps/s vs in-process, real-time latency, K arms
  model-error  imagined vs. real rollouts: tip and reward error of each dynamics model
  precision    NAF vs DDPG vs SVG(1)-ER: tip distance and speed at the end of episodes
  table1       the paper's Table 1: NAF vs DDPG vs SVG(1)-ER, episodes to within 5% of the best
  tune         lr x noise x batch norm searched alike per method on one seed; pick vs
               defaults on held-out seeds
  report       tables, JSON and plots rebuilt from finished run folders

Modules: ``common`` (machine record, jobs, aggregation, threshold, output), ``learning``
(naf, model-based, updates, report), ``model_error``, ``precision``, ``table1``, ``tune``,
``graph`` (one module per part) and ``main`` (the dispatcher behind ``naf-ros bench`` and
``python -m naf_ros.bench``).
"""
