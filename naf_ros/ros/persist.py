"""A node's state on disk: atomic checkpoints with the last good one kept as ``.prev``.

Every saving node (learner, dynamics fitter, iLQG explorer, policy) goes through
:class:`CheckpointFile`, so they share the rules:

- saves are atomic (``core.checkpoint``: temp file, fsync, rename, checksum, version);
- before a save replaces the newest file, that file — known good, because this process
  wrote or loaded it — is kept as ``<name>.prev`` (hard link, so the newest name never
  disappears);
- on load, a truncated, corrupted, version-mismatched or otherwise unusable newest file is
  renamed aside (``<name>.bad-<time>``), reported in one line, and ``.prev`` is tried;
  nothing is ever overwritten: if a bad file cannot be moved aside, saving stops rather
  than write over it;
- a failing save (full disk, read-only folder) raises nothing: it is counted and its
  reason kept for ``/diagnostics``, and the node carries on.

Importing this module does not import torch; saving and loading do.
"""

from __future__ import annotations

import importlib
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# What a payload that does not fit (wrong kind, shapes, missing keys) raises while applied.
APPLY_ERRORS = (ValueError, KeyError, TypeError, RuntimeError, AttributeError, IndexError)


class CheckpointFile:
    """One node's checkpoint ``path`` (and ``path.prev``) in the run folder."""

    def __init__(self, path: str | Path, log: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self.prev = self.path.with_name(self.path.name + ".prev")
        self._log = log or (lambda _msg: None)
        self.newest_good = False  # this process wrote or verified the newest file
        self.blocked: str | None = None  # why saving is refused (an unmovable bad file)
        self.saves = 0
        self.failures = 0
        self.last_error: str | None = None
        self.last_bytes = 0
        self.last_seconds = 0.0
        self.loaded_from: Path | None = None

    @staticmethod
    def warm_up() -> None:
        """Import the checkpoint code (torch) in the background, now, while the node idles:
        importing it at the first save would stall that node's callbacks for seconds."""
        threading.Thread(
            target=importlib.import_module,
            args=("naf_ros.core.checkpoint",),
            name="checkpoint-import",
            daemon=True,
        ).start()

    # --- loading ----------------------------------------------------------------------------
    def load(self, apply: Callable[[dict], Any]) -> Path | None:
        """Apply the newest usable checkpoint (newest, else ``.prev``); returns its path.

        ``apply(payload)`` must be all-or-nothing (build new state, assign on success) and
        raise one of ``APPLY_ERRORS`` if the payload does not fit this node.
        """
        if not (self.path.exists() or self.prev.exists()):
            return None  # (and no torch import for nothing)
        from naf_ros.core.checkpoint import CheckpointError, load_checkpoint

        for candidate in (self.path, self.prev):
            if not candidate.exists():
                continue
            try:
                apply(load_checkpoint(candidate))
            except (CheckpointError, *APPLY_ERRORS) as exc:
                reason = str(exc) if isinstance(exc, CheckpointError) else _one_line(exc)
                reason = reason.replace(f"{candidate}: ", "")
                moved = self._move_aside(candidate)
                fallback = (
                    f"; trying {self.prev.name}"
                    if candidate == self.path and self.prev.exists()
                    else "; starting fresh"
                )
                kept = f"kept as {moved.name}" if moved else "could not be moved aside"
                self._log(f"checkpoint unusable ({reason}); {candidate.name} {kept}{fallback}")
                if moved is None and candidate == self.path:
                    self.blocked = (
                        f"{candidate} is unusable and cannot be moved aside; not saving over it"
                    )
                continue
            self.loaded_from = candidate
            self.newest_good = candidate == self.path
            return candidate
        return None

    def _move_aside(self, path: Path) -> Path | None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for i in range(1000):
            bad = path.with_name(f"{path.name}.bad-{stamp}" + (f".{i}" if i else ""))
            if bad.exists():
                continue
            try:
                path.rename(bad)
            except OSError:
                return None
            return bad
        return None

    # --- saving -----------------------------------------------------------------------------
    def save(self, payload: dict) -> bool:
        """Write ``payload``; True on success. Failures are counted, never raised."""
        from naf_ros.core.checkpoint import save_checkpoint

        if self.blocked:
            self.failures += 1
            self.last_error = self.blocked
            return False
        t0 = time.perf_counter()
        try:
            if self.newest_good and self.path.exists():
                self._keep_prev()
            size = save_checkpoint(self.path, payload)
        except OSError as exc:
            self.failures += 1
            self.last_error = f"cannot write {self.path}: {exc.strerror or exc}"
            return False
        self.newest_good = True
        self.saves += 1
        self.last_error = None
        self.last_bytes = size
        self.last_seconds = time.perf_counter() - t0
        return True

    def save_and_report(self, payload: dict, diag, level: bytes | None = None) -> bool:
        """:meth:`save`, then raise or clear the node's ``checkpoint`` diagnostics problem."""
        from diagnostic_msgs.msg import DiagnosticStatus

        ok = self.save(payload)
        if ok:
            diag.clear("checkpoint")
        else:
            diag.problem(
                "checkpoint", DiagnosticStatus.WARN if level is None else level, self.last_error
            )
        return ok

    def _keep_prev(self) -> None:
        """newest -> .prev without a moment in which no newest file exists."""
        tmp = self.prev.with_name(f".{self.prev.name}.tmp")
        tmp.unlink(missing_ok=True)
        try:
            os.link(self.path, tmp)
        except OSError:
            shutil.copy2(self.path, tmp)
        os.replace(tmp, self.prev)

    def diagnostics(self, prefix: str = "checkpoint") -> dict[str, Any]:
        return {
            f"{prefix}_saves": self.saves,
            f"{prefix}_failures": self.failures,
            f"{prefix}_bytes": self.last_bytes,
            f"{prefix}_save_s": round(self.last_seconds, 4),
            f"{prefix}_error": self.last_error or "",
        }


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
