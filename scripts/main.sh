#!/usr/bin/env bash
# The main job: set up (if needed), then train NAF on the simulated 3-DOF reacher through the
# ROS 2 node graph (sim_bridge, naf_policy, learner, dynamics_fitter, ilqg_explorer), each
# node its own process, brought up from config/reacher_sim.yaml. Extra arguments go to
# `naf-ros launch` (e.g. --episodes 50, --arms 2, --mode realtime, --set agent.lr=1e-4).
set -eo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$NAF_ROS_ROOT"
exec python -m naf_ros.cli launch "$@"
