#!/usr/bin/env bash
# The main job: set up (if needed), then train NAF on the simulated 3-DOF reacher.
set -eo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$NAF_ROS_ROOT"
exec python -m naf_ros.cli train -c config/train_reacher.yaml "$@"
