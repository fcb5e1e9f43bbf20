"""Experience recording in the graph: numbered rosbag2 (MCAP) segments per writer.

A rosbag2 bag written by :class:`~naf_ros.bag.writer.BagRecorder` is readable only once
closed, and a killed process never closes it. So every writer records into numbered segments
``<folder>/<prefix>_<NNNN>/`` and closes one at points where what it holds is safe: the
learner after each checkpoint (so the closed segments hold exactly the transitions its
checkpoints hold; what it trained on after the last one is re-sent to its successor and
recorded again), the per-arm recorder every ``segment_s``. A segment left open by a crash
is renamed ``<name>.incomplete`` by the next writer with that prefix, so readers of
``<prefix>_*`` never see half a bag and never see a transition twice.

Failures (unwritable folder, full disk) never stop the node: they are counted, the reason
is kept for ``/diagnostics``, and the next segment is tried at the next rotation.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from naf_ros.bag.format import DEFAULT_CONTROLLER, BagError
from naf_ros.bag.writer import BagRecorder

__all__ = ["INCOMPLETE", "SegmentedBag"]

INCOMPLETE = ".incomplete"


class SegmentedBag:
    """Writes through one open :class:`BagRecorder` segment at a time."""

    def __init__(
        self,
        folder: str | Path,
        prefix: str,
        controller: str = DEFAULT_CONTROLLER,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.folder = Path(folder)
        self.prefix = prefix
        self.controller = controller
        self._log = log or (lambda _msg: None)
        self._rec: BagRecorder | None = None
        self._failed = False  # until the next rotation, after a failure
        self._last_stamp = 0
        self.segments_closed = 0
        self.written: dict[str, int] = {}
        self.not_recorded = 0
        self.errors = 0
        self.last_error: str | None = None
        self.index = 0
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.index = self._scan()
        except OSError as exc:
            self._fail(f"cannot use {self.folder}: {exc.strerror or exc}")

    def _scan(self) -> int:
        """Next free segment number; open leftovers of a crash are renamed aside."""
        pattern = re.compile(rf"^{re.escape(self.prefix)}_(\d+)(?:{re.escape(INCOMPLETE)})?$")
        highest = -1
        for entry in sorted(self.folder.iterdir()):
            m = pattern.match(entry.name)
            if not m:
                continue
            highest = max(highest, int(m.group(1)))
            if entry.is_dir() and not entry.name.endswith(INCOMPLETE):
                if not (entry / "metadata.yaml").is_file():
                    target = entry.with_name(entry.name + INCOMPLETE)
                    entry.rename(target)
                    self._log(f"bag segment {entry} was never closed; kept as {target.name}")
        return highest + 1

    @property
    def current_path(self) -> Path:
        return self.folder / f"{self.prefix}_{self.index:04d}"

    def _fail(self, reason: str) -> None:
        self.errors += 1
        self.last_error = reason
        self._failed = True
        self._log(f"recording: {reason}")

    def _recorder(self) -> BagRecorder | None:
        if self._rec is not None:
            return self._rec
        if self._failed:
            return None
        try:
            self._rec = BagRecorder(self.current_path, controller=self.controller)
        except (BagError, OSError) as exc:
            self._fail(str(exc))
            if self.current_path.exists():
                self.index += 1  # never reuse (or overwrite) a half-created segment
            return None
        return self._rec

    def stamp(self, stamp_ns: int | None = None) -> int:
        """A strictly increasing log time (wall clock unless given)."""
        ns = time.time_ns() if stamp_ns is None else int(stamp_ns)
        ns = max(ns, self._last_stamp + 1)
        self._last_stamp = ns
        return ns

    def write(self, kind: str, *args: Any, **kwargs: Any) -> bool:
        """``kind`` is a BagRecorder method suffix: transition, joint_state, command, target."""
        rec = self._recorder()
        if rec is None:
            self.not_recorded += 1
            return False
        try:
            getattr(rec, f"write_{kind}")(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a recording failure must not stop the node
            self.not_recorded += 1
            self._fail(f"{self.current_path.name}: {type(exc).__name__}: {exc}")
            self._close_quietly()
            return False
        self.written[kind] = self.written.get(kind, 0) + 1
        return True

    def rotate(self) -> None:
        """Close the open segment (it becomes readable); the next write opens a new one."""
        if self._rec is not None:
            try:
                self._rec.close()
            except Exception as exc:  # noqa: BLE001
                self._fail(f"{self.current_path.name}: closing failed ({exc})")
            else:
                self.segments_closed += 1
            self._rec = None
            self.index += 1
        self._failed = False

    def close(self) -> None:
        self.rotate()

    def abandon(self) -> None:
        """Close the open segment as ``.incomplete``: what it holds is not to be relied on
        (the learner's checkpoint that should have covered it failed)."""
        if self._rec is None:
            return
        path = self.current_path
        self._close_quietly()
        try:
            path.rename(path.with_name(path.name + INCOMPLETE))
        except OSError as exc:
            self._fail(f"{path.name}: cannot mark incomplete ({exc.strerror or exc})")

    def _close_quietly(self) -> None:
        try:
            self._rec.close()
        except Exception:  # noqa: BLE001 - the segment is already counted as failed
            pass
        self._rec = None
        self.index += 1

    def diagnostics(self, prefix: str = "bag") -> dict[str, Any]:
        out = {f"{prefix}_segments_closed": self.segments_closed, f"{prefix}_errors": self.errors}
        out.update({f"{prefix}_{k}s": v for k, v in self.written.items()})
        out[f"{prefix}_not_recorded"] = self.not_recorded
        out[f"{prefix}_error"] = self.last_error or ""
        return out
