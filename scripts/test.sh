#!/usr/bin/env bash
# The test command: set up (if needed), lint, then the whole suite (colcon build included).
set -eo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
cd "$NAF_ROS_ROOT"
echo "[test] ruff"
ruff check .
echo "[test] pytest"
python -m pytest -q -p no:cacheprovider "$@" test
