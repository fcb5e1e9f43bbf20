"""Learning-curve bookkeeping: CSV rows, the paper's Table 1 measure, and the plot."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np


def episodes_to_within(episodes: list[int], returns: list[float], fraction: float = 0.05):
    """First episode whose evaluation return is within ``fraction`` of the best (paper Table 1).

    Returns (episode, best_return); (None, None) if there are no evaluations.
    """
    if not returns:
        return None, None
    best = max(returns)
    threshold = best - fraction * abs(best)
    for ep, ret in zip(episodes, returns):
        if ret >= threshold:
            return int(ep), float(best)
    return None, float(best)


class MetricsLog:
    """Appends one CSV row per episode; keeps the columns fixed from the first row."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []
        self._fields: list[str] | None = None

    def append(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if self._fields is None:
            self._fields = list(row)
            with self.path.open("w", newline="") as fh:
                csv.DictWriter(fh, self._fields).writeheader()
        with self.path.open("a", newline="") as fh:
            csv.DictWriter(fh, self._fields, extrasaction="ignore").writerow(row)

    def column(self, name: str) -> tuple[list[int], list[float]]:
        eps, vals = [], []
        for row in self.rows:
            v = row.get(name)
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                eps.append(int(row["episode"]))
                vals.append(float(v))
        return eps, vals


def plot_curves(
    curves: dict[str, tuple[list, list]],
    path: str | Path,
    title: str,
    ylabel: str = "evaluation return",
) -> None:
    """One line per curve (label -> (episodes, values)); PNG via the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, (x, y) in curves.items():
        if len(x):
            ax.plot(np.asarray(x), np.asarray(y), label=label, lw=1.6)
    ax.set_xlabel("episode")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if len(curves) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
