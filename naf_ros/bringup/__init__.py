"""Bringing the node graph up without ROS launch tooling.

``launcher`` (``naf-ros launch``) starts the nodes of ``launch/reacher_sim.launch.py`` from
the same YAML; ``progress`` prints what they report; ``proc_group`` starts and stops child
process groups; ``domains`` hands out exclusive ROS domain ids to benchmarks and tests.
"""
