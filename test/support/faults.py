"""Helpers for fault-injection tests: unwritable folders, finding and killing graph nodes, and
asking a stuck node where it is (its threads' stacks)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
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


class FaultSetupError(RuntimeError):
    """A fault could not be set up here. Raised, never a skip: a safety test whose fault is
    missing would otherwise pass (or vanish) without exercising anything."""


def _run(*cmd: str) -> bool:
    if not shutil.which(cmd[0]):
        return False
    return subprocess.run(list(cmd), capture_output=True).returncode == 0


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[str]:
    """Make folder ``path`` unwritable for every process, root included; yields how.

    File modes stop an ordinary user ("mode"). They do not stop root (as CI runs), so then
    ``path`` is bind-mounted onto itself read-only ("read-only mount": writes fail with
    EROFS, as on a disk remounted read-only, and what is inside stays visible), or, where
    mounting is not permitted, made immutable ("immutable", ``chattr +i``; not every file
    system has it). Everything is undone on exit. If none works, :class:`FaultSetupError`.
    """
    mode = path.stat().st_mode
    os.chmod(path, 0o555)
    undo: list[tuple[str, ...]] = []
    try:
        how = "mode"
        if _writable(path):
            if _run("mount", "--bind", str(path), str(path)):
                undo.append(("umount", str(path)))
                if _run("mount", "-o", "remount,bind,ro", str(path)):
                    how = "read-only mount"
            if _writable(path):
                if _run("chattr", "+i", str(path)):
                    undo.append(("chattr", "-i", str(path)))
                how = "immutable"
        if _writable(path):
            raise FaultSetupError(
                f"cannot make {path} unwritable (uid {os.getuid()}: modes, a read-only bind "
                "mount and chattr +i all failed)"
            )
        yield how
    finally:
        for cmd in reversed(undo):
            if not _run(*cmd) and cmd[0] == "umount":
                _run("umount", "-l", cmd[1])  # busy: detach now, freed when the last user exits
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


def alive(pid: int) -> bool:
    """Process ``pid`` exists and is not a zombie waiting to be reaped."""
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return state[0] != "Z"


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


def _catches(pid: int, sig: int) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` (``SigCgt`` in /proc)."""
    try:
        status = (Path("/proc") / str(pid) / "status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


def dump_stacks(pid: int, log_path: Path, timeout: float = 3.0) -> str:
    """Every thread's stack of node process ``pid``, as it wrote it into ``log_path``.

    ``run_node`` registers faulthandler on SIGUSR1 (stderr, all threads), so this works on a
    node that hangs inside rclpy or DDS as well; the node carries on afterwards. Meant for
    the message of a failed wait: a rare hang then leaves where each thread was.
    """
    if not _catches(pid, signal.SIGUSR1):  # its default action would end the process
        return f"(no stacks: process {pid} has no SIGUSR1 handler yet, still starting up)"
    start = log_path.stat().st_size if log_path.exists() else 0
    try:
        os.kill(pid, signal.SIGUSR1)
    except ProcessLookupError:
        return f"(no stacks: process {pid} is gone)"
    deadline, size, settled = time.monotonic() + timeout, start, 0
    while time.monotonic() < deadline and settled < 3:  # wait until the dump stops growing
        time.sleep(0.1)
        new = log_path.stat().st_size if log_path.exists() else 0
        settled = settled + 1 if new == size and new > start else 0
        size = new
    with open(log_path, "rb") as fh:
        fh.seek(start)
        text = fh.read().decode(errors="replace")
    dump = [line for line in text.splitlines() if line.startswith(("Thread 0x", "Current thread"))]
    header = f"--- stacks of pid {pid} ({len(dump)} threads) ---"
    return f"{header}\n{text}" if dump else f"{header}\n(no dump within {timeout} s)\n{text}"
