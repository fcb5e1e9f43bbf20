#!/usr/bin/env bash
# Sourced by main.sh and test.sh: creates the virtual environment once (again only when
# requirements.txt changes) and exports what the package and its node processes need.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${NAF_ROS_VENV:-$ROOT/.venv}"
STAMP="$VENV/.requirements.sha256"
WANT="$(sha256sum "$ROOT/requirements.txt" | cut -d' ' -f1)"
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "naf_ros needs Python >= 3.10 (found $(python3 --version 2>&1))" >&2
  return 1 2>/dev/null || exit 1
fi
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
  echo "[setup] installing into $VENV (first run only; takes a few minutes)"
  python3 -m venv "$VENV" || { return 1 2>/dev/null || exit 1; }
  "$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
  # torch first and pinned, so nothing else can pull a CUDA build.
  "$VENV/bin/python" -m pip install -q torch==2.13.0 2>&1 | grep -v '^WARNING: Location' || true
  if ! "$VENV/bin/python" -m pip install -q -r "$ROOT/requirements.txt" 2>&1 \
      | grep -v '^WARNING: Location'; then :; fi
  "$VENV/bin/python" -c 'import torch, mujoco, gymnasium, rclpy, yaml' \
    || { echo "[setup] install failed" >&2; return 1 2>/dev/null || exit 1; }
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# DDS discovery stays on this machine unless the user widens it.
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export NAF_ROS_ROOT="$ROOT"
