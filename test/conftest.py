"""Test session setup: subprocesses import this checkout, and torch stays single-threaded."""

import os
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p
)
# Two cores are shared by node processes and the test runner: one intra-op thread each.
torch.set_num_threads(1)
