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


def pytest_terminal_summary(terminalreporter) -> None:
    """Say what this machine cannot test: the CUDA cases exist only where torch sees a device
    (test_fast_update.py's DEVICES), so their absence is printed at the end of every run (the
    README's command runs pytest -q, which hides the header), not hidden."""
    if torch.cuda.is_available():
        line = f"CUDA: {torch.cuda.get_device_name(0)}; the cuda device cases ran"
    else:
        line = "CUDA: not available (torch sees no CUDA device); the cuda device cases did not run"
    terminalreporter.write_line(line)
