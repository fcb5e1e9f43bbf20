"""Helpers for fault-injection tests: read-only folders, finding and killing graph nodes."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from naf_ros.bringup.params import NODE_MODULES


def _writable(path: Path) -> bool:
    probe = path / ".naf_ros_write_probe"
    try:
        probe.write_text("x")
    except OSError:
        return False
    probe.unlink()
    return True


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[bool]:
    """Make ``path`` unwritable for this user; yields whether that worked.

    File modes do not stop root, so as root the immutable attribute (``chattr +i``) is
    tried as well; both are undone on exit.
    """
    mode = path.stat().st_mode
    os.chmod(path, 0o555)
    immutable = False
    try:
        if _writable(path) and shutil.which("chattr"):
            immutable = (
                subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
            )
        yield not _writable(path)
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], capture_output=True)
        os.chmod(path, mode)


def child_pids(parent: int) -> list[int]:
    """Direct children of ``parent`` (from /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...; comm may contain spaces, so split after the last ')'.
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent:
            out.append(int(entry.name))
    return out


def node_pid(launcher_pid: int, node: str) -> int | None:
    """PID of the launcher's child running ``python -m <the node's module>``."""
    for pid in child_pids(launcher_pid):
        try:
            cmd = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if NODE_MODULES[node].encode() in cmd:
            try:
                state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if state[0] != "Z":  # not a zombie waiting to be reaped
                return pid
    return None
