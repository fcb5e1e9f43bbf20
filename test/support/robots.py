"""Real arm descriptions for the tests: example-robot-data's URDFs (a requirement, so its
absence is an install error, not a reason to skip)."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path


def robots_dir() -> Path:
    """The package's ``robots/`` folder (a data-only wheel: no module, found through its files)."""
    dist = importlib.metadata.distribution("example-robot-data")  # raises if not installed
    return Path(dist.locate_file("cmeel.prefix/share/example-robot-data/robots"))
